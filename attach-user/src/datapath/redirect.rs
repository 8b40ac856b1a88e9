//! The XDP side of a parent's switch as `check` sees it: the device map
//! entry each port needs to be a redirect target, and whether the pinned
//! XDP link still holds the parent's hook (a link detached by hand keeps
//! its pin, while frames quietly take the tc path).

use attach_common::MAP_DEVS;

use super::node::Datapath;
use super::pins::{HookAt, link_program_id};
use crate::error::Result;

impl Datapath {
    /// Whether port `host_ifindex` is in the device map (an XDP redirect
    /// target), pointing at itself.
    pub fn has_dev(&mut self, host_ifindex: u32) -> Result<bool> {
        let to = super::devmap::get(self.map_mut(MAP_DEVS)?, host_ifindex)?;
        Ok(to == Some(host_ifindex))
    }

    /// Whether the XDP link pinned as `pin` is the one on its device:
    /// `attached` are the ids of the XDP programs the device reports.
    pub fn xdp_alive(&self, pin: &str, attached: &[u32]) -> bool {
        let HookAt::Link(path) = self.hook(pin) else {
            return false;
        };
        link_program_id(&path).is_some_and(|id| attached.contains(&id))
    }
}
