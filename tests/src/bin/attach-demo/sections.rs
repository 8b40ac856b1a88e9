//! The sections past the macvlan matrix: host access, ipvlan, bridge ports,
//! router endpoints, nested containers in VMs.

use anyhow::Result;
use attach_tests::{
    lab::{EXT_V4, EXT_V6, Lab, LabOptions, NODE_IF, NODE_V4, Proto, ping},
    reach::{Flavor, attach, attach_bridge, attach_ipvlan, detach, measure},
    routed::{
        attach_router, ext_routes, forward_counter, forward_counter_remove, forward_counter_setup,
        reply_ttl,
    },
    vm::{attach_nested, capture, vm},
};

use crate::check::{expect, yes};

/// ipvlan (eBPF only: no native driver to compare with) in l2, l3 and l3s.
pub(crate) fn ipvlan(lab: &Lab) -> Result<()> {
    for (mode, why) in [
        (
            "l2",
            "endpoints share the parent's MAC and meet by IP; ARP and broadcasts work among them",
        ),
        (
            "l3",
            "NOARP endpoints; the node routes for them and answers ARP/ND from the wire for them",
        ),
        (
            "l3s",
            "as l3, through the node's netfilter; the node itself still cannot reach them",
        ),
    ] {
        eprintln!("  ... ipvlan {mode}");
        let c1 = attach_ipvlan(lab, 1, mode, "bridge", &[])?;
        let c2 = attach_ipvlan(lab, 2, mode, "bridge", &[])?;
        let m = measure(lab, &[&c1, &c2]);
        detach(lab, &c1)?;
        detach(lab, &c2)?;
        // What the line above the matrix says.
        let l2 = mode == "l2";
        for (from, to, p, want) in [
            ("c1", "ext", Proto::V4, true),
            ("c1", "ext", Proto::V6, true),
            ("ext", "c1", Proto::V4, true),
            ("ext", "c1", Proto::V6, true),
            ("c1", "c2", Proto::V4, true),
            ("c2", "c1", Proto::V6, true),
            ("c1", "c2", Proto::Arp, l2),
            ("c1", "ext", Proto::Arp, l2),
            ("node", "c1", Proto::V4, l2),
            ("c1", "node", Proto::V6, l2),
        ] {
            expect(
                &format!("ipvlan {mode}: {from} -> {to} {p:?}"),
                m.get(from, to, p),
                Some(want),
            );
        }
        println!("\n== ipvlan {mode} (bridge flag), eBPF");
        println!("   {why}");
        println!("{m}");
    }
    Ok(())
}

/// Native macvlan cannot reach the node; `--host-access` can.
pub(crate) fn host_access() -> Result<()> {
    println!("== --host-access (switch without hairpin: nothing reflects frames)");
    let lab = Lab::with_options(LabOptions { hairpin: false })?;
    // Whether the node and c1 reach each other: only with --host-access;
    // the wire always.
    let cases: [(&str, Flavor, &[&str], bool); 3] = [
        ("native macvlan", Flavor::Native, &[], false),
        ("eBPF", Flavor::EbpfTc, &[], false),
        (
            "eBPF --host-access",
            Flavor::EbpfTc,
            &["--host-access"],
            true,
        ),
    ];
    println!(
        "{:<20} {:<12} {:<12} {:<12}",
        "bridge endpoint", "node->c1 v4", "c1->node v6", "c1->ext v4"
    );
    for (name, flavor, extra, node) in cases {
        let c1 = attach(&lab, 1, "bridge", flavor, extra)?;
        let m = measure(&lab, &[&c1]);
        detach(&lab, &c1)?;
        let yes = |from, to, p, want: bool| {
            let what = format!("{name}: {from} -> {to} {p:?}");
            yes(expect(&what, m.get(from, to, p), Some(want)) == Some(true))
        };
        println!(
            "{:<20} {:<12} {:<12} {:<12}",
            name,
            yes("node", "c1", Proto::V4, node),
            yes("c1", "node", Proto::V6, node),
            yes("c1", "ext", Proto::V4, true)
        );
    }
    Ok(())
}

