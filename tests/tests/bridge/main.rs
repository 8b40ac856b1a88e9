//! bridge in namespaces, on both backends: a Linux bridge in the node
//! (native) and our eBPF switch (ebpf), each checked against what a bridge
//! promises: ports reach each other (IPv4, IPv6, ARP, ND, broadcast), VLAN
//! access ports only their VLAN, isolated ports only non-isolated ones,
//! spoofed sources are dropped, the wire is reached through the node's NIC
//! (a bridge port, or the switch's uplink, a trunk). The two backends are
//! also compared with each other on one matrix. Bad input leaves the node
//! as it was; `check`/`reconcile` see and repair drift.

mod bad_input;
mod del;
mod differential;
mod ports;
mod repair;
mod shared_uplink;

use attach_tests::{
    lab::{Lab, Netns, arping, broadcast_reaches, ndisc, ping},
    reach::{Endpoint, attach_bridge},
};
use serde_json::Value;

const BACKENDS: [&str; 2] = ["native", "ebpf"];
/// The bridge (native) or switch (ebpf) name the tests use.
const BR: &str = "brt";
/// The node's second NIC, cabled to the lab's switch: the bridge's port
/// (native) or the switch's uplink (ebpf).
const NIC: &str = "eth2";

/// Sends, on device argv[1], an ARP request tagged with VLAN 10 for
/// argv[2], from 10.77.0.1 (the external host has no VLAN device: 802.1Q
/// devices are off in this kernel).
const TAGGED_ARP: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
mac = s.getsockname()[4]
arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + socket.inet_aton("10.77.0.1")
arp += bytes(6) + socket.inet_aton(sys.argv[2])
s.send(b"\xff" * 6 + mac + struct.pack("!HHH", 0x8100, 10, 0x0806) + arp)
"#;

/// A Linux bridge `BR` in the node (native only): no STP, no multicast
/// snooping (every multicast floods, as the eBPF switch does), and VLAN
/// filtering if asked and the kernel has it. Returns whether it filters.
fn node_bridge(lab: &Lab, backend: &str, vlan_filtering: bool) -> bool {
    if backend != "native" {
        return false;
    }
    let filtering = vlan_filtering && native_vlans(lab);
    let mut argv = vec![
        "ip",
        "link",
        "add",
        BR,
        "type",
        "bridge",
        "stp_state",
        "0",
        "forward_delay",
        "0",
        "mcast_snooping",
        "0",
    ];
    if filtering {
        argv.extend(["vlan_filtering", "1"]);
    }
    lab.node().ok(&argv).unwrap();
    lab.node().ok(&["ip", "link", "set", BR, "up"]).unwrap();
    filtering
}

/// Whether the kernel's bridge filters VLANs (CONFIG_BRIDGE_VLAN_FILTERING;
/// off on the machine these tests were written on, where native `--vlan`
/// is refused and its reachability rows are skipped, said so).
fn native_vlans(lab: &Lab) -> bool {
    let ok = lab
        .node()
        .exec(&[
            "ip",
            "link",
            "add",
            "brprobe",
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ])
        .is_ok_and(|o| o.status.success());
    if ok {
        lab.node().ok(&["ip", "link", "del", "brprobe"]).unwrap();
    } else {
        eprintln!("skipping native VLAN rows: this kernel's bridge has no VLAN filtering");
    }
    ok
}

/// The node reaches the wire through `NIC`: a port of the native bridge,
/// or the switch's uplink (returned as the extra arguments of the first
/// port).
fn wire(lab: &Lab, backend: &str) -> Vec<&'static str> {
    lab.add_nic(NIC).unwrap();
    if backend == "native" {
        lab.node()
            .ok(&["ip", "link", "set", NIC, "master", BR])
            .unwrap();
        Vec::new()
    } else {
        vec!["--uplink", NIC]
    }
}

fn port(lab: &Lab, i: u8, backend: &str, extra: &[&str]) -> Endpoint {
    let mut args = extra.to_vec();
    if backend == "native" && !args.contains(&"--spoofchk") {
        // The source guard is part of what native ports are tested with.
        args.extend(["--spoofchk", "on"]);
    }
    attach_bridge(lab, i, BR, backend, &args).unwrap()
}

/// Every neighbour forgotten, so each probe resolves afresh.
fn forget(all: &[&Netns]) {
    for ns in all {
        let _ = ns.exec(&["ip", "-4", "neigh", "flush", "all"]);
        let _ = ns.exec(&["ip", "-6", "neigh", "flush", "all"]);
    }
}

/// (v4, v6, ARP, ND, broadcast) from `a` to `b`.
fn reach(a: &Endpoint, b: &Endpoint) -> [bool; 5] {
    forget(&[&a.ns, &b.ns]);
    let r = [
        ping(&a.ns, &b.v4),
        ping(&a.ns, &b.v6),
        arping(&a.ns, "eth0", &b.v4),
        ndisc(&a.ns, "eth0", &b.v6),
        broadcast_reaches(&a.ns, "eth0", &b.ns, "eth0"),
    ];
    eprintln!("{} -> {}: v4/v6/arp/nd/bcast {r:?}", a.label, b.label);
    r
}

fn stats(lab: &Lab) -> Value {
    lab.attach().json(&["stats"]).unwrap()
}
