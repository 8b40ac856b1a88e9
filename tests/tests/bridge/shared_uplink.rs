//! One NIC, the uplink of an eBPF switch and the parent of eBPF macvlan
//! endpoints: the switch's untagged ports and the bridge-mode endpoints
//! reach each other as hosts of one subnet on one switch (unicast v4/v6,
//! ARP, ND, broadcast, each broadcast once), without the wire; a private
//! endpoint and a VLAN port do not; the wire reaches each; deleting either
//! side last leaves the other working and `check` clean.

use attach_tests::{
    lab::{EXT_V4, EXT_V6, Lab, LabOptions, NODE_IF, Netns, SW_NODE_PORT, UNUSED_V4, ping},
    lab::{arping, require_root},
    reach::{Endpoint, Flavor, attach, attach_bridge, detach},
    report::{counters, link_mac},
};

use super::{BR, reach};

/// Counts, in the lab's switch, unicast frames that arrive from the node's
/// NIC with a source and a destination among `macs`: frames between the
/// node's endpoints that left by the wire. Removed on drop.
struct WireCount<'a> {
    sw: &'a Netns,
}

impl<'a> WireCount<'a> {
    fn new(lab: &'a Lab, macs: &[String]) -> Self {
        let sw = lab.sw();
        let set = macs.join(", ");
        let rules = format!(
            "table bridge attach_wire {{\n chain pre {{\n  type filter hook prerouting priority 0;\n  iifname \"{SW_NODE_PORT}\" ether saddr {{ {set} }} ether daddr {{ {set} }} counter\n }}\n}}\n"
        );
        let count = WireCount { sw };
        std::fs::write(count.file(), rules).unwrap();
        sw.ok(&["nft", "-f", &count.file()]).unwrap();
        count
    }

    fn file(&self) -> String {
        format!("/tmp/attach-wire-{}.nft", self.sw.name())
    }

    fn packets(&self) -> u64 {
        let out = self
            .sw
            .ok(&["nft", "-j", "list", "table", "bridge", "attach_wire"])
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o["rule"]["expr"].as_array())
            .flatten()
            .filter_map(|e| e["counter"]["packets"].as_u64())
            .sum()
    }
}

impl Drop for WireCount<'_> {
    fn drop(&mut self) {
        let _ = self
            .sw
            .exec(&["nft", "delete", "table", "bridge", "attach_wire"]);
        let _ = std::fs::remove_file(self.file());
    }
}

/// The broadcasts `ep` received, by its counters.
fn rx_broadcast(lab: &Lab, ep: &Endpoint) -> u64 {
    let stats = lab.attach().json(&["stats"]).unwrap();
    counters(&stats, ep.ns.name())["rx_broadcast"]
        .as_u64()
        .unwrap()
}