/// bridge: ports of a Linux bridge whose other port is the node's second
/// NIC, and of our eBPF switch with that NIC as its uplink; then what the
/// ports' options promise, on the switch.
pub(crate) fn bridge() -> Result<()> {
    for backend in ["native", "ebpf"] {
        eprintln!("  ... bridge {backend}");
        let lab = Lab::new()?;
        lab.add_nic("eth2")?;
        let extra: &[&str] = if backend == "native" {
            lab.node().ok(&[
                "ip",
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "stp_state",
                "0",
            ])?;
            lab.node()
                .ok(&["ip", "link", "set", "eth2", "master", "br0"])?;
            lab.node().ok(&["ip", "link", "set", "br0", "up"])?;
            &["--spoofchk", "on"]
        } else {
            &["--uplink", "eth2"]
        };
        let c1 = attach_bridge(&lab, 1, "br0", backend, extra)?;
        let c2 = attach_bridge(&lab, 2, "br0", backend, &[])?;
        let m = measure(&lab, &[&c1, &c2]);
        // Ports of one bridge meet, and reach and are reached from the wire.
        for (from, to) in [("c1", "c2"), ("c2", "c1"), ("c1", "ext"), ("ext", "c2")] {
            for p in [Proto::V4, Proto::V6] {
                expect(
                    &format!("bridge {backend}: {from} -> {to} {p:?}"),
                    m.get(from, to, p),
                    Some(true),
                );
            }
        }
        println!(
            "\n== bridge, {backend}: {}",
            if backend == "native" {
                "ports of Linux bridge br0 of the node, whose other port is its NIC eth2"
            } else {
                "ports of our eBPF switch br0, uplink eth2 (the node reaches them over the wire, from eth1)"
            }
        );
        println!("{m}");
        if backend == "ebpf" {
            let c3 = attach_bridge(&lab, 3, "br0", backend, &["--vlan", "10"])?;
            let c4 = attach_bridge(&lab, 4, "br0", backend, &["--vlan", "10"])?;
            let c5 = attach_bridge(&lab, 5, "br0", backend, &["--isolated"])?;
            let c6 = attach_bridge(&lab, 6, "br0", backend, &["--isolated"])?;
            println!("   c3, c4 in VLAN 10; c5, c6 isolated:");
            for (a, b, why, want) in [
                (&c3, &c4, "same VLAN", true),
                (&c3, &c1, "VLAN 10 -> untagged", false),
                (&c5, &c6, "isolated -> isolated", false),
                (&c5, &c1, "isolated -> non-isolated", true),
            ] {
                let got = attach_tests::lab::ping(&a.ns, &b.v4);
                let what = format!("bridge {backend}: {} -> {} v4 ({why})", a.label, b.label);
                println!(
                    "   {} -> {} v4: {:<3} ({why})",
                    a.label,
                    b.label,
                    yes(expect(&what, got, want))
                );
            }
            for c in [&c3, &c4, &c5, &c6] {
                detach(&lab, c)?;
            }
        }
        detach(&lab, &c1)?;
        detach(&lab, &c2)?;
    }
    Ok(())
}
/// router: routed endpoints, forwarded by our programs or by the node.
pub(crate) fn router() -> Result<()> {
    println!(
        "\n== router: a veth per endpoint, a host route per address (CNI \"ptp\"); the node routes"
    );
    println!(
        "   c1 10.88.0.11/32 fd88::11/128, c2 10.88.0.12/24 fd88::12/64; gateways 169.254.1.1 and fe80::1;"
    );
    println!(
        "   ext routes 10.88.0.0/24 and fd88::/64 via the node. Reply TTLs: 63 = routed once."
    );
    let lab = Lab::new()?;
    ext_routes(&lab)?;
    let mut columns = Vec::new();
    for (name, extra) in [
        ("ebpf", &["--uplink", NODE_IF][..]),
        ("kernel", &["--datapath", "kernel"][..]),
    ] {
        eprintln!("  ... router, {name} datapath");
        forward_counter_setup(lab.node())?;
        let c1 = attach_router(&lab, 1, extra)?;
        let c2 = attach_router(&lab, 2, extra)?;
        // Replies routed once (63) between endpoints and the wire; the node
        // and an endpoint are one hop apart (64).
        let ttl = |what: &str, from: &attach_tests::lab::Netns, to: &str, want: u8| {
            let got = reply_ttl(from, to);
            expect(&format!("router {name}: {what} reply TTL"), got, Some(want));
            got.map_or("no".to_owned(), |t| format!("ttl {t}"))
        };
        let mut rows = vec![
            ("c1 -> ext v4", ttl("c1 -> ext v4", &c1.ns, EXT_V4, 63)),
            ("c1 -> ext v6", ttl("c1 -> ext v6", &c1.ns, EXT_V6, 63)),
            ("ext -> c1 v4", ttl("ext -> c1 v4", lab.ext(), &c1.v4, 63)),
            ("ext -> c2 v6", ttl("ext -> c2 v6", lab.ext(), &c2.v6, 63)),
            ("c1 -> c2 v4", ttl("c1 -> c2 v4", &c1.ns, &c2.v4, 63)),
            ("c2 -> c1 v6", ttl("c2 -> c1 v6", &c2.ns, &c1.v6, 63)),
            ("c1 -> node v4", ttl("c1 -> node v4", &c1.ns, NODE_V4, 64)),
            (
                "node -> c2 v6",
                ttl("node -> c2 v6", lab.node(), &c2.v6, 64),
            ),
        ];
        // Our programs forward without the node's FORWARD hook; the
        // kernel datapath goes through it.
        let forwarded = forward_counter(lab.node())?;
        expect(
            &format!("router {name}: the node's FORWARD hook saw packets"),
            forwarded > 0,
            name == "kernel",
        );
        rows.push(("node FORWARD hook", format!("{forwarded} packets")));
        columns.push((name, rows));
        for c in [&c1, &c2] {
            lab.attach().ok(&["del", "--netns", c.ns.name()])?;
        }
        forward_counter_remove(lab.node())?;
    }
    println!("{:<20} {:<14} {:<14}", "", "ebpf", "kernel");
    for i in 0..columns[0].1.len() {
        println!(
            "{:<20} {:<14} {:<14}",
            columns[0].1[i].0, columns[0].1[i].1, columns[1].1[i].1
        );
    }
    Ok(())
}

