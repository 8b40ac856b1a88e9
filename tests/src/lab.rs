//! Network-namespace labs: the standard wire/switch/node topology every
//! macvlan test and the demo use, plus the probes and matrices to check it.
//!
//! ```text
//!  ext netns            sw netns (switch)              node netns
//!  wire0 ─── veth ─── p-ext ┐              ┌ p-node ─── veth ─── eth1 (parent NIC)
//!  10.77.0.1/24             └──── br0 ─────┘ hairpin      10.77.0.254/24
//!  fd77::1/64                                             fd77::fe/64
//! ```
//! Containers are extra empty namespaces; `attach` gives them interfaces.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Result, bail};

pub use crate::{
    attach::Attach,
    matrix::{Matrix, Proto, Row},
    netns::{Netns, netns_list, node_id, unique_tag, wait_released_netns_destroyed},
    probe::{
        UNUSED_V4, arping, broadcast_reaches, captures, ndisc, ping, ping_within,
        unreachable_within,
    },
};

/// Every lab namespace is named `atl-<pid>-<n>-<role>`.
pub const NETNS_PREFIX: &str = "atl";
pub const EXT_IF: &str = "wire0";
pub const EXT_V4: &str = "10.77.0.1";
pub const EXT_V6: &str = "fd77::1";
pub const BRIDGE: &str = "br0";
pub const SW_EXT_PORT: &str = "p-ext";
pub const SW_NODE_PORT: &str = "p-node";
pub const NODE_IF: &str = "eth1";
pub const NODE_V4: &str = "10.77.0.254";
pub const NODE_V6: &str = "fd77::fe";

/// Privileged tests call this first: they must fail, never skip, without root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "this test needs root (it creates network namespaces and loads eBPF): \
             run it as root, e.g. `cargo +stable xtask test`"
        );
    }
}

#[derive(Clone, Copy, Debug)]
pub struct LabOptions {
    /// Hairpin on the switch port facing the node: a VEPA-capable switch
    /// reflects frames back out the port they came in on.
    pub hairpin: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions { hairpin: true }
    }
}

/// The topology above; everything is removed on drop, also on panic.
pub struct Lab {
    tag: String,
    attach: Attach,
    // Dropped in this order: containers, then node, switch, external host.
    containers: Mutex<Vec<Arc<Netns>>>,
    node: Netns,
    sw: Netns,
    ext: Netns,
}

impl Lab {
    pub fn new() -> Result<Lab> {
        Lab::with_options(LabOptions::default())
    }

    pub fn with_options(opts: LabOptions) -> Result<Lab> {
        let tag = unique_tag();
        // Each guard deletes its namespace if a later step fails.
        let ext = lab_netns(&tag, "ext")?;
        let sw = lab_netns(&tag, "sw")?;
        let node = lab_netns(&tag, "node")?;

        let link = format!(
            "link add {EXT_IF} type veth peer name {SW_EXT_PORT} netns {}",
            sw.name()
        );
        ip(&ext, &link)?;
        let link = format!(
            "link add {SW_NODE_PORT} type veth peer name {NODE_IF} netns {}",
            node.name()
        );
        ip(&sw, &link)?;

        // A dumb switch: no STP, no forward delay, no multicast snooping
        // (every multicast floods, whatever MLD/IGMP state there is).
        ip(
            &sw,
            &format!("link add {BRIDGE} type bridge stp_state 0 forward_delay 0 mcast_snooping 0"),
        )?;
        for port in [SW_EXT_PORT, SW_NODE_PORT] {
            ip(&sw, &format!("link set {port} master {BRIDGE}"))?;
        }
        let hairpin = if opts.hairpin { "on" } else { "off" };
        ip(
            &sw,
            &format!("link set {SW_NODE_PORT} type bridge_slave hairpin {hairpin}"),
        )?;

        // A real wire carries complete checksums; XDP redirects lose partial ones.
        for (ns, dev) in [(&ext, EXT_IF), (&sw, SW_EXT_PORT), (&sw, SW_NODE_PORT)] {
            ns.ok(&["ethtool", "-K", dev, "tx", "off"])?;
        }

        for (ns, dev, v4, v6) in [
            (&ext, EXT_IF, EXT_V4, EXT_V6),
            (&node, NODE_IF, NODE_V4, NODE_V6),
        ] {
            ip(ns, &format!("addr add {v4}/24 dev {dev}"))?;
            ip(ns, &format!("addr add {v6}/64 dev {dev} nodad"))?;
        }

        for (ns, dev) in [
            (&sw, SW_EXT_PORT),
            (&sw, SW_NODE_PORT),
            (&sw, BRIDGE),
            (&ext, EXT_IF),
            (&node, NODE_IF),
        ] {
            ip(ns, &format!("link set {dev} up"))?;
        }

        let lab = Lab {
            tag,
            attach: Attach::new(&node),
            containers: Mutex::new(Vec::new()),
            node,
            sw,
            ext,
        };
        lab.wait_ready()?;
        Ok(lab)
    }

