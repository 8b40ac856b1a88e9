//! Everything the bench makes is registered here and removed when the guard
//! drops: after success, on error, on panic, and after Ctrl-C (the signal
//! only sets a flag; the run stops at its next check and unwinds).
//!
//! Processes are killed by their exact PID with SIGKILL (sockperf ignores
//! SIGTERM) and reaped; namespaces go with `ip netns del` (which takes their
//! links along) after the engine's own `attach reset` in the node; pin and
//! temp directories are removed last.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use crate::error::{Error, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// PIDs of the processes the bench started and has not reaped yet.
static PIDS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT, SIGTERM and SIGHUP stop the run at its next check, which then
/// cleans up on the way out.
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// An error once the user asked to stop.
pub fn check() -> Result<()> {
    if interrupted() {
        Err(Error::system("interrupted; cleaning up"))
    } else {
        Ok(())
    }
}

pub fn register_pid(pid: u32) {
    PIDS.lock().expect("pid registry").insert(pid);
}

pub fn unregister_pid(pid: u32) {
    PIDS.lock().expect("pid registry").remove(&pid);
}

/// The bench's own live children (so the busy-CPU watch leaves them out).
pub fn own_pids() -> BTreeSet<u32> {
    PIDS.lock().expect("pid registry").clone()
}

/// SIGKILL to exactly this PID, then reap it.
pub fn kill_pid(pid: u32) {
    // SAFETY: plain syscalls on a PID we started and have not reaped.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
        libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
    }
    unregister_pid(pid);
}

enum Item {
    Netns(String),
    /// A node namespace the engine worked in: `attach reset` there first.
    EngineNode {
        netns: PathBuf,
        exe: PathBuf,
    },
    Dir(PathBuf),
}

/// The guard. Create it first, so it drops last.
pub struct Cleanup {
    items: Mutex<Vec<Item>>,
    quiet: bool,
}

impl Cleanup {
    pub fn new() -> Self {
        Self {
            items: Mutex::new(Vec::new()),
            quiet: false,
        }
    }

    fn push(&self, item: Item) {
        self.items.lock().expect("cleanup list").push(item);
    }

    pub fn netns(&self, name: &str) {
        self.push(Item::Netns(name.to_owned()));
    }

    pub fn engine_node(&self, netns: &Path, exe: &Path) {
        self.push(Item::EngineNode {
            netns: netns.to_owned(),
            exe: exe.to_owned(),
        });
    }

    pub fn dir(&self, path: &Path) {
        self.push(Item::Dir(path.to_owned()));
    }

    /// Deletes the namespaces registered after `mark` (see `mark`) now,
    /// e.g. M7's hundred containers once M7 is done.
    pub fn release_netns_from(&self, mark: usize) {
        let mut items = self.items.lock().expect("cleanup list");
        let mut keep = Vec::new();
        let mut drop_now = Vec::new();
        for (i, item) in items.drain(..).enumerate() {
            match item {
                Item::Netns(n) if i >= mark => drop_now.push(n),
                other => keep.push(other),
            }
        }
        *items = keep;
        drop(items);
        for n in drop_now.iter().rev() {
            del_netns(n, self.quiet);
        }
    }

    /// Position to pass to `release_netns_from`.
    pub fn mark(&self) -> usize {
        self.items.lock().expect("cleanup list").len()
    }
}

impl Default for Cleanup {
    fn default() -> Self {
        Self::new()
    }
}

fn del_netns(name: &str, quiet: bool) {
    let out = Command::new("ip")
        .args(["netns", "del", name])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) if !quiet => eprintln!(
            "bench: cleanup: ip netns del {name}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) if !quiet => eprintln!("bench: cleanup: ip netns del {name}: {e}"),
        _ => {}
    }
}

/// `attach reset` in a node namespace: detaches every endpoint and removes
/// the engine's pins and records of that node.
fn engine_reset(netns: &Path, exe: &Path, quiet: bool) {
    if !netns.exists() {
        return;
    }
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .arg("--")
        .arg(exe)
        .arg("reset")
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) if !quiet => eprintln!(
            "bench: cleanup: attach reset in {}: {}",
            netns.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) if !quiet => eprintln!("bench: cleanup: attach reset: {e}"),
        _ => {}
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for pid in own_pids() {
            kill_pid(pid);
        }
        let items = std::mem::take(&mut *self.items.lock().expect("cleanup list"));
        // The engine first (it needs its namespaces), then namespaces in
        // reverse order of creation (containers before the node), then
        // directories.
        for item in &items {
            if let Item::EngineNode { netns, exe } = item {
                engine_reset(netns, exe, self.quiet);
            }
        }
        for item in items.iter().rev() {
            if let Item::Netns(n) = item {
                del_netns(n, self.quiet);
            }
        }
        for item in items.iter().rev() {
            if let Item::Dir(d) = item
                && let Err(e) = fs::remove_dir_all(d)
                && e.kind() != std::io::ErrorKind::NotFound
                && !self.quiet
            {
                eprintln!("bench: cleanup: removing {}: {e}", d.display());
            }
        }
    }
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes what an earlier bench left behind when it was killed outright
/// (SIGKILL leaves no chance to clean up): its namespaces, pins and temp
/// files, found by the PID in their names, if that process is gone.
pub fn sweep_stale(prefix: &str, exe: &Path) {
    let stale = |name: &str| -> bool {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| pid != std::process::id() && !pid_alive(pid))
    };
    let listed = Command::new("ip")
        .args(["netns", "list"])
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let names: Vec<String> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| stale(n))
        .map(str::to_owned)
        .collect();
    if !names.is_empty() {
        eprintln!(
            "bench: removing {} namespace(s) left by an earlier run that was killed",
            names.len()
        );
    }
    for n in names.iter().filter(|n| n.ends_with("-node")) {
        engine_reset(&Path::new("/run/netns").join(n), exe, true);
    }
    // Containers before nodes, so links are gone before their parents.
    let mut ordered: Vec<&String> = names.iter().filter(|n| !n.ends_with("-node")).collect();
    ordered.extend(names.iter().filter(|n| n.ends_with("-node")));
    for n in ordered {
        del_netns(n, true);
    }
    for root in [Path::new("/sys/fs/bpf"), Path::new("/tmp")] {
        let Ok(rd) = fs::read_dir(root) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix("attach-bench-")
                && rest
                    .parse::<u32>()
                    .is_ok_and(|pid| pid != std::process::id() && !pid_alive(pid))
            {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}