#[test]
fn switch_ports_and_macvlan_endpoints_share_the_uplink() {
    require_root();
    let lab = Lab::with_options(LabOptions { hairpin: false }).unwrap();
    let up = ["--uplink", NODE_IF];
    for flavor in [Flavor::EbpfTc, Flavor::EbpfXdp] {
        let case = flavor.name();
        let p = attach_bridge(&lab, 1, BR, "ebpf", &up).unwrap();
        let m = attach(&lab, 2, "bridge", flavor, &[]).unwrap();
        let private = attach(&lab, 3, "private", flavor, &[]).unwrap();
        let tagged =
            attach_bridge(&lab, 4, BR, "ebpf", &[&up[..], &["--vlan", "10"]].concat()).unwrap();
        for ep in [&p, &m, &private] {
            for dst in [EXT_V4, EXT_V6] {
                assert!(ping(&ep.ns, dst), "{case}: {} -> {dst}", ep.label);
            }
        }
        let macs = [&p, &m, &private].map(|e| link_mac(&e.ns, "eth0"));
        let wire = WireCount::new(&lab, &macs);
        for (a, b) in [(&p, &m), (&m, &p)] {
            assert_eq!(
                reach(a, b),
                [true; 5],
                "{case}: {} -> {} v4/v6/arp/nd/bcast",
                a.label,
                b.label
            );
        }
        assert_eq!(
            wire.packets(),
            0,
            "{case}: unicast between them left by the wire"
        );
        // The count sees what does leave: the private endpoint's unicast to
        // the bridge port (its neighbour set by hand: its ARP request, too,
        // only leaves by the wire).
        private
            .ns
            .ok(&[
                "ip", "neigh", "replace", &m.v4, "lladdr", &macs[1], "dev", "eth0",
            ])
            .unwrap();
        assert!(!ping(&private.ns, &m.v4), "{case}: private -> bridge port");
        assert!(wire.packets() > 0, "{case}: the wire count saw nothing");
        drop(wire);
        // A private endpoint leaves by the wire, which here does not
        // reflect; a VLAN port is on another LAN.
        for (a, b) in [(&p, &private), (&private, &p), (&m, &tagged), (&tagged, &m)] {
            assert!(!ping(&a.ns, &b.v4), "{case}: {} -> {}", a.label, b.label);
        }
        // Each broadcast arrives once.
        const SENT: u64 = 3;
        for (a, b) in [(&p, &m), (&m, &p)] {
            let before = rx_broadcast(&lab, b);
            for _ in 0..SENT {
                arping(&a.ns, "eth0", UNUSED_V4);
            }
            let got = rx_broadcast(&lab, b) - before;
            assert!(
                (SENT..2 * SENT).contains(&got),
                "{case}: {} -> {}: {SENT} broadcasts arrived {got} times",
                a.label,
                b.label
            );
        }
        lab.attach().ok(&["check", "--all"]).unwrap();
        detach(&lab, &tagged).unwrap();
        detach(&lab, &private).unwrap();
        // Either side deleted last: the other keeps working.
        if flavor == Flavor::EbpfTc {
            detach(&lab, &m).unwrap();
            lab.attach().ok(&["check", "--all"]).unwrap();
            assert!(
                ping(&p.ns, EXT_V4),
                "{case}: the port after the macvlan left"
            );
            let m = attach(&lab, 2, "bridge", flavor, &[]).unwrap();
            assert!(ping(&m.ns, &p.v4), "{case}: the macvlan came back");
            detach(&lab, &p).unwrap();
            lab.attach().ok(&["check", "--all"]).unwrap();
            assert!(
                ping(&m.ns, EXT_V4),
                "{case}: the macvlan after the switch left"
            );
            detach(&lab, &m).unwrap();
        } else {
            detach(&lab, &p).unwrap();
            lab.attach().ok(&["check", "--all"]).unwrap();
            assert!(
                ping(&m.ns, EXT_V4),
                "{case}: the macvlan after the switch left"
            );
            let p = attach_bridge(&lab, 1, BR, "ebpf", &up).unwrap();
            assert!(ping(&p.ns, &m.v4), "{case}: the switch came back");
            detach(&lab, &m).unwrap();
            lab.attach().ok(&["check", "--all"]).unwrap();
            assert!(
                ping(&p.ns, EXT_V4),
                "{case}: the port after the macvlan left"
            );
            detach(&lab, &p).unwrap();
        }
    }
}

