//! Where a node's hooks are: a link pinned under `links/`, or (for ports,
//! and on nodes hooking with clsact) a cls_bpf filter found by the place its
//! name gives. Works from the pin directory alone, so teardown needs no
//! loaded object.

use std::{
    fs,
    io::ErrorKind as IoKind,
    path::{Path, PathBuf},
};

use aya::programs::links::{FdLink, PinnedLink};

use super::hook::{PORT_PRIORITY, tc_place};
use crate::error::Result;
use crate::features::TcHooks;
use crate::tc_filter::Filter;

/// Where a hook is: a pinned link, or a filter found by its place.
pub(super) enum HookAt {
    Link(PathBuf),
    Filter(Filter),
}

/// Directory whose presence in a node's pin directory says the node hooks
/// its tc programs with clsact filters. Decided when the node's first hook
/// is made and kept until `reset`, so one node never mixes the two ways,
/// whatever a later process's environment says.
pub(super) const CLSACT_MARK: &str = "tc-clsact";

/// How the node pinned in `dir` hooks tc programs (see [`CLSACT_MARK`]).
pub(super) fn tc_hooks_in(dir: &Path) -> TcHooks {
    if dir.join(CLSACT_MARK).exists() {
        TcHooks::Clsact
    } else {
        TcHooks::Tcx
    }
}

/// The pin path of link `name` of the node pinned in `dir`.
pub(super) fn link_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("links").join(name)
}

/// Where hook `pin` of the node pinned in `dir` is. A link pin that
/// exists is the hook whatever the node's way (a port is a filter unless
/// it was hooked by a link, see `Datapath::with_port_links`).
pub(super) fn hook_in(dir: &Path, pin: &str) -> HookAt {
    let link = link_path(dir, pin);
    match tc_place(pin) {
        Some(f) if f.priority == PORT_PRIORITY && !link.exists() => HookAt::Filter(f),
        Some(f) if tc_hooks_in(dir) == TcHooks::Clsact && !link.exists() => HookAt::Filter(f),
        _ => HookAt::Link(link),
    }
}

/// The id of the program of the link pinned at `path`.
pub(super) fn link_program_id(path: &Path) -> Option<u32> {
    let link = PinnedLink::from_pin(path).ok()?;
    Some(FdLink::from(link).info().ok()?.program_id())
}

/// Removes hook `pin` of the node pinned in `dir`: a link pin (which
/// detaches its program) or a filter. Absent is fine.
pub(super) fn unpin_in(dir: &Path, pin: &str) -> Result<()> {
    let path = match hook_in(dir, pin) {
        HookAt::Filter(f) => {
            f.detach()?;
            // A port's qdisc goes with its veth; a parent's is ours to
            // remove once nothing is on it.
            if f.priority != PORT_PRIORITY {
                crate::tc_filter::remove_clsact_if_empty(f.ifindex);
            }
            return Ok(());
        }
        HookAt::Link(path) => path,
    };
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == IoKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether hook `pin` of the node pinned in `dir` exists.
pub(super) fn link_pinned_in(dir: &Path, pin: &str) -> bool {
    match hook_in(dir, pin) {
        HookAt::Filter(f) => f.program_id().is_some(),
        HookAt::Link(path) => path.exists(),
    }
}
