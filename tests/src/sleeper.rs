//! A process parked in a namespace, standing for a container's process:
//! its pid names the namespace (`--netns PID`). Killed (that process only)
//! and reaped on drop.

use std::{fs, os::unix::fs::MetadataExt, process::Child, time::Duration};

use anyhow::{Result, bail};

use crate::netns::Netns;

pub struct Sleeper {
    child: Child,
}

impl Sleeper {
    /// `sleep 600` in `ns`, once it is really there.
    pub fn in_ns(ns: &Netns) -> Result<Sleeper> {
        let child = ns.command(&["sleep", "600"]).spawn()?;
        let s = Sleeper { child };
        let want = fs::metadata(ns.path())?.ino();
        let entered = || s.netns_inode() == Some(want);
        if !crate::poll::until(Duration::from_secs(5), Duration::from_millis(10), entered) {
            bail!("pid {} never entered {}", s.pid(), ns.name());
        }
        Ok(s)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn netns_inode(&self) -> Option<u64> {
        fs::metadata(format!("/proc/{}/ns/net", self.pid()))
            .ok()
            .map(|m| m.ino())
    }

    /// Ends it now (what a container exiting does).
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.stop();
    }
}