/// nested: containers in VMs, on their own VLANs; the VMs' engines and the
/// host's.
pub(crate) fn nested() -> Result<()> {
    println!(
        "\n== nested: containers inside VMs (namespaces with their own engine), one VLAN each on the VM's uplink"
    );
    println!(
        "   vm1: a on VLAN 100 (tag stripped on the host), b on VLAN 200 (tag kept); vm2: d on VLAN 200 (kept);"
    );
    println!(
        "   vm3, whose uplink is itself tagged (S-tag 10): q on VLAN 100; h: a macvlan container on the host."
    );
    let lab = Lab::new()?;
    let vm1 = vm(&lab, "vm1", "tap1")?;
    let vm2 = vm(&lab, "vm2", "tap2")?;
    let vm3 = vm(&lab, "vm3", "tap3")?;
    eprintln!("  ... nested");
    let h = attach(&lab, 2, "bridge", Flavor::EbpfTc, &[])?;
    let a = attach_nested(&lab, &vm1, "a", 100, None, 31, &[])?;
    let b = attach_nested(&lab, &vm1, "b", 200, None, 41, &["--keep-tag"])?;
    let d = attach_nested(&lab, &vm2, "d", 200, None, 42, &["--keep-tag"])?;
    let q = attach_nested(&lab, &vm3, "q", 100, Some(10), 51, &[])?;
    println!("{:<28} v4/v6", "");
    // VLAN 100 is stripped on the host (it meets the untagged wire and the
    // host's containers); VLAN 200 keeps its tag: its members meet each
    // other only.
    for (what, from, to, want) in [
        ("a (VLAN 100) -> ext", &*a.ns, [EXT_V4, EXT_V6], true),
        ("ext -> a", lab.ext(), [&a.v4, &a.v6], true),
        ("a -> h (host container)", &a.ns, [&h.v4, &h.v6], true),
        ("h -> q (QinQ)", &h.ns, [&q.v4, &q.v6], true),
        ("q -> ext", &q.ns, [EXT_V4, EXT_V6], true),
        ("b -> d (VLAN 200, 2 VMs)", &b.ns, [&d.v4, &d.v6], true),
        ("a -> d (VLAN 100 -> 200)", &a.ns, [&d.v4, &d.v6], false),
        ("d -> ext (untagged wire)", &d.ns, [EXT_V4, EXT_V6], false),
    ] {
        let [v4, v6] = to.map(|dst| {
            yes(expect(
                &format!("nested: {what} {dst}"),
                ping(from, dst),
                want,
            ))
        });
        println!("{what:<28} {v4}/{v6}");
    }
    for (tap, c, want) in [
        ("tap1", &a, "ethertype 802.1Q (0x8100), vlan 100"),
        (
            "tap3",
            &q,
            "ethertype 802.1Q-QinQ (0x88a8), vlan 10, ethertype 802.1Q (0x8100), vlan 100",
        ),
    ] {
        let seen = capture(lab.node(), tap, "vlan", 3, || {
            ping(&c.ns, EXT_V4);
        });
        // "..., ethertype 802.1Q (0x8100), length 102: vlan 100, p 0, ethertype IPv4 ..."
        let tags = seen
            .lines()
            .find(|l| l.contains("ICMP echo request"))
            .and_then(|line| {
                let (from, to) = (
                    line.find("ethertype 802.1Q")?,
                    line.find(", ethertype IPv4")?,
                );
                Some(
                    line[from..to]
                        .split(", ")
                        .map(|p| p.rsplit(": ").next().unwrap_or(p))
                        .filter(|p| !p.starts_with("p "))
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            });
        let what = format!("nested: the tags of {}'s echo request on {tap}", c.label);
        let tags = expect(&what, tags, Some(want.to_owned())).unwrap_or_default();
        println!("on {tap}, {}'s echo request carries: {tags}", c.label);
    }
    println!("\n`attach list` on the host, then in vm1:");
    println!("{}", lab.attach().ok(&["list"])?);
    println!("{}", vm1.engine.ok(&["list"])?);
    Ok(())
}