/// The build for kernels without `bpf_loop` keeps the two apart, either
/// way round, naming the missing kernel feature.
#[test]
fn the_compat_build_keeps_them_apart() {
    require_root();
    let lab = Lab::new().unwrap();
    let compat = lab.attach().with_env("ATTACH_EBPF_BUILD", "compat");
    let (a, b) = (lab.container("c1").unwrap(), lab.container("c2").unwrap());
    let (a, b) = (a.name().to_owned(), b.name().to_owned());
    let port = |ns: &str| {
        [
            "add",
            "bridge",
            "--bridge",
            BR,
            "--backend",
            "ebpf",
            "--netns",
            ns,
            "--ip",
            "10.77.0.11/24",
            "--uplink",
            NODE_IF,
        ]
        .map(str::to_owned)
    };
    let macvlan = |ns: &str| {
        [
            "add",
            "macvlan",
            "--parent",
            NODE_IF,
            "--netns",
            ns,
            "--ip",
            "10.77.0.12/24",
        ]
        .map(str::to_owned)
    };
    let refused = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = compat.run(&args).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {err}");
        assert!(err.contains("bpf_loop"), "{args:?}: {err}");
    };
    let ok = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        compat.ok(&args).unwrap();
    };
    ok(&port(&a));
    refused(&macvlan(&b));
    compat.ok(&["del", "--netns", &a]).unwrap();
    ok(&macvlan(&b));
    refused(&port(&a));
    compat.ok(&["del", "--netns", &b]).unwrap();
}

/// A passthru endpoint takes the device's own MAC and traffic: its parent
/// cannot become a switch's uplink (nor, as before, the other way).
#[test]
fn a_passthru_endpoint_keeps_the_uplink_to_itself() {
    require_root();
    let lab = Lab::new().unwrap();
    let pt = attach(&lab, 1, "passthru", Flavor::EbpfTc, &[]).unwrap();
    let out = lab
        .attach()
        .run(&[
            "add",
            "bridge",
            "--bridge",
            BR,
            "--backend",
            "ebpf",
            "--netns",
            lab.container("c2").unwrap().name(),
            "--ip",
            "10.77.0.12/24",
            "--uplink",
            NODE_IF,
        ])
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("passthru"), "{err}");
    detach(&lab, &pt).unwrap();
}

/// A switch port and a macvlan endpoint on its uplink are hosts of one LAN:
/// neither takes the other's MAC or address, whichever came first.
#[test]
fn ports_and_endpoints_on_the_uplink_keep_their_macs_and_addresses_apart() {
    require_root();
    let lab = Lab::new().unwrap();
    let m = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let mac = link_mac(&m.ns, "eth0");
    let c2 = lab.container("c2").unwrap();
    let port = |extra: &[&str]| {
        let mut args = vec![
            "add",
            "bridge",
            "--bridge",
            BR,
            "--backend",
            "ebpf",
            "--no-probe",
            "--netns",
        ];
        args.push(c2.name());
        args.extend(["--uplink", NODE_IF]);
        args.extend(extra);
        lab.attach().run(&args).unwrap()
    };
    let m_ip = format!("{}/24", m.v4);
    for (extra, named) in [
        (
            ["--mac", mac.as_str(), "--ip", "10.77.0.12/24"],
            mac.as_str(),
        ),
        (
            ["--mac", "02:a7:00:00:00:32", "--ip", m_ip.as_str()],
            m.v4.as_str(),
        ),
    ] {
        let out = port(&extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{extra:?}: {err}");
        assert!(
            err.contains(named) && err.contains(m.ns.name()),
            "{extra:?} does not name {named} and its user: {err}"
        );
        assert!(
            lab.attach()
                .json(&["list"])
                .unwrap()
                .as_array()
                .unwrap()
                .len()
                == 1,
            "{extra:?}: a refused port was recorded"
        );
    }
    detach(&lab, &m).unwrap();

    // The other way round: a port first, then an endpoint with its MAC.
    let p = attach_bridge(&lab, 3, BR, "ebpf", &["--uplink", NODE_IF]).unwrap();
    let p_mac = link_mac(&p.ns, "eth0");
    let out = lab
        .attach()
        .run(&[
            "add",
            "macvlan",
            "--parent",
            NODE_IF,
            "--no-probe",
            "--netns",
            c2.name(),
            "--mac",
            &p_mac,
            "--ip",
            "10.77.0.12/24",
        ])
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains(&p_mac) && err.contains(p.ns.name()), "{err}");
    detach(&lab, &p).unwrap();
}
