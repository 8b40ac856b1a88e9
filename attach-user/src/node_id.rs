//! The node's id: it names the node's pin and state directories, so it must
//! be the same for every process in the node's network namespace and differ
//! between namespaces, including one made later with a reused inode.
//!
//! The namespace's cookie (`SO_NETNS_COOKIE`, Linux 5.14) is all that: never
//! reused while the system runs. Older kernels have no way to read it, so the
//! engine gives the namespace an id of its own, a random one kept as an
//! alternative name of its loopback device (`attach-node-<hex>`, Linux 5.5):
//! it lives and dies with the namespace, as the cookie does.

use std::{fs::OpenOptions, os::fd::AsRawFd, path::Path};

use netlink_packet_core::{NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkMessage, Prop},
};

use crate::{
    error::{Error, Result},
    features::Feature,
    netns, nlsync,
};

/// The prefix of the loopback's alternative name that carries the id.
pub const LOOPBACK_ID_PREFIX: &str = "attach-node-";

/// What the id of a node whose kernel has no cookie and whose loopback has
/// no id yet reads as: nothing can be recorded under it (every command that
/// records anything gives the loopback its id first).
const UNASSIGNED: &str = "node-lo-unassigned";

/// The socket of node `node_id`'s agent (`attach agent`), where the CLI
/// and the CNI plugin find it.
pub fn agent_socket(node_id: &str) -> std::path::PathBuf {
    Path::new(attach_common::STATE_ROOT).join(format!("{node_id}.sock"))
}

/// The id of the calling thread's namespace; `assign` gives it one where
/// it needs one and has none yet (only where the kernel has no cookie).
pub fn current(assign: bool) -> Result<String> {
    if let Ok(cookie) = netns::current_cookie() {
        return Ok(format!("node-{cookie}"));
    }
    if Feature::NetnsCookie.present() {
        // The kernel has the option: this failure is not the fallback's.
        return netns::current_cookie().map(|c| format!("node-{c}"));
    }
    if let Some(id) = loopback_id()? {
        return Ok(format!("node-lo-{id}"));
    }
    if !assign {
        return Ok(UNASSIGNED.into());
    }
    assign_loopback_id().map(|id| format!("node-lo-{id}"))
}

/// The id on the loopback, if it has one.
fn loopback_id() -> Result<Option<String>> {
    let mut msg = LinkMessage::default();
    msg.header.index = 1;
    let answers = nlsync::request(RouteNetlinkMessage::GetLink(msg), 0)
        .map_err(|e| Error::system(format!("reading the loopback device: {e}")))?;
    Ok(answers
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })
        .flat_map(|l| &l.attributes)
        .filter_map(|a| match a {
            LinkAttribute::PropList(props) => Some(props),
            _ => None,
        })
        .flatten()
        .find_map(|p| match p {
            Prop::AltIfName(name) => name.strip_prefix(LOOPBACK_ID_PREFIX).map(str::to_owned),
            _ => None,
        }))
}

/// Gives the loopback an id, under a lock so that two first commands of a
/// node agree on one.
fn assign_loopback_id() -> Result<String> {
    let dir = Path::new(attach_common::STATE_ROOT);
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::system(format!("cannot create {}: {e}", dir.display())))?;
    let lock_path = dir.join("node-id.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::system(format!("cannot open {}: {e}", lock_path.display())))?;
    // SAFETY: valid fd; the lock goes with the file.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(Error::system(format!(
            "cannot lock {}: {}",
            lock_path.display(),
            std::io::Error::last_os_error()
        )));
    }
    if let Some(id) = loopback_id()? {
        return Ok(id);
    }
    let id = format!("{:016x}", random_u64()?);
    let mut msg = LinkMessage::default();
    msg.header.index = 1;
    msg.attributes
        .push(LinkAttribute::PropList(vec![Prop::AltIfName(format!(
            "{LOOPBACK_ID_PREFIX}{id}"
        ))]));
    nlsync::request(
        RouteNetlinkMessage::NewLinkProp(msg),
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL | NLM_F_APPEND,
    )
    .map_err(|e| {
        Error::system(format!(
            "cannot give the loopback device the node's id (an alternative name, \
             Linux 5.5): {e}"
        ))
    })?;
    Ok(id)
}

fn random_u64() -> Result<u64> {
    let mut buf = [0u8; 8];
    // SAFETY: valid buffer of the length given.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        return Err(Error::system(format!(
            "cannot read random bytes: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(u64::from_ne_bytes(buf))
}