    /// Waits until every link is up and both bridge ports forward.
    fn wait_ready(&self) -> Result<()> {
        let ready = || {
            let links_up = [
                (&self.sw, BRIDGE),
                (&self.ext, EXT_IF),
                (&self.node, NODE_IF),
            ]
            .into_iter()
            .all(|(ns, dev)| {
                json(ns, &["ip", "-j", "link", "show", dev])
                    .is_some_and(|v| v[0]["operstate"] == "UP")
            });
            let ports_forwarding = json(&self.sw, &["bridge", "-j", "link", "show"])
                .and_then(|v| v.as_array().cloned())
                .is_some_and(|ports| {
                    ports.len() == 2 && ports.iter().all(|p| p["state"] == "forwarding")
                });
            links_up && ports_forwarding
        };
        if !crate::poll::until(Duration::from_secs(5), Duration::from_millis(50), ready) {
            bail!("lab {}: links not up within 5 s", self.tag);
        }
        Ok(())
    }

    /// Cables one more NIC into the node: `node_if` there, on a new port
    /// `p-<node_if>` of the switch (no hairpin: a plain switch port). It
    /// goes with the lab.
    pub fn add_nic(&self, node_if: &str) -> Result<()> {
        let port = format!("p-{node_if}");
        ip(
            &self.sw,
            &format!(
                "link add {port} type veth peer name {node_if} netns {}",
                self.node.name()
            ),
        )?;
        ip(&self.sw, &format!("link set {port} master {BRIDGE}"))?;
        self.sw.ok(&["ethtool", "-K", &port, "tx", "off"])?;
        ip(&self.sw, &format!("link set {port} up"))?;
        ip(&self.node, &format!("link set {node_if} up"))?;
        Ok(())
    }

    /// A veth `dev` in the node with its peer `<dev>p`, both up: a parent or
    /// an uplink a test may delete (both ends go) and make again.
    pub fn add_veth(&self, dev: &str) -> Result<()> {
        ip(
            &self.node,
            &format!("link add {dev} type veth peer name {dev}p"),
        )?;
        ip(&self.node, &format!("link set {dev} up"))?;
        ip(&self.node, &format!("link set {dev}p up"))?;
        Ok(())
    }

    /// Containers `c1` .. `c<n>` ([`Lab::container`]).
    pub fn containers(&self, n: usize) -> Result<Vec<Arc<Netns>>> {
        (1..=n).map(|i| self.container(&format!("c{i}"))).collect()
    }

    /// `<pid>-<n>`, part of every namespace name of this lab.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The external host on the wire (`wire0`).
    pub fn ext(&self) -> &Netns {
        &self.ext
    }

    /// The switch (`br0` with ports `p-ext`, `p-node`).
    pub fn sw(&self) -> &Netns {
        &self.sw
    }

    /// The node; its parent NIC is `eth1`.
    pub fn node(&self) -> &Netns {
        &self.node
    }

    /// The `attach` CLI run in the node.
    pub fn attach(&self) -> &Attach {
        &self.attach
    }

