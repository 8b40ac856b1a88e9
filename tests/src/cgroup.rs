//! A cgroup (v2) of the test's own, for `attach add host --cgroup`.
//!
//! This machine has the hybrid layout (v1 controllers, cgroup2 at
//! /sys/fs/cgroup/unified); any cgroup2 mount will do. Without one, a cgroup2
//! hierarchy is mounted under a directory of the test's own and unmounted
//! afterwards. The directory is removed on drop, once its processes are gone.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{lab::NETNS_PREFIX, netns::Netns};

pub struct Cgroup {
    path: PathBuf,
    /// A cgroup2 mount made for the test, to undo.
    mounted: Option<PathBuf>,
}

/// Where cgroup2 is mounted, if anywhere.
pub fn cgroup2_mount() -> Option<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .ok()?
        .lines()
        .find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (post.split_whitespace().next() == Some("cgroup2"))
                .then(|| pre.split_whitespace().nth(4).map(PathBuf::from))?
        })
}

impl Cgroup {
    /// `<cgroup2>/atl-<tag>-<name>`.
    pub fn new(tag: &str, name: &str) -> Result<Cgroup> {
        let (root, mounted) = match cgroup2_mount() {
            Some(r) => (r, None),
            None => {
                let dir = std::env::temp_dir().join(format!("{NETNS_PREFIX}-{tag}-cgroup2"));
                fs::create_dir_all(&dir)?;
                let ok = Command::new("mount")
                    .args(["-t", "cgroup2", "none"])
                    .arg(&dir)
                    .status()?
                    .success();
                if !ok {
                    let _ = fs::remove_dir(&dir);
                    bail!("no cgroup2 hierarchy, and mounting one failed");
                }
                (dir.clone(), Some(dir))
            }
        };
        let path = root.join(format!("{NETNS_PREFIX}-{tag}-{name}"));
        let cg = Cgroup {
            path: path.clone(),
            mounted,
        };
        fs::create_dir(&path).with_context(|| format!("creating cgroup {}", path.display()))?;
        Ok(cg)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `argv` in `ns`, run inside this cgroup (the shell moves itself in,
    /// then becomes `argv`).
    pub fn command(&self, ns: &Netns, argv: &[&str]) -> Command {
        let procs = self.path.join("cgroup.procs").display().to_string();
        let mut all = vec!["sh", "-c", "echo $$ > \"$0\" && exec \"$@\"", &procs];
        all.extend(argv);
        ns.command(&all)
    }

    /// Runs `argv` in `ns` inside the cgroup; whether it succeeded.
    pub fn run(&self, ns: &Netns, argv: &[&str]) -> bool {
        self.command(ns, argv)
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // rmdir fails while a process is still inside: wait for them.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.path.exists() {
            match fs::remove_dir(&self.path) {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => {
                    eprintln!("warning: rmdir {}: {e}", self.path.display());
                    break;
                }
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
        if let Some(dir) = &self.mounted {
            let _ = Command::new("umount").arg(dir).status();
            let _ = fs::remove_dir(dir);
        }
    }
}

/// The names of the programs attached to cgroup `path` for its ingress and
/// egress (`BPF_PROG_QUERY`, which every kernel of the matrix has; bpftool's
/// `cgroup show` asks for attach types 5.10 does not know, and fails).
pub fn attached_programs(path: &Path) -> Result<Vec<(String, &'static str)>> {
    const BPF_PROG_QUERY: libc::c_long = 16;
    #[repr(C)]
    #[derive(Default)]
    struct Query {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        _pad: [u32; 9],
    }
    use std::os::fd::AsRawFd as _;
    let dir = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let names: std::collections::HashMap<u32, String> = aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .map(|p| (p.id(), p.name_as_str().unwrap_or("?").to_owned()))
        .collect();
    let mut out = Vec::new();
    for (attach_type, what) in [(0, "ingress"), (1, "egress")] {
        let mut ids = [0u32; 64];
        let mut q = Query {
            target_fd: dir.as_raw_fd() as u32,
            attach_type,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..Default::default()
        };
        // SAFETY: `q` and `ids` outlive the call; the size is `q`'s.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_QUERY,
                &mut q as *mut Query,
                std::mem::size_of::<Query>(),
            )
        };
        if r != 0 {
            bail!(
                "BPF_PROG_QUERY {what} on {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        for id in &ids[..q.prog_cnt as usize] {
            let name = names.get(id).cloned().unwrap_or_else(|| format!("id {id}"));
            out.push((name, what));
        }
    }
    out.sort();
    Ok(out)
}
