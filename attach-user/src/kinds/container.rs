//! `container` attachments: a container joins another's network namespace.
//!
//! - OTHER (`--join`) is the existing container's namespace: a name under
//!   /run/netns, a path, or a pid of one of its processes.
//! - NETNS (`--netns`) names the joiner. Either it does not exist yet: the
//!   engine creates it, a bind mount of the shared namespace (as `ip netns
//!   add` makes /run/netns/NAME), which the joiner's runtime enters
//!   (`nsenter --net=NETNS`), and removes it on detach; or it already is
//!   OTHER's namespace (e.g. the pid of a joiner process already in it).
//! - The engine holds the shared namespace itself with a bind mount it owns,
//!   `<state dir>/shared/<namespace inode>`, one per namespace, shared by
//!   all of its joiners on this node. So when OTHER's file is deleted or its
//!   processes exit (the container stops or restarts), the namespace, its
//!   interfaces and addresses live on for the joiners — the known failure
//!   of `--network container:` in other tools. The hold goes with its last
//!   joiner; the namespace then really goes (unless something else holds
//!   it).
//! - `<state dir>/shared` is a shared-propagation mount (bound onto itself
//!   first), as /run/netns is: an unmount there reaches copies of the
//!   mount namespace too, so a hold cannot linger in one.

use std::{
    fs::OpenOptions,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use crate::{
    error::{Error, ErrorKind, Result},
    model::{Attachment, Backend, JoinInfo, Kind, NO_IFNAME},
    mount,
    netns::{NETNS_RUN_DIR, Netns},
    node::Node,
};

// Everything `attach add container` takes (its help is the subcommand's, in cli.rs).
#[derive(Clone, Debug, Default, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ContainerRequest {
    /// The joiner. A path (or name under /run/netns) that does not exist yet:
    /// the engine creates it as a bind mount of the shared namespace, for the
    /// joiner's processes to enter (nsenter --net=NETNS), and removes it on
    /// detach. Or the joiner already in OTHER's namespace: its pid, or a
    /// namespace file of it.
    #[arg(long, value_name = "NETNS")]
    pub netns: String,
    /// OTHER: the container whose network namespace is joined (a name under
    /// /run/netns, a path, or the pid of one of its processes).
    #[arg(long, value_name = "OTHER")]
    pub join: String,
    /// Does not apply (refused with an explanation).
    #[arg(long, hide = true)]
    #[serde(default)]
    pub ifname: Option<String>,
}

impl ContainerRequest {
    pub fn validate(&self) -> Result<()> {
        if let Some(i) = &self.ifname {
            return Err(Error::invalid(format!(
                "--ifname {i} does not apply to container: the joiner shares the interfaces of --join's namespace"
            )));
        }
        if self.join.is_empty() {
            return Err(Error::invalid("--join is empty"));
        }
        if self.netns.is_empty() {
            return Err(Error::invalid("network namespace is empty"));
        }
        if Netns::path_of(&self.netns) == Netns::path_of(&self.join) {
            return Err(Error::invalid(format!(
                "--netns {} and --join {} name the same namespace file: NETNS is the joiner's",
                self.netns, self.join
            )));
        }
        Ok(())
    }
}

/// Where a node's holds live.
fn shared_dir(node: &Node) -> PathBuf {
    node.state_dir().join("shared")
}

