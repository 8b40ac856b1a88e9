//! The node context the kinds work in: the node's netlink handle, its
//! datapath pins, its state directory, and what a teardown noticed. The
//! engine owns one and hands it to the kinds, so they never see the engine
//! (its lock, its records): they only act on the node.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
};

use crate::{datapath::Datapath, error::Result, model::Attachment, netlink::Rtnl};

pub struct Node {
    pin_dir: PathBuf,
    state_dir: PathBuf,
    /// rtnetlink in the node's own network namespace.
    pub(crate) rtnl: Rtnl,
    /// What a teardown noticed and let pass, for the detached record's
    /// `warnings`.
    notices: Mutex<Vec<String>>,
}

impl Node {
    /// The node whose pins are under `pin_dir` and records under
    /// `state_dir`, in the network namespace of the calling thread.
    pub(crate) fn here(pin_dir: PathBuf, state_dir: PathBuf) -> Result<Self> {
        Ok(Self {
            pin_dir,
            state_dir,
            rtnl: Rtnl::here()?,
            notices: Default::default(),
        })
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The node's pinned maps and programs.
    pub(crate) fn datapath(&self) -> Result<Datapath> {
        Datapath::open(&self.pin_dir)
    }

    /// The datapath as attachment `rec` hooks its port: a CNI runtime's
    /// attachment by a tcx link, leaving the port's qdisc slots to the
    /// plugins chained after ours (see `Datapath::with_port_links`).
    pub(crate) fn datapath_for(&self, rec: &Attachment) -> Result<Datapath> {
        Ok(self.datapath()?.with_port_links(rec.cni.is_some()))
    }

    /// Notes something a teardown let pass (logged, and returned in the
    /// detached record's `warnings`).
    pub(crate) fn notice(&self, msg: String) {
        tracing::debug!("{msg}");
        self.notices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(msg);
    }

    /// What was noticed since the last call.
    pub(crate) fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *self.notices.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
