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