fn inode_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// `ns` is OTHER's namespace (opened by the engine from `--join`).
pub async fn plan(
    _node: &Node,
    req: &ContainerRequest,
    ns: &Netns,
    records: &[Attachment],
) -> Result<Attachment> {
    if ns.same_as(&Netns::current()?) {
        return Err(Error::invalid(format!(
            "--join {} is the node's own network namespace: a container sharing it is `attach add host`",
            req.join
        )));
    }
    let path = Netns::path_of(&req.netns);
    if let Some(r) = records
        .iter()
        .find(|r| r.kind.has_interface() && r.netns_path == path && r.netns_inode != ns.inode)
    {
        return Err(Error::conflict(format!(
            "{:?} is attached as another container's namespace ({} {})",
            req.netns,
            r.kind.name(),
            r.ifname
        )));
    }
    // NETNS either exists and already is OTHER's namespace, or is created
    // by `create` (which notes it in the record).
    match std::fs::symlink_metadata(&path) {
        Ok(_) => {
            // It exists: it must already be OTHER's namespace.
            match Netns::open(&req.netns) {
                Ok(j) if j.same_as(ns) => {}
                Ok(j) => {
                    return Err(Error::conflict(format!(
                        "--netns {} ({}) exists and is another network namespace (inode {}, not {}'s {}): \
                         give a path that does not exist yet (the engine makes it) or the joiner's pid",
                        req.netns,
                        path.display(),
                        j.inode,
                        req.join,
                        ns.inode
                    )));
                }
                Err(e) => {
                    return Err(Error::conflict(format!(
                        "--netns {} ({}) exists and is not a network namespace the engine can use: {}",
                        req.netns,
                        path.display(),
                        e.message
                    )));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if req.netns.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::not_found(format!(
                    "--netns {}: no process has that pid",
                    req.netns
                )));
            }
            let parent = path.parent().unwrap_or(Path::new("/"));
            if parent != Path::new(NETNS_RUN_DIR) && !parent.is_dir() {
                return Err(Error::not_found(format!(
                    "--netns {}: directory {} does not exist",
                    req.netns,
                    parent.display()
                )));
            }
        }
        Err(e) => {
            return Err(Error::system(format!(
                "--netns {}: {}: {e}",
                req.netns,
                path.display()
            )));
        }
    };
    let mut rec = Attachment::new(Kind::Container, NO_IFNAME).in_netns(&req.netns, ns);
    rec.netns_path = path;
    rec.backend = Backend::Native;
    rec.join = Some(JoinInfo {
        other: req.join.clone(),
        other_path: ns.path.clone(),
        hold: None,
        // Set by `create` once it made the file.
        netns_created: false,
    });
    Ok(rec)
}

pub async fn create(
    node: &Node,
    rec: &mut Attachment,
    ns: &Netns,
    records: &[Attachment],
) -> Result<()> {
    let dir = shared_dir(node);
    mount::make_shared_dir(&dir)?;
    let hold = dir.join(ns.inode.to_string());
    let held = records
        .iter()
        .filter_map(|r| r.join.as_ref()?.hold.as_ref())
        .any(|h| *h == hold)
        && mount::is_mount_point(&hold)
        && inode_of(&hold) == Some(ns.inode);
    let fd_path = PathBuf::from(format!("/proc/self/fd/{}", ns.fd().as_raw_fd()));
    if !held {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&hold)
            .map_err(|e| Error::system(format!("cannot create {}: {e}", hold.display())))?;
        join_mut(rec)?.hold = Some(hold.clone());
        mount::bind(&fd_path, &hold)?;
    } else {
        join_mut(rec)?.hold = Some(hold.clone());
    }
    let target = rec.netns_path.clone();
    if !target.exists() {
        if target.parent() == Some(Path::new(NETNS_RUN_DIR)) {
            mount::make_shared_dir(Path::new(NETNS_RUN_DIR))?;
        }
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| {
                let kind = if e.kind() == std::io::ErrorKind::AlreadyExists {
                    ErrorKind::Conflict
                } else {
                    ErrorKind::System
                };
                Error::new(kind, format!("cannot create {}: {e}", target.display()))
            })?;
        join_mut(rec)?.netns_created = true;
        mount::bind(&hold, &target)?;
    }
    if inode_of(&target) != Some(ns.inode) {
        return Err(Error::system(format!(
            "{} does not show the joined namespace after mounting it",
            target.display()
        )));
    }
    Ok(())
}

fn join_mut(rec: &mut Attachment) -> Result<&mut JoinInfo> {
    rec.join
        .as_mut()
        .ok_or_else(|| Error::system("a container record without its join part"))
}

