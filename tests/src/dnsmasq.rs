//! A DHCP server on the lab's wire: Debian's dnsmasq in the `ext` host (or
//! in a namespace of its own, on a macvlan of the wire: a second server).

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::Result;

use crate::lab::{EXT_IF, Lab, Netns};

/// dnsmasq serving 10.77.0.100-150 on the ext host's wire0, killed by its
/// PID when dropped (also on a failed assertion).
pub struct Dnsmasq {
    child: Option<Child>,
    dir: PathBuf,
}

impl Dnsmasq {
    pub fn start(lab: &Lab) -> Result<Dnsmasq> {
        Self::start_with(lab, "10.77.0.100,10.77.0.150", &[])
    }

    /// dnsmasq leasing `range` (FIRST,LAST), with `extra` options.
    pub fn start_with(lab: &Lab, range: &str, extra: &[&str]) -> Result<Dnsmasq> {
        let mut options = vec![
            "--dhcp-option=option:router,10.77.0.1",
            "--dhcp-option=option:dns-server,10.77.0.53",
            "--dhcp-option=option:T1,15",
        ];
        options.extend_from_slice(extra);
        Self::start_on(lab, lab.ext(), EXT_IF, "", range, &options)
    }

    /// dnsmasq in namespace `ns` on its interface `iface`, leasing `range`
    /// (FIRST,LAST) with these `options` only (router, DNS, times); `name`
    /// tells its files from another server's of the same lab.
    pub fn start_on(
        lab: &Lab,
        ns: &Netns,
        iface: &str,
        name: &str,
        range: &str,
        options: &[&str],
    ) -> Result<Dnsmasq> {
        let dir = std::env::temp_dir().join(format!("attach-dhcp-{}{name}", lab.tag()));
        std::fs::create_dir_all(&dir)?;
        let leases = dir.join("leases");
        let pid = dir.join("pid");
        let log = std::fs::File::create(dir.join("log"))?;
        let range = format!("--dhcp-range={range},255.255.255.0,2m");
        let leasefile = format!("--dhcp-leasefile={}", leases.display());
        let pidfile = format!("--pid-file={}", pid.display());
        let interface = format!("--interface={iface}");
        let mut argv = vec![
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--user=root",
            &interface,
            "--bind-interfaces",
            &range,
            "--log-dhcp",
            &leasefile,
            &pidfile,
        ];
        argv.extend_from_slice(options);
        // nsenter execs dnsmasq (no --fork): the child is dnsmasq itself.
        let child = ns
            .command(&argv)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let d = Dnsmasq {
            child: Some(child),
            dir,
        };
        // In the foreground it writes no pid file: its log says when it serves.
        d.wait_for(
            || d.log().contains("DHCP, sockets bound"),
            "dnsmasq to start",
        );
        Ok(d)
    }

    pub fn leases(&self) -> String {
        std::fs::read_to_string(self.dir.join("leases")).unwrap_or_default()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    pub fn wait_for(&self, cond: impl Fn() -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; leases:\n{}\nlog:\n{}",
                self.leases(),
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
