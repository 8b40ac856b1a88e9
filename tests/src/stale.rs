//! What a killed test process left behind: SIGKILL (a CI timeout, an
//! interrupted session) runs no destructor, so its labs stay. Every name the
//! harness makes carries the PID of the process that made it (`atl-<pid>-…`,
//! `atl-<what>-<pid>-…`); namespaces and cgroups of a process that is gone
//! are removed, each node's engine reset first (its pins and records), once
//! per test process before it names anything.

use std::{fs, path::Path, process::Command, sync::Once};

use crate::{
    attach::Attach,
    cgroup::cgroup2_mount,
    lab::NETNS_PREFIX,
    netns::{checked, netns_list},
};

/// [`sweep`], the first time it is called in this process.
pub fn sweep_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let n = sweep();
        if n > 0 {
            eprintln!("removed {n} namespace(s) and cgroup(s) left by killed test processes");
        }
    });
}

/// The PID in a harness name: its first all-digit part after the prefix.
pub fn owner(name: &str) -> Option<u32> {
    name.strip_prefix(NETNS_PREFIX)?
        .strip_prefix('-')?
        .split('-')
        .find_map(|part| part.parse().ok())
}

fn gone(pid: u32) -> bool {
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

fn stale(name: &str) -> bool {
    owner(name).is_some_and(gone)
}

/// Removes the leftovers of dead processes now; returns how many.
pub fn sweep() -> usize {
    let names: Vec<String> = netns_list()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| stale(n))
        .collect();
    let is_node = |n: &&String| n.ends_with("-node");
    for node in names.iter().filter(is_node) {
        // Best effort: an engine that cannot reset leaves its pins, which a
        // namespace's deletion would not remove either.
        let _ = Attach::at(Path::new("/run/netns").join(node)).run(&["reset"]);
    }
    // Containers before nodes: their interfaces go before the parents.
    let (nodes, others): (Vec<&String>, Vec<&String>) = names.iter().partition(is_node);
    for n in others.into_iter().chain(nodes) {
        let _ = checked(Command::new("ip").args(["netns", "del", n]), "ip netns del");
    }
    let mut cgroups = 0;
    if let Some(root) = cgroup2_mount()
        && let Ok(dir) = fs::read_dir(root)
    {
        for e in dir.flatten() {
            // A cgroup whose processes are gone is empty: rmdir takes it.
            if stale(&e.file_name().to_string_lossy()) && fs::remove_dir(e.path()).is_ok() {
                cgroups += 1;
            }
        }
    }
    names.len() + cgroups
}
