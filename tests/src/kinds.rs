//! Pieces the host, container and sriov tests and the demo share: the sriov
//! stand-in device, sockets held in a namespace, probes from a namespace
//! file the test does not own; and the arguments of an `add macvlan`.

use std::{
    net::{TcpListener, UdpSocket},
    path::Path,
    process::{Command, Output, Stdio},
    time::Duration,
};

use anyhow::Result;

use crate::{
    lab::{BRIDGE, Lab},
    netns::Netns,
};

/// The arguments of `attach add macvlan` of `ns` on `parent` with address
/// `ip`, then `extra`.
pub fn add_macvlan<'a>(
    parent: &'a str,
    ns: &'a Netns,
    ip: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "add",
        "macvlan",
        "--parent",
        parent,
        "--netns",
        ns.name(),
        "--ip",
        ip,
    ];
    args.extend(extra);
    args
}

/// The sriov stand-in's name in the node, and its peer's on the switch.
pub const STANDIN: &str = "sr0";
pub const STANDIN_PORT: &str = "p-sr0";

/// The sriov stand-in: this kernel has neither SR-IOV nor the dummy driver,
/// so a veth plays the physical device: `sr0` in the node, its peer `p-sr0`
/// a port of the lab's switch (so whoever gets `sr0` reaches the external
/// host through it).
pub fn standin(lab: &Lab) -> Result<()> {
    let sw = lab.sw();
    sw.ok(&[
        "ip",
        "link",
        "add",
        STANDIN_PORT,
        "type",
        "veth",
        "peer",
        "name",
        STANDIN,
        "netns",
        lab.node().name(),
    ])?;
    sw.ok(&["ip", "link", "set", STANDIN_PORT, "master", BRIDGE])?;
    sw.ok(&["ethtool", "-K", STANDIN_PORT, "tx", "off"])?;
    sw.ok(&["ip", "link", "set", STANDIN_PORT, "up"])?;
    lab.node().ok(&["ip", "link", "set", STANDIN, "up"])?;
    Ok(())
}

/// A TCP listener on `0.0.0.0:tcp` and a UDP socket on `[::]:udp`, bound in
/// `ns` (from a thread that enters it), open while the value lives.
pub fn listen_in(ns: &Netns, tcp: u16, udp: u16) -> Result<(TcpListener, UdpSocket)> {
    ns.run(move || {
        Ok((
            TcpListener::bind(("0.0.0.0", tcp))?,
            UdpSocket::bind(("::", udp))?,
        ))
    })
}

/// `argv` in the namespace at `path` (one the test does not own).
pub fn in_ns(path: &Path, argv: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net={}", path.display()))
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .expect("nsenter")
}

/// Like `lab::ping` (one echo, not retried; a probe that cannot run
/// panics), from the namespace at `path`.
pub fn ping_from(path: &Path, dst: &str) -> bool {
    crate::probe::ping_at(path, dst)
}

pub fn node_has_link(lab: &Lab, name: &str) -> bool {
    lab.node()
        .exec(&["ip", "link", "show", name])
        .is_ok_and(|o| o.status.success())
}

/// Namespaces are freed asynchronously: waits (up to 10 s) for a link of
/// the node to go; whether it went.
pub fn wait_link_gone(lab: &Lab, name: &str) -> bool {
    crate::poll::until(Duration::from_secs(10), Duration::from_millis(50), || {
        !node_has_link(lab, name)
    })
}

/// The id of the program in an endpoint port's transmit hook: a cls_bpf
/// filter on the clsact ingress of its host-side veth `host_ifname`, in the
/// node namespace `node`.
pub fn port_hook_prog(node: &Path, host_ifname: &str) -> Option<u64> {
    let out = in_ns(
        node,
        &["tc", "-j", "filter", "show", "dev", host_ifname, "ingress"],
    );
    let filters: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    filters
        .as_array()?
        .iter()
        .filter(|f| f["pref"] == 1)
        .find_map(|f| f["options"]["prog"]["id"].as_u64())
}

/// Removes an endpoint port's transmit hook behind the engine's back: its
/// tcx link (a CNI runtime's attachment) by its pin, else its filter.
pub fn detach_port_hook(node: &Path, host_ifname: &str) {
    let show = in_ns(node, &["ip", "-j", "link", "show", host_ifname]);
    let link: serde_json::Value = serde_json::from_slice(&show.stdout).expect("ip -j link");
    let ifindex = link[0]["ifindex"].as_u64().expect("the port's ifindex");
    let id = crate::netns::node_id(node).expect("node id");
    let pin = format!("/sys/fs/bpf/attach/node-{id}/links/port-{ifindex}-tx");
    if Path::new(&pin).exists() {
        std::fs::remove_file(&pin).unwrap();
        return;
    }
    let del = [
        "tc",
        "filter",
        "del",
        "dev",
        host_ifname,
        "ingress",
        "pref",
        "1",
        "handle",
        "1",
        "bpf",
    ];
    let out = in_ns(node, &del);
    assert!(out.status.success(), "{del:?}: {out:?}");
    assert_eq!(port_hook_prog(node, host_ifname), None);
}
