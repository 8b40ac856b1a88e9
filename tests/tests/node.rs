//! The node as a whole: several nodes on one machine, what an attach tells
//! the wire, and what it leaves on the parent.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Stdio},
};

use attach_tests::{
    lab::{EXT_IF, EXT_V4, Lab, NODE_IF, Netns, ping, require_root},
    reach::{Flavor, attach, detach, mac_of},
};

#[test]
fn two_nodes_on_one_machine_do_not_collide() {
    require_root();
    let a = Lab::new().unwrap();
    let b = Lab::new().unwrap();
    // Same container names, addresses and MACs in both: only the node differs.
    let ca = attach(&a, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let cb = attach(&b, 1, "bridge", Flavor::EbpfXdp, &[]).unwrap();
    let (pa, pb) = (a.node_pin_dir(), b.node_pin_dir());
    assert_ne!(pa, pb);
    assert!(pa.join("attach_eps").exists() && pb.join("attach_eps").exists());
    assert_ne!(a.node_state_dir(), b.node_state_dir());
    assert!(ping(&ca.ns, EXT_V4));
    assert!(ping(&cb.ns, EXT_V4));

    // Each node lists only its own.
    let list = a.attach().json(&["list"]).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["netns"], ca.ns.name());

    a.attach().ok(&["reset"]).unwrap();
    assert!(!pa.exists(), "{} left after reset", pa.display());
    assert!(pb.join("attach_eps").exists());
    assert!(ping(&cb.ns, EXT_V4), "the other node's endpoint broke");
    assert_eq!(
        b.attach()
            .json(&["list"])
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    detach(&b, &cb).unwrap();
    assert!(!pb.exists(), "{} left after the last detach", pb.display());
}

/// tcpdump on the external host, started before the attach, printing the
/// first packet matching `filter`.
fn capture(ns: &Netns, filter: &str) -> Child {
    let mut child = ns
        .command(&[
            "timeout",
            "5",
            "tcpdump",
            "-i",
            EXT_IF,
            "-n",
            "-l",
            "-c",
            "1",
            "--immediate-mode",
            filter,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 && !line.contains("listening on") {
        line.clear();
    }
    child
}

#[test]
fn attach_announces_its_addresses() {
    require_root();
    let lab = Lab::new().unwrap();
    for (i, flavor) in [(1u8, Flavor::EbpfTc), (2, Flavor::Native)] {
        let (v4, v6) = Lab::container_ip(i);
        let v4 = v4.split('/').next().unwrap().to_owned();
        let v6 = v6.split('/').next().unwrap().to_owned();
        let garp = capture(lab.ext(), &format!("arp and host {v4}"));
        // An unsolicited neighbour advertisement (ICMPv6 type 136) of this
        // container's address (the kernel sends it from the address it
        // advertises), not of an earlier container's.
        let na = capture(
            lab.ext(),
            &format!("icmp6 and ip6[40] == 136 and src host {v6}"),
        );
        let c = attach(&lab, i, "bridge", flavor, &[]).unwrap();
        // It can send when attach returns: a transmit queue, not `noop`
        // (a veth gets one only in the kernel's deferred link-state work).
        let link = c.ns.sh("ip -o link show eth0").unwrap();
        let link = String::from_utf8_lossy(&link.stdout);
        assert!(
            link.contains("qdisc noqueue"),
            "{}: eth0 cannot send yet: {link}",
            flavor.name()
        );
        for (what, child) in [("gratuitous ARP", garp), ("unsolicited NA", na)] {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                !text.trim().is_empty(),
                "{}: no {what} seen on the wire",
                flavor.name()
            );
        }
        detach(&lab, &c).unwrap();
    }
}

#[test]
fn endpoint_macs_enter_the_parent_unicast_filter() {
    require_root();
    let lab = Lab::new().unwrap();
    let fdb = || {
        lab.node()
            .ok(&["bridge", "fdb", "show", "dev", NODE_IF])
            .unwrap()
    };
    let c = attach(&lab, 3, "vepa", Flavor::EbpfTc, &[]).unwrap();
    let mac = mac_of(3);
    assert!(
        fdb().contains(&mac),
        "{mac} not in {NODE_IF}'s filter:\n{}",
        fdb()
    );
    detach(&lab, &c).unwrap();
    assert!(!fdb().contains(&mac), "{mac} left in {NODE_IF}'s filter");
}

#[test]
fn anti_spoofing_drops_foreign_sources_unless_turned_off() {
    require_root();
    let lab = Lab::new().unwrap();
    for (spoofchk, blocked) in [("on", true), ("off", false)] {
        let c = attach(&lab, 4, "bridge", Flavor::EbpfTc, &["--spoofchk", spoofchk]).unwrap();
        // The container takes an address it was not given, and uses it.
        c.ns.ok(&["ip", "addr", "add", "10.77.0.99/24", "dev", "eth0"])
            .unwrap();
        let from_foreign =
            c.ns.exec(&["ping", "-c", "1", "-W", "1", "-I", "10.77.0.99", EXT_V4])
                .unwrap()
                .status
                .success();
        assert_eq!(from_foreign, !blocked, "spoofchk {spoofchk}");
        // The blocked ARP left a failed neighbour entry behind: forget it.
        c.ns.ok(&["ip", "neigh", "flush", "all"]).unwrap();
        assert!(
            ping(&c.ns, EXT_V4),
            "its own address must work (spoofchk {spoofchk})"
        );
        if blocked {
            let stats = lab.attach().json(&["stats"]).unwrap();
            let spoofed = stats["verdicts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["verdict"] == "spoofed_source")
                .and_then(|v| v["packets"].as_u64())
                .unwrap_or(0);
            assert!(spoofed > 0, "no spoofed_source drop counted: {stats}");
        }
        detach(&lab, &c).unwrap();
    }
}
