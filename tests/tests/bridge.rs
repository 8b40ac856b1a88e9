//! bridge in namespaces, on both backends: a Linux bridge in the node
//! (native) and our eBPF switch (ebpf), each checked against what a bridge
//! promises: ports reach each other (IPv4, IPv6, ARP, ND, broadcast), VLAN
//! access ports only their VLAN, isolated ports only non-isolated ones,
//! spoofed sources are dropped, the wire is reached through the node's NIC
//! (a bridge port, or the switch's uplink, a trunk). Bad input leaves the
//! node as it was; `check`/`reconcile` see and repair drift.

use attach_tests::{
    kinds::detach_port_hook,
    lab::require_root,
    lab::{EXT_IF, EXT_V4, EXT_V6, Lab, Netns, arping, broadcast_reaches, captures, ndisc, ping},
    reach::{Endpoint, attach_bridge, detach, mac_of},
    snapshot::snapshot,
};
use serde_json::{Value, json};

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

fn verdict(stats: &Value, dir: &str, name: &str) -> u64 {
    stats["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["direction"] == dir && v["verdict"] == name)
        .and_then(|v| v["packets"].as_u64())
        .unwrap_or(0)
}

#[test]
fn ports_of_one_bridge_reach_each_other() {
    require_root();
    for backend in BACKENDS {
        let lab = Lab::new().unwrap();
        node_bridge(&lab, backend, false);
        let c1 = port(&lab, 1, backend, &[]);
        let c2 = port(&lab, 2, backend, &[]);
        for (a, b) in [(&c1, &c2), (&c2, &c1)] {
            assert_eq!(
                reach(a, b),
                [true; 5],
                "{backend}: {} -> {}",
                a.label,
                b.label
            );
        }
        let s = stats(&lab);
        let sent = |ns: &Netns| {
            s["attachments"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["netns"] == ns.name())
                .and_then(|a| a["counters"]["tx_packets"].as_u64())
                .unwrap_or(0)
        };
        assert!(
            sent(&c1.ns) > 0 && sent(&c2.ns) > 0,
            "{backend}: per-port counters: {s}"
        );
        detach(&lab, &c1).unwrap();
        detach(&lab, &c2).unwrap();
    }
}

#[test]
fn vlans_are_separate() {
    require_root();
    for backend in BACKENDS {
        let lab = Lab::new().unwrap();
        if backend == "native" && !node_bridge(&lab, backend, true) {
            // The clear error instead, and nothing changed.
            let t = lab.container("t").unwrap();
            let before = snapshot(&lab, &[&t]);
            let out = lab
                .attach()
                .run(&[
                    "add",
                    "bridge",
                    "--bridge",
                    BR,
                    "--backend",
                    "native",
                    "--netns",
                    t.name(),
                    "--vlan",
                    "10",
                ])
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{err}");
            assert!(err.contains("CONFIG_BRIDGE_VLAN_FILTERING"), "{err}");
            assert!(before == snapshot(&lab, &[&t]));
            continue;
        }
        let c1 = port(&lab, 1, backend, &["--vlan", "10"]);
        let c2 = port(&lab, 2, backend, &["--vlan", "10"]);
        let c3 = port(&lab, 3, backend, &["--vlan", "20"]);
        let c4 = port(&lab, 4, backend, &["--vlan", "20"]);
        assert_eq!(reach(&c1, &c2), [true; 5], "{backend}: VLAN 10");
        assert_eq!(reach(&c4, &c3), [true; 5], "{backend}: VLAN 20");
        for (a, b) in [(&c1, &c3), (&c3, &c1), (&c2, &c4), (&c4, &c2)] {
            assert_eq!(
                reach(a, b),
                [false; 5],
                "{backend}: {} -> {} across VLANs",
                a.label,
                b.label
            );
        }
        assert_eq!(lab.record(&c3.ns)["vlan"], 20);
        if backend == "native" {
            let host = lab.record(&c1.ns)["host_ifname"]
                .as_str()
                .unwrap()
                .to_owned();
            let v = lab
                .node()
                .ok(&["bridge", "-j", "vlan", "show", "dev", &host])
                .unwrap();
            let v: Value = serde_json::from_str(&v).unwrap();
            let vlans = &v[0]["vlans"];
            assert_eq!(vlans.as_array().map(Vec::len), Some(1), "{v}");
            assert_eq!(vlans[0]["vlan"], 10, "{v}");
        }
    }
}

#[test]
fn isolated_ports_reach_only_non_isolated_ones() {
    require_root();
    for backend in BACKENDS {
        let lab = Lab::new().unwrap();
        node_bridge(&lab, backend, false);
        let c1 = port(&lab, 1, backend, &["--isolated"]);
        let c2 = port(&lab, 2, backend, &["--isolated"]);
        let c3 = port(&lab, 3, backend, &[]);
        for (a, b) in [(&c1, &c2), (&c2, &c1)] {
            assert_eq!(
                reach(a, b),
                [false; 5],
                "{backend}: {} -> {}",
                a.label,
                b.label
            );
        }
        for (a, b) in [(&c1, &c3), (&c3, &c1), (&c2, &c3), (&c3, &c2)] {
            assert_eq!(
                reach(a, b),
                [true; 5],
                "{backend}: {} -> {}",
                a.label,
                b.label
            );
        }
        assert_eq!(lab.record(&c1.ns)["isolated"], true);
    }
}

/// A container sending with a MAC or an address not its own is cut off
/// (and counted); without the check, it is not.
#[test]
fn spoofed_sources_are_dropped() {
    require_root();
    for backend in BACKENDS {
        let lab = Lab::new().unwrap();
        node_bridge(&lab, backend, false);
        let c1 = port(&lab, 1, backend, &[]);
        let c2 = port(&lab, 2, backend, &[]);
        let c3 = port(&lab, 3, backend, &["--spoofchk", "off"]);
        assert!(ping(&c1.ns, &c2.v4));
        // A foreign address.
        for c in [&c1, &c3] {
            c.ns.ok(&["ip", "addr", "add", "10.77.0.99/32", "dev", "eth0"])
                .unwrap();
        }
        let before = verdict(&stats(&lab), "tx", "spoofed_source");
        forget(&[&c1.ns, &c2.ns, &c3.ns]);
        let from_foreign = |c: &Endpoint| {
            c.ns.exec(&["ping", "-c", "1", "-W", "0.5", "-I", "10.77.0.99", &c2.v4])
                .is_ok_and(|o| o.status.success())
        };
        assert!(
            !from_foreign(&c1),
            "{backend}: c1 sent from a foreign address"
        );
        assert!(from_foreign(&c3), "{backend}: c3 (no check) cut off");
        // A foreign MAC.
        forget(&[&c1.ns, &c2.ns]);
        c1.ns
            .ok(&["ip", "link", "set", "eth0", "address", "02:bb:00:00:00:99"])
            .unwrap();
        assert!(
            !ping(&c1.ns, &c2.v4),
            "{backend}: c1 sent from a foreign MAC"
        );
        let after = verdict(&stats(&lab), "tx", "spoofed_source");
        assert!(after > before, "{backend}: no spoofed_source counted");
        // Its own again: it works.
        c1.ns
            .ok(&["ip", "link", "set", "eth0", "address", &mac_of(1)])
            .unwrap();
        forget(&[&c1.ns, &c2.ns]);
        assert!(ping(&c1.ns, &c2.v4), "{backend}: c1 with its own MAC");
    }
}

/// The wire (the lab's external host) is reached through the node's NIC:
/// a port of the native bridge, the eBPF switch's uplink. Ports without a
/// VLAN are on it untagged; a VLAN port's frames leave tagged.
#[test]
fn the_wire_is_reached_through_the_nic() {
    require_root();
    for backend in BACKENDS {
        let lab = Lab::new().unwrap();
        let vlans = node_bridge(&lab, backend, true) || backend == "ebpf";
        let up = wire(&lab, backend);
        let c1 = port(&lab, 1, backend, &up);
        let c2 = port(&lab, 2, backend, &["--isolated"]);
        let c3 = if vlans {
            port(&lab, 3, backend, &["--vlan", "10"])
        } else {
            port(&lab, 3, backend, &[])
        };
        if backend == "native" && vlans {
            // The NIC carries VLAN 10 tagged (a trunk, as the uplink).
            lab.node()
                .ok(&["bridge", "vlan", "add", "dev", NIC, "vid", "10"])
                .unwrap();
        }
        for c in [&c1, &c2] {
            for dst in [EXT_V4, EXT_V6] {
                assert!(ping(&c.ns, dst), "{backend}: {} -> {dst}", c.label);
            }
            forget(&[lab.ext(), &c.ns]);
            assert!(ping(lab.ext(), &c.v4), "{backend}: ext -> {}", c.label);
            assert!(ping(lab.ext(), &c.v6), "{backend}: ext -> {} v6", c.label);
            assert!(
                broadcast_reaches(lab.ext(), EXT_IF, &c.ns, "eth0"),
                "{backend}: ext's broadcast -> {}",
                c.label
            );
        }
        // VLAN 10 is on the wire tagged (the external host has no VLAN
        // interface to answer with: 802.1Q devices are off in this kernel).
        if vlans {
            assert!(!ping(&c3.ns, EXT_V4), "{backend}: c3 is in VLAN 10");
            let arp = ["arping", "-c", "1", "-w", "1", "-I", "eth0", EXT_V4];
            let tagged = captures(
                lab.ext(),
                EXT_IF,
                "vlan 10 and arp",
                "vlan 10",
                &c3.ns,
                &arp,
            );
            assert!(tagged, "{backend}: c3's ARP not seen tagged 10 on the wire");
            // And the other way: an ARP request tagged 10 from the wire
            // reaches c3 (untagged), whose reply leaves tagged 10.
            let send = ["python3", "-c", TAGGED_ARP, EXT_IF, &c3.v4];
            let answered = captures(
                lab.ext(),
                EXT_IF,
                "vlan 10 and arp",
                "is-at",
                lab.ext(),
                &send,
            );
            assert!(
                answered,
                "{backend}: c3 did not answer an ARP request tagged 10"
            );
        }
        if backend == "ebpf" {
            let rec = lab.record(&c1.ns);
            assert_eq!(rec["uplink"], NIC);
            let promisc = |lab: &Lab| {
                let v = lab
                    .node()
                    .ok(&["ip", "-j", "-d", "link", "show", NIC])
                    .unwrap();
                let v: Value = serde_json::from_str(&v).unwrap();
                v[0]["promiscuity"].as_u64().unwrap()
            };
            assert!(promisc(&lab) > 0, "the uplink is not promiscuous");
            for c in [&c1, &c2, &c3] {
                detach(&lab, c).unwrap();
            }
            assert_eq!(
                promisc(&lab),
                0,
                "the uplink's promiscuity was not restored"
            );
            let pins = lab.node_pin_dir();
            assert!(
                !pins.join("links").exists()
                    || std::fs::read_dir(pins.join("links"))
                        .unwrap()
                        .next()
                        .is_none(),
                "pins left: {:?}",
                attach_tests::snapshot::tree(&pins)
            );
        }
    }
}

/// Bad input: a clear error naming the value, the documented exit code,
/// and nothing changed.
#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    require_root();
    let lab = Lab::new().unwrap();
    node_bridge(&lab, "native", false);
    let vlans = native_vlans(&lab);
    lab.node()
        .ok(&["ip", "link", "add", "brf", "type", "bridge"])
        .unwrap();
    let target = lab.container("t").unwrap();
    let t = target.name().to_owned();
    let check = |args: &[&str], code: i32, names: &str, parse: bool| {
        let before = snapshot(&lab, &[&target]);
        let out = lab.attach().run(args).unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("attach {}: {:?}: {err}", args.join(" "), out.status.code());
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            err.contains(names),
            "{args:?}: does not name {names:?}: {err}"
        );
        if !parse {
            let json = lab.attach().run(&[&["-o", "json"], args].concat()).unwrap();
            let v: Value = serde_json::from_slice(&json.stdout).unwrap();
            assert!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(names)),
                "{args:?} json: {v}"
            );
        }
        let after = snapshot(&lab, &[&target]);
        assert!(
            before == after,
            "{args:?} changed the node:\n{}",
            before.diff(&after)
        );
    };
    let run = |backend: &str, extra: &[&str], code: i32, names: &str, parse: bool| {
        let mut args = vec!["add", "bridge", "--netns", &t, "--backend", backend];
        if !extra.contains(&"--bridge") {
            args.extend(["--bridge", BR]);
        }
        args.extend(extra);
        check(&args, code, names, parse);
    };
    for backend in BACKENDS {
        run(backend, &["--vlan", "0"], 2, "VLAN ID 0", false);
        run(backend, &["--vlan", "4095"], 2, "VLAN ID 4095", false);
        run(backend, &["--vlan", "abc"], 2, "\"abc\"", true);
        run(
            backend,
            &["--bridge", "a-very-long-bridge"],
            2,
            "a-very-long-bridge",
            false,
        );
        run(
            backend,
            &["--ip", "10.77.0.60/24", "--mtu", "70000"],
            2,
            "70000",
            false,
        );
        run(
            backend,
            &["--mac", "01:00:5e:00:00:01"],
            2,
            "01:00:5e:00:00:01",
            false,
        );
        let args = [
            "add",
            "bridge",
            "--bridge",
            BR,
            "--backend",
            backend,
            "--netns",
            "no-such-ns",
        ];
        check(&args, 3, "no-such-ns", false);
    }
    // native: the bridge must exist, be a bridge, filter VLANs for --vlan.
    run(
        "native",
        &["--bridge", "nobr0"],
        3,
        "unknown bridge \"nobr0\"",
        false,
    );
    run(
        "native",
        &["--bridge", "eth1"],
        2,
        "unknown bridge \"eth1\"",
        false,
    );
    if vlans {
        run("native", &["--vlan", "10"], 4, "vlan_filtering", false);
    } else {
        run(
            "native",
            &["--vlan", "10"],
            2,
            "CONFIG_BRIDGE_VLAN_FILTERING",
            false,
        );
    }
    run("native", &["--uplink", "eth1"], 2, "--uplink", false);
    run("native", &["--mtu", "9000"], 2, "9000", false);
    // ebpf: the uplink must exist and be usable.
    run("ebpf", &["--uplink", "nope0"], 3, "nope0", false);
    run("ebpf", &["--uplink", BR], 2, BR, false);
    // Beside existing ports: the same MAC or address is a conflict, and a
    // switch's uplink is given with its first port.
    let c1 = port(&lab, 1, "ebpf", &[]);
    let n1 = attach_bridge(&lab, 2, "brf", "native", &["--isolated"]).unwrap();
    let mac = mac_of(1);
    run("ebpf", &["--mac", &mac], 4, &mac, false);
    run("ebpf", &["--ip", "10.77.0.11/24"], 4, "10.77.0.11", false);
    run("ebpf", &["--uplink", "eth1"], 4, "without an uplink", false);
    run(
        "native",
        &["--bridge", "brf", "--mac", &mac_of(2)],
        4,
        &mac_of(2),
        false,
    );
    // A macvlan on the uplink of a switch is refused, and the other way.
    lab.add_nic(NIC).unwrap();
    let c3 = attach_bridge(&lab, 3, "sw2", "ebpf", &["--uplink", NIC]).unwrap();
    let args = ["add", "macvlan", "--parent", NIC, "--netns", &t];
    check(&args, 4, "uplink of switch sw2", false);
    let _m =
        attach_tests::reach::attach(&lab, 5, "bridge", attach_tests::reach::Flavor::EbpfTc, &[])
            .unwrap();
    run(
        "ebpf",
        &["--bridge", "sw3", "--uplink", "eth1"],
        4,
        "parent",
        false,
    );
    for c in [&c1, &n1, &c3] {
        detach(&lab, c).unwrap();
    }
}

