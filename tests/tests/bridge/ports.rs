//! What a bridge promises its ports: they reach each other, VLAN access
//! ports only their VLAN, isolated ports only non-isolated ones, spoofed
//! sources are dropped, and the wire is reached through the node's NIC.

use attach_tests::{
    lab::require_root,
    lab::{EXT_IF, EXT_V4, EXT_V6, Lab, Netns, broadcast_reaches, captures, ping},
    reach::{Endpoint, detach, mac_of},
    report::verdict,
    snapshot::snapshot,
};
use serde_json::Value;

use super::*;

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