pub async fn teardown(node: &Node, rec: &Attachment, remaining: &[Attachment]) -> Vec<Error> {
    let mut errors = Vec::new();
    let Some(join) = &rec.join else {
        return errors;
    };
    if join.netns_created {
        let target = &rec.netns_path;
        // Only the file this attachment made: a mount of its namespace, or
        // the empty file left by a failed mount.
        let ours = match inode_of(target) {
            Some(i) if i == rec.netns_inode => {
                if let Err(e) = mount::unmount(target) {
                    errors.push(e);
                }
                true
            }
            Some(_) => !mount::is_mount_point(target),
            None => false,
        };
        if ours
            && let Err(e) = std::fs::remove_file(target)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            errors.push(Error::system(format!(
                "cannot remove {}: {e}",
                target.display()
            )));
        }
    }
    if let Some(hold) = &join.hold {
        let still_used = remaining
            .iter()
            .filter_map(|r| r.join.as_ref()?.hold.as_ref())
            .any(|h| h == hold);
        if !still_used {
            errors.extend(release(hold).err());
        }
    }
    let any_left = remaining
        .iter()
        .any(|r| r.join.as_ref().is_some_and(|j| j.hold.is_some()));
    if !any_left {
        let dir = shared_dir(node);
        if dir.exists() && mount::mounts_under(&dir).iter().all(|m| *m == dir) {
            errors.extend(mount::unmount(&dir).err());
            let _ = std::fs::remove_dir(&dir);
        }
    }
    errors
}

/// Unmounts a hold and removes its file.
fn release(hold: &Path) -> Result<()> {
    mount::unmount(hold)?;
    match std::fs::remove_file(hold) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::system(format!(
            "cannot remove {}: {e}",
            hold.display()
        ))),
    }
}

/// For `reset`: unmounts every hold under the node's state directory (the
/// ones of records are gone already; these are a crashed add's).
pub fn release_leftovers(state_dir: &Path) -> Vec<Error> {
    let dir = state_dir.join("shared");
    let mut errors = Vec::new();
    for m in mount::mounts_under(&dir) {
        if m != dir {
            errors.extend(release(&m).err());
        }
    }
    if dir.exists() {
        errors.extend(mount::unmount(&dir).err());
        let _ = std::fs::remove_dir_all(&dir);
    }
    errors
}

/// Puts the engine's hold back (someone unmounted it) from NETNS, which
/// still shows the namespace.
pub async fn repair(node: &Node, rec: &Attachment) -> Result<()> {
    let Some(join) = &rec.join else {
        return Err(Error::system("a container record without its join part"));
    };
    let hold = join
        .hold
        .clone()
        .unwrap_or_else(|| shared_dir(node).join(rec.netns_inode.to_string()));
    if mount::is_mount_point(&hold) && inode_of(&hold) == Some(rec.netns_inode) {
        return Ok(());
    }
    let ns = rec.open_netns()?;
    if ns.inode != rec.netns_inode {
        return Err(Error::system(format!(
            "{:?} now names another network namespace",
            rec.netns
        )));
    }
    mount::make_shared_dir(&shared_dir(node))?;
    mount::unmount(&hold)?;
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&hold)
        .map_err(|e| Error::system(format!("cannot create {}: {e}", hold.display())))?;
    let fd_path = PathBuf::from(format!("/proc/self/fd/{}", ns.fd().as_raw_fd()));
    mount::bind(&fd_path, &hold)
}

/// The hold is mounted and is the namespace; NETNS still shows it.
pub async fn check(rec: &Attachment) -> Result<()> {
    let Some(join) = &rec.join else {
        return Err(Error::system("a container record without its join part"));
    };
    let hold = join
        .hold
        .as_ref()
        .ok_or_else(|| Error::system("the record has no hold"))?;
    if !mount::is_mount_point(hold) || inode_of(hold) != Some(rec.netns_inode) {
        return Err(Error::system(format!(
            "the engine's hold {} of the shared namespace is gone",
            hold.display()
        )));
    }
    match rec.open_netns() {
        Ok(ns) if ns.inode == rec.netns_inode => Ok(()),
        Ok(_) => Err(Error::system(format!(
            "{:?} now names another network namespace",
            rec.netns
        ))),
        Err(e) => Err(e.context(format!("the joiner {:?}", rec.netns))),
    }
}