/// `check` sees drift and `reconcile` repairs it in place: the static FDB
/// entry, the port's program, the uplink's program (ebpf); the bridge
/// port, its VLAN, the guard (native). Aged FDB entries are swept.
#[test]
fn reconcile_repairs_the_bridge() {
    require_root();
    for backend in BACKENDS {
        let lab = Lab::new().unwrap();
        let vlans = node_bridge(&lab, backend, true) || backend == "ebpf";
        let up = wire(&lab, backend);
        let c1 = port(&lab, 1, backend, &up);
        let vlan: &[&str] = if vlans { &["--vlan", "10"] } else { &[] };
        let c2 = port(&lab, 2, backend, &[vlan, &["--isolated"]].concat());
        let c3 = port(&lab, 3, backend, vlan);
        assert!(reconcile(&lab).is_empty(), "{backend}: a healthy node");
        let host = |c: &Endpoint| {
            lab.record(&c.ns)["host_ifname"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let index = |c: &Endpoint| lab.record(&c.ns)["host_ifindex"].as_u64().unwrap() as u32;
        let mut drifts: Vec<(&str, Drift)> = Vec::new();
        let (h1, h2) = (host(&c1), host(&c2));
        let (node, h) = (lab.node().path().to_owned(), h2.clone());
        drifts.push((
            "transmit program",
            Box::new(move || detach_port_hook(&node, &h)),
        ));
        if backend == "ebpf" {
            let pins = lab.node_pin_dir();
            let sid = lab.record(&c2.ns)["switch_id"].as_u64().unwrap() as u32;
            let mac = mac_of(2);
            drifts.push((
                "static FDB entry",
                Box::new(move || {
                    let mut key: Vec<String> =
                        sid.to_le_bytes().iter().map(u8::to_string).collect();
                    key.extend(10u16.to_le_bytes().iter().map(u8::to_string));
                    key.extend(
                        mac.split(':')
                            .map(|b| u8::from_str_radix(b, 16).unwrap().to_string()),
                    );
                    bpftool_map(&pins.join("attach_sw_fdb"), "delete", &key, &[]);
                }),
            ));
            let pins = lab.node_pin_dir();
            let nic = nic_index(&lab);
            drifts.push((
                "uplink program",
                Box::new(move || {
                    std::fs::remove_file(pins.join(format!("links/uplink-{nic}-sw"))).unwrap()
                }),
            ));
        } else {
            let node = lab.node().path().to_owned();
            let h = h1.clone();
            drifts.push((
                "bridge port",
                Box::new(move || nsenter(&node, &["ip", "link", "set", &h, "nomaster"])),
            ));
            let node = lab.node().path().to_owned();
            let h = h2.clone();
            drifts.push((
                "isolated flag",
                Box::new(move || {
                    let off = [
                        "ip",
                        "link",
                        "set",
                        &h,
                        "type",
                        "bridge_slave",
                        "isolated",
                        "off",
                    ];
                    nsenter(&node, &off)
                }),
            ));
            if vlans {
                let node = lab.node().path().to_owned();
                let h = h2.clone();
                drifts.push((
                    "VLAN",
                    Box::new(move || {
                        nsenter(&node, &["bridge", "vlan", "add", "dev", &h, "vid", "20"])
                    }),
                ));
            }
        }
        for (what, drift) in &drifts {
            drift();
            let bad = [&c1, &c2].iter().any(|c| {
                !lab.attach()
                    .run(&["check", "--netns", c.ns.name()])
                    .unwrap()
                    .status
                    .success()
            });
            assert!(bad, "{backend}: check did not see the {what} drift");
            let r = reconcile(&lab);
            assert!(
                !r.is_empty() && r.iter().all(|r| r["action"] == "repaired"),
                "{backend}: {what}: {r:?}"
            );
            assert!(
                reconcile(&lab).is_empty(),
                "{backend}: {what}: a second pass"
            );
            for c in [&c1, &c2] {
                lab.attach().ok(&["check", "--netns", c.ns.name()]).unwrap();
            }
            forget(&[&c1.ns, &c2.ns, &c3.ns, lab.ext()]);
            assert!(
                ping(&c1.ns, EXT_V4),
                "{backend}: {what}: c1 -> ext after repair"
            );
            assert!(
                ping(&c2.ns, &c3.v6),
                "{backend}: {what}: c2 -> c3 after repair"
            );
        }
        if backend == "ebpf" {
            // An aged learned entry (and one behind no port) is swept.
            let sid = lab.record(&c2.ns)["switch_id"].as_u64().unwrap() as u32;
            let fdb = lab.node_pin_dir().join("attach_sw_fdb");
            for (mac, port) in [(0x71u8, index(&c2)), (0x72, 999_999)] {
                let mut key: Vec<String> = sid.to_le_bytes().iter().map(u8::to_string).collect();
                key.extend(["0", "0", "2", "0", "0", "0", "0"].map(String::from));
                key.push(mac.to_string());
                let mut value: Vec<String> = port.to_le_bytes().iter().map(u8::to_string).collect();
                value.extend((0..12).map(|_| "0".to_owned()));
                value[8] = "1".into(); // seen_ns = 1: long ago
                bpftool_map(&fdb, "update", &key, &value);
            }
            let count = |lab: &Lab| {
                let out = std::process::Command::new("bpftool")
                    .args(["-j", "map", "dump", "pinned"])
                    .arg(lab.node_pin_dir().join("attach_sw_fdb"))
                    .output()
                    .unwrap();
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                v.as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| {
                        // The whole MAC: a learned one may end in 0x71 too.
                        let mac = &e["formatted"]["key"]["mac"];
                        [0x71, 0x72]
                            .iter()
                            .any(|last| *mac == json!([2, 0, 0, 0, 0, last]))
                    })
                    .count()
            };
            assert_eq!(count(&lab), 2);
            assert!(reconcile(&lab).is_empty(), "sweeping is no repair");
            assert_eq!(count(&lab), 0, "aged entries not swept");
        }
        let _ = h2;
    }
}

/// Something changed behind the engine's back.
type Drift = Box<dyn Fn()>;

fn reconcile(lab: &Lab) -> Vec<Value> {
    lab.attach()
        .json(&["reconcile"])
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn nic_index(lab: &Lab) -> u32 {
    let v = lab.node().ok(&["ip", "-j", "link", "show", NIC]).unwrap();
    let v: Value = serde_json::from_str(&v).unwrap();
    v[0]["ifindex"].as_u64().unwrap() as u32
}

fn nsenter(ns: &std::path::Path, argv: &[&str]) {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .arg("--")
        .args(argv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn bpftool_map(map: &std::path::Path, op: &str, key: &[String], value: &[String]) {
    let mut cmd = std::process::Command::new("bpftool");
    cmd.args(["map", op, "pinned"])
        .arg(map)
        .arg("key")
        .args(key);
    if !value.is_empty() {
        cmd.arg("value").args(value);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "bpftool map {op}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `del` is idempotent; the switch goes with its last port; `list -o json`
/// shows the bridge fields.
#[test]
fn del_is_idempotent_and_a_switch_goes_with_its_last_port() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach_bridge(&lab, 1, "sw9", "ebpf", &["--vlan", "7", "--isolated"]).unwrap();
    let c2 = attach_bridge(&lab, 2, "sw9", "ebpf", &[]).unwrap();
    let r = lab.record(&c1.ns);
    for (k, v) in [
        ("kind", "bridge"),
        ("parent", "sw9"),
        ("backend", "ebpf"),
        ("mac", mac_of(1).as_str()),
    ] {
        assert_eq!(r[k], v, "{k}: {r}");
    }
    assert_eq!(r["vlan"], 7);
    assert_eq!(r["isolated"], true);
    assert_eq!(r["spoofchk"], true);
    assert!(r["uplink"].is_null());
    let switches = |lab: &Lab| {
        let out = std::process::Command::new("bpftool")
            .args(["-j", "map", "dump", "pinned"])
            .arg(lab.node_pin_dir().join("attach_switches"))
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout)
            .map(|v| v.as_array().map_or(0, Vec::len))
            .unwrap_or(0)
    };
    assert_eq!(switches(&lab), 1);
    detach(&lab, &c1).unwrap();
    assert_eq!(switches(&lab), 1, "the switch went with a port left");
    lab.attach()
        .ok(&["check", "--netns", c2.ns.name()])
        .unwrap();
    detach(&lab, &c2).unwrap();
    assert!(
        !lab.node_pin_dir().exists(),
        "pins left after the last port"
    );
    let out = lab.attach().ok(&["del", "--netns", c2.ns.name()]).unwrap();
    assert!(out.contains("nothing attached"), "{out}");
}