    /// The empty namespace `atl-<tag>-<name>` (DAD off, `lo` up), made on
    /// first use and deleted with the lab after `attach reset` (or later, if
    /// a clone outlives it).
    pub fn container(&self, name: &str) -> Result<Arc<Netns>> {
        let mut containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        let full = format!("{NETNS_PREFIX}-{}-{name}", self.tag);
        if let Some(ns) = containers.iter().find(|n| n.name() == full) {
            return Ok(ns.clone());
        }
        let ns = Arc::new(lab_netns(&self.tag, name)?);
        containers.push(ns.clone());
        Ok(ns)
    }

    /// Forgets container `name`: its namespace is deleted once the caller's
    /// handles are dropped too (a container exiting).
    pub fn drop_container(&self, name: &str) {
        let full = format!("{NETNS_PREFIX}-{}-{name}", self.tag);
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|n| n.name() != full);
    }

    /// Addresses for container `i` (< 100): ("10.77.0.{10+i}/24", "fd77::{10+i}/64").
    pub fn container_ip(i: u8) -> (String, String) {
        assert!(
            i < 100,
            "container index {i} would leave the container range"
        );
        let host = 10 + u32::from(i);
        (format!("10.77.0.{host}/24"), format!("fd77::{host}/64"))
    }

    /// The node's bpffs pin directory (whether or not it exists now).
    pub fn node_pin_dir(&self) -> std::path::PathBuf {
        let id = node_id(self.node.path()).expect("node id");
        format!("/sys/fs/bpf/attach/node-{id}").into()
    }

    /// The node's attachment records directory.
    pub fn node_state_dir(&self) -> std::path::PathBuf {
        let id = node_id(self.node.path()).expect("node id");
        format!("/run/attach/node-{id}").into()
    }

    /// A container `name` with IPv6 off: adding an IPv6 address there fails
    /// late, after the interface is made (a rollback to check).
    pub fn container_without_ipv6(&self, name: &str) -> Result<Arc<Netns>> {
        let ns = self.container(name)?;
        for key in ["all", "default"] {
            ns.ok(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
            ])?;
        }
        Ok(ns)
    }

    /// The record `attach list` has for the container in `ns`.
    pub fn record(&self, ns: &Netns) -> serde_json::Value {
        let list = self.attach().json(&["list"]).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["netns"] == ns.name())
            .cloned()
            .unwrap_or_else(|| panic!("no record for {}: {list}", ns.name()))
    }

    /// Runs `f` on a thread inside the node's namespace.
    pub fn in_node<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        use std::os::fd::AsRawFd;
        let ns = std::fs::File::open(self.node().path()).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: valid netns fd; only this thread moves.
                assert_eq!(
                    unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                    0
                );
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// Names of all of this lab's namespaces, containers included.
    pub fn netns_names(&self) -> Vec<String> {
        let mut names: Vec<String> = [&self.ext, &self.sw, &self.node]
            .iter()
            .map(|n| n.name().to_owned())
            .collect();
        let containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        names.extend(containers.iter().map(|n| n.name().to_owned()));
        names
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Best effort, before the namespaces go: detach everything and remove
        // the node's pins. Without a binary there is nothing to reset.
        if let Ok(out) = self.attach.run(&["reset"])
            && !out.status.success()
        {
            eprintln!(
                "warning: lab {}: attach reset: {}",
                self.tag,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
}

/// A namespace of lab `tag` with IPv6 DAD off before any address exists,
/// so addresses work at once.
fn lab_netns(tag: &str, role: &str) -> Result<Netns> {
    let ns = Netns::named(&format!("{NETNS_PREFIX}-{tag}-{role}"))?;
    ns.ok(&[
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
    ])?;
    Ok(ns)
}

/// `ip <args>` in `ns`; `args` is split on whitespace.
fn ip(ns: &Netns, args: &str) -> Result<String> {
    let argv: Vec<&str> = std::iter::once("ip")
        .chain(args.split_whitespace())
        .collect();
    ns.ok(&argv)
}

fn json(ns: &Netns, argv: &[&str]) -> Option<serde_json::Value> {
    let out = ns.exec(argv).ok()?;
    serde_json::from_slice(&out.stdout).ok()
}
