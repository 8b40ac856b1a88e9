//! ipvlan in namespaces. This kernel has no ipvlan driver to compare with,
//! so every matrix is checked against one written from the rules of
//! shared/docs/semantics.md (ipvlan section), row by row, in [`expected`].
//!
//! The lab's switch reflects frames (hairpin on the node's port), as a
//! VEPA-capable switch does: the rows that depend on it say so.

use std::time::Duration;

use attach_tests::{
    lab::{
        EXT_V4, EXT_V6, Lab, LabOptions, Matrix, NODE_IF, Netns, Proto, UNUSED_V4, arping,
        broadcast_reaches, ndisc, ping, require_root,
    },
    reach::{Endpoint, Flavor, attach, attach_ipvlan, detach, measure},
    report::{counters, link_mac, verdict},
    snapshot::snapshot,
};
use serde_json::Value;

/// What the ipvlan rules promise for two endpoints c1, c2 of one port in
/// `mode` with `flag`, beside the external host and the node.
fn expected(mode: &str, flag: &str) -> Matrix {
    let l2 = mode == "l2";
    let (private, vepa) = (flag == "private", flag == "vepa");
    let mut m = Matrix::new();
    for (a, b) in [("c1", "c2"), ("c2", "c1")] {
        // Receive: IP traffic for an endpoint's address is demuxed to it
        // (l2 and l3). In l3 the node answers ARP/ND for it from the wire
        // (our responder, module doc of kinds/ipvlan.rs); in l2 the
        // endpoint answers itself. Transmit: l2 unicast to another MAC and
        // l3 routing both reach the external host.
        for p in [Proto::V4, Proto::V6] {
            m.push(a, "ext", p, true);
            m.push("ext", a, p, true);
        }
        // l2: ARP requests are broadcasts, out the parent. l3: the
        // endpoint is NOARP; an ARP request it sends is multicast, which
        // l3 transmit drops.
        m.push(a, "ext", Proto::Arp, l2);
        // l2 receive: multicast from outside is cloned to every endpoint.
        // l3 receive: demuxed by ARP target: the unused address is nobody's.
        m.push("ext", a, Proto::Bcast, l2);
        // l2: a miss goes to the node's stack; the node's replies (its
        // ARP request, then the unicast) reach the endpoint because the
        // switch reflects them back (external multicast is cloned; unicast
        // to the shared MAC is demuxed by IP). VEPA sends everything out
        // and the reflection brings it back to the node the same way.
        // l3/l3s: the node's ARP/ND for the endpoint is delivered to the
        // NOARP endpoint (no answer; our responder answers other hosts
        // only), so the node has no neighbour for it: not reachable either
        // way (a ping needs both).
        for p in [Proto::V4, Proto::V6] {
            m.push(a, "node", p, l2);
            m.push("node", a, p, l2);
        }
        // Between endpoints.
        let unicast = if l2 {
            // Transmit l2 (dst MAC == src MAC): lookup by IP, hit →
            // deliver unless private. VEPA: out the parent, and the
            // reflection is demuxed by IP on receive.
            !private
        } else {
            // Transmit l3: hit → deliver unless private. VEPA skips the
            // lookup: routed by the node out of the parent, whose ARP for
            // the endpoint is never answered (node's own request).
            !private && !vepa
        };
        for p in [Proto::V4, Proto::V6] {
            m.push(a, b, p, unicast);
        }
        // ARP/ND resolution needs the unicast answer (l2); l3 endpoints
        // are NOARP and resolve nothing.
        m.push(a, b, Proto::Arp, l2 && unicast);
        m.push(a, b, Proto::Ndisc, l2 && unicast);
        // l2 transmit: multicast goes to the other endpoints whatever the
        // flag (private is not checked there). l3 drops it.
        m.push(a, b, Proto::Bcast, l2);
    }
    m
}

fn matrix_of(mode: &str, flag: &str) {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach_ipvlan(&lab, 1, mode, flag, &[]).unwrap();
    let c2 = attach_ipvlan(&lab, 2, mode, flag, &[]).unwrap();
    let got = measure(&lab, &[&c1, &c2]);
    eprintln!("ipvlan {mode} {flag}:\n{got}");
    got.assert_eq(&expected(mode, flag));
    detach(&lab, &c1).unwrap();
    detach(&lab, &c2).unwrap();
}

#[test]
fn l2_bridge() {
    matrix_of("l2", "bridge");
}

#[test]
fn l2_private() {
    matrix_of("l2", "private");
}

#[test]
fn l2_vepa() {
    matrix_of("l2", "vepa");
}

#[test]
fn l3_bridge() {
    matrix_of("l3", "bridge");
}

#[test]
fn l3_private() {
    matrix_of("l3", "private");
}

#[test]
fn l3_vepa() {
    matrix_of("l3", "vepa");
}

#[test]
fn l3s_bridge() {
    matrix_of("l3s", "bridge");
}

#[test]
fn l3s_private() {
    matrix_of("l3s", "private");
}

#[test]
fn l3s_vepa() {
    matrix_of("l3s", "vepa");
}

/// The external host reaches an l3 endpoint through the node's answers:
/// its neighbour entry for the endpoint is the parent's MAC.
#[test]
fn l3_endpoints_are_answered_for_on_the_wire() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach_ipvlan(&lab, 1, "l3", "bridge", &[]).unwrap();
    let parent_mac = link_mac(lab.node(), NODE_IF);
    for ip in [&c1.v4, &c1.v6] {
        assert!(ping(lab.ext(), ip), "ext -> {ip}");
        let neigh = lab.ext().ok(&["ip", "neigh", "show", ip.as_str()]).unwrap();
        assert!(
            neigh.contains(&parent_mac),
            "ext's neighbour for {ip} is not the parent's MAC {parent_mac}: {neigh}"
        );
    }
    let stats = lab.attach().json(&["stats"]).unwrap();
    assert!(
        verdict(&stats, "rx", "neigh_reply") >= 2,
        "no answers counted: {stats}"
    );
}

/// The packets [`nft_setup`]'s counters saw: prerouting to and from the
/// endpoint, postrouting to and from it.
fn nft_counters(node: &Netns) -> [u64; 4] {
    let out = node
        .ok(&["nft", "-j", "list", "table", "inet", "atktest"])
        .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut n = [0; 4];
    for item in v["nftables"].as_array().unwrap() {
        let Some(rule) = item.get("rule") else {
            continue;
        };
        let comment = rule["comment"].as_str().unwrap_or_default();
        let packets = rule["expr"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|e| e["counter"]["packets"].as_u64())
            .unwrap_or(0);
        let i = ["pre-in", "pre-out", "post-in", "post-out"]
            .iter()
            .position(|c| *c == comment)
            .unwrap();
        n[i] += packets;
    }
    n
}

/// nftables counters in the node, on prerouting and postrouting, for
/// traffic to and from the endpoint's addresses.
fn nft_setup(node: &Netns, v4: &str, v6: &str) {
    let rules = format!(
        "table inet atktest {{
  chain pre {{ type filter hook prerouting priority 0;
    ip daddr {v4} counter comment \"pre-in\"
    ip6 daddr {v6} counter comment \"pre-in\"
    ip saddr {v4} counter comment \"pre-out\"
    ip6 saddr {v6} counter comment \"pre-out\"
  }}
  chain post {{ type filter hook postrouting priority 0;
    ip daddr {v4} counter comment \"post-in\"
    ip6 daddr {v6} counter comment \"post-in\"
    ip saddr {v4} counter comment \"post-out\"
    ip6 saddr {v6} counter comment \"post-out\"
  }}
}}"
    );
    let path = std::env::temp_dir().join(format!("atktest-{}.nft", std::process::id()));
    std::fs::write(&path, rules).unwrap();
    let r = node.ok(&["nft", "-f", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    r.unwrap();
}

/// l3s traffic passes the node's netfilter (prerouting and postrouting,
/// both directions); l3 traffic does not (its ingress is demuxed on the
/// parent and its egress leaves by `bpf_redirect_neigh`).
#[test]
fn l3s_traffic_is_seen_by_the_nodes_netfilter() {
    require_root();
    let lab = Lab::new().unwrap();
    for (mode, seen) in [("l3s", true), ("l3", false)] {
        let c1 = attach_ipvlan(&lab, 1, mode, "bridge", &[]).unwrap();
        nft_setup(lab.node(), &c1.v4, &c1.v6);
        for (from, to) in [
            (lab.ext(), c1.v4.as_str()),
            (lab.ext(), c1.v6.as_str()),
            (c1.ns.as_ref(), EXT_V4),
            (c1.ns.as_ref(), EXT_V6),
        ] {
            assert!(ping(from, to), "{mode}: ping {to}");
        }
        let n = nft_counters(lab.node());
        eprintln!("{mode}: prerouting in/out, postrouting in/out: {n:?}");
        if seen {
            // Two echo requests in and two replies out each way, at least.
            assert!(n.iter().all(|&c| c >= 4), "{mode}: {n:?}");
        } else {
            assert_eq!(n, [0; 4], "{mode}: netfilter saw l3 traffic");
        }
        lab.node()
            .ok(&["nft", "delete", "table", "inet", "atktest"])
            .unwrap();
        detach(&lab, &c1).unwrap();
    }
}

/// An address belongs to one endpoint of a parent; a second claim is a
/// conflict naming the address and its owner, and changes nothing. Once
/// the owner is gone, the address is free.
#[test]
fn an_address_has_one_owner_per_parent() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach_ipvlan(&lab, 1, "l2", "bridge", &[]).unwrap();
    let c2 = lab.container("c2").unwrap();
    let before = snapshot(&lab, &[&c2]);
    for ip in [format!("{}/24", c1.v4), format!("{}/64", c1.v6)] {
        let out = lab
            .attach()
            .run(&[
                "add",
                "ipvlan",
                "--parent",
                NODE_IF,
                "--netns",
                c2.name(),
                "--ip",
                &ip,
            ])
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{ip}: {err}");
        let addr = ip.split('/').next().unwrap();
        assert!(
            err.contains(addr) && err.contains(c1.ns.name()),
            "the error names neither {addr} nor its owner: {err}"
        );
    }
    let after = snapshot(&lab, &[&c2]);
    assert!(
        before == after,
        "a refused add changed the node:\n{}",
        before.diff(&after)
    );
    // A macvlan endpoint on the same parent cannot take it either.
    let out = lab
        .attach()
        .run(&[
            "add",
            "macvlan",
            "--parent",
            NODE_IF,
            "--netns",
            c2.name(),
            "--ip",
            &format!("{}/24", c1.v4),
        ])
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    detach(&lab, &c1).unwrap();
    let c2 = attach_ipvlan(&lab, 1, "l2", "bridge", &[]).unwrap();
    assert!(ping(&c2.ns, EXT_V4));
}

/// Waits (up to 5 s) until the node's host route of `ep`'s IPv4 address
/// in the ipvlan route table is marked `linkdown` (or, with `down` false,
/// no longer is); whether it came to that.
fn wait_linkdown(lab: &Lab, ep: &Endpoint, down: bool) -> bool {
    let table = attach_common::ipvlan::IPVL_ROUTE_TABLE.to_string();
    attach_tests::poll::until(Duration::from_secs(5), Duration::from_millis(10), || {
        let out = lab
            .node()
            .ok(&["ip", "-j", "route", "show", "table", &table, &ep.v4])
            .unwrap();
        let routes: Value = serde_json::from_str(&out).unwrap();
        let routes = routes.as_array().unwrap();
        assert_eq!(routes.len(), 1, "host routes of {}: {out}", ep.v4);
        let linkdown = routes[0]["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "linkdown"));
        linkdown == down
    })
}

/// Addresses count only while their endpoint is up: with the container's
/// eth0 down, traffic for its address is not pushed into the down device
/// but handled as if nobody owned it (to the node), and it comes back
/// when eth0 is up again.
#[test]
fn a_down_endpoints_addresses_do_not_count() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach_ipvlan(&lab, 1, "l2", "bridge", &[]).unwrap();
    let c2 = attach_ipvlan(&lab, 2, "l2", "bridge", &[]).unwrap();
    assert!(ping(&c2.ns, &c1.v4) && ping(lab.ext(), &c1.v4));
    c1.ns.ok(&["ip", "link", "set", "eth0", "down"]).unwrap();
    // The programs see the endpoint down once its host route is (the
    // kernel marks it when the host side's carrier loss is processed).
    assert!(
        wait_linkdown(&lab, &c1, true),
        "c1's host route is not marked down"
    );
    let before = lab.attach().json(&["stats"]).unwrap();
    // From the wire (the external host knows c1 at the parent's MAC) and
    // from the other endpoint (its neighbour entry is still there).
    assert!(!ping(lab.ext(), &c1.v4));
    assert!(!ping(&c2.ns, &c1.v4));
    let after = lab.attach().json(&["stats"]).unwrap();
    let delta = |s: &Value| counters(s, c1.ns.name())["rx_packets"].as_u64().unwrap();
    assert_eq!(
        delta(&after),
        delta(&before),
        "frames were pushed into the down endpoint"
    );
    assert!(
        verdict(&after, "rx", "to_host") > verdict(&before, "rx", "to_host"),
        "the wire's frames for the down endpoint did not go to the node"
    );
    assert!(
        verdict(&after, "tx", "to_host") > verdict(&before, "tx", "to_host"),
        "c2's frames for the down endpoint did not go to the node"
    );
    c1.ns.ok(&["ip", "link", "set", "eth0", "up"]).unwrap();
    assert!(
        wait_linkdown(&lab, &c1, false),
        "c1's host route is still marked down"
    );
    assert!(ping(&c2.ns, &c1.v4), "c1 back up, reached from c2");
    assert!(ping(lab.ext(), &c1.v4), "c1 back up, reached from ext");
}

/// The kernel refuses ipvlan and macvlan on one lower device; we need not:
/// both work on one parent, reach the wire and each other (through the
/// reflecting switch), and detaching one leaves the other working.
#[test]
fn ipvlan_and_macvlan_share_a_parent() {
    require_root();
    let lab = Lab::new().unwrap();
    for flavor in [
        attach_tests::reach::Flavor::EbpfTc,
        attach_tests::reach::Flavor::EbpfXdp,
    ] {
        let m = attach(&lab, 1, "bridge", flavor, &[]).unwrap();
        let i = attach_ipvlan(&lab, 2, "l2", "bridge", &[]).unwrap();
        for ep in [&m, &i] {
            for dst in [EXT_V4, EXT_V6] {
                assert!(
                    ping(&ep.ns, dst),
                    "{} ({}) -> {dst}",
                    ep.label,
                    flavor.name()
                );
            }
        }
        for (a, b) in [(&m, &i), (&i, &m)] {
            assert!(ping(&a.ns, &b.v4), "{} -> {} v4", a.label, b.label);
            assert!(ping(&a.ns, &b.v6), "{} -> {} v6", a.label, b.label);
        }
        detach(&lab, &m).unwrap();
        assert!(ping(&i.ns, EXT_V4), "ipvlan after the macvlan left");
        let m = attach(&lab, 1, "bridge", flavor, &[]).unwrap();
        detach(&lab, &i).unwrap();
        assert!(ping(&m.ns, EXT_V4), "macvlan after the ipvlan left");
        // With the l2 port gone, the parent can become an l3 port.
        let i3 = attach_ipvlan(&lab, 3, "l3", "bridge", &[]).unwrap();
        assert!(ping(lab.ext(), &i3.v4) && ping(&m.ns, EXT_V6));
        detach(&lab, &i3).unwrap();
        detach(&lab, &m).unwrap();
    }
}

/// Without a reflecting switch, macvlan bridge ports and an l2 ipvlan port
/// that is neither private nor VEPA, on one parent, reach each other as
/// hosts on one switch: unicast, ARP, ND and broadcast, both ways, both
/// datapaths. Private or VEPA on either side leaves it to the wire, which
/// here does not reflect: nothing crosses.
#[test]
fn ipvlan_and_macvlan_share_a_parent_without_the_wire() {
    require_root();
    let lab = Lab::with_options(LabOptions { hairpin: false }).unwrap();
    for flavor in [Flavor::EbpfTc, Flavor::EbpfXdp] {
        for (mmode, iflag, local) in [
            ("bridge", "bridge", true),
            ("private", "bridge", false),
            ("vepa", "bridge", false),
            ("bridge", "private", false),
            ("bridge", "vepa", false),
        ] {
            let case = format!("macvlan {mmode} + ipvlan l2 {iflag} ({})", flavor.name());
            let m = attach(&lab, 1, mmode, flavor, &[]).unwrap();
            let i = attach_ipvlan(&lab, 2, "l2", iflag, &[]).unwrap();
            for (a, b) in [(&m, &i), (&i, &m)] {
                let what = |p: &str| format!("{case}: {} -> {} {p}", a.label, b.label);
                assert_eq!(ping(&a.ns, &b.v4), local, "{}", what("v4"));
                if !local {
                    // A failed ping means its ARP broadcast or the answer
                    // did not cross: enough for the negative cases.
                    continue;
                }
                assert!(ping(&a.ns, &b.v6), "{}", what("v6"));
                assert!(arping(&a.ns, "eth0", &b.v4), "{}", what("arp"));
                assert!(ndisc(&a.ns, "eth0", &b.v6), "{}", what("ndisc"));
                assert!(
                    broadcast_reaches(&a.ns, "eth0", &b.ns, "eth0"),
                    "{}",
                    what("broadcast")
                );
            }
            detach(&lab, &i).unwrap();
            detach(&lab, &m).unwrap();
        }
    }
}

/// With a reflecting switch, a broadcast one kind delivered locally to the
/// other comes back from the wire: it is not delivered a second time.
#[test]
fn ipvlan_and_macvlan_share_a_parent_without_duplicates() {
    require_root();
    let lab = Lab::new().unwrap();
    const SENT: u64 = 3;
    let rx_broadcast = |ep: &Endpoint| -> u64 {
        let stats = lab.attach().json(&["stats"]).unwrap();
        counters(&stats, ep.ns.name())["rx_broadcast"]
            .as_u64()
            .unwrap()
    };
    for flavor in [Flavor::EbpfTc, Flavor::EbpfXdp] {
        let m = attach(&lab, 1, "bridge", flavor, &[]).unwrap();
        let i = attach_ipvlan(&lab, 2, "l2", "bridge", &[]).unwrap();
        for (a, b) in [(&m, &i), (&i, &m)] {
            let before = rx_broadcast(b);
            for _ in 0..SENT {
                // Nobody has the address: each request is one broadcast.
                arping(&a.ns, "eth0", UNUSED_V4);
            }
            let got = rx_broadcast(b) - before;
            // At least every one once; fewer than twice each (the node
            // may broadcast too meanwhile).
            assert!(
                (SENT..2 * SENT).contains(&got),
                "{} -> {} ({}): {SENT} broadcasts arrived {got} times",
                a.label,
                b.label,
                flavor.name()
            );
        }
        detach(&lab, &i).unwrap();
        detach(&lab, &m).unwrap();
    }
}

/// Bad input: a clear error naming the value, the documented exit code,
/// and nothing left behind.
#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    require_root();
    let lab = Lab::new().unwrap();
    let target = lab.container("t").unwrap();
    let t = target.name().to_owned();
    let check = |lab: &Lab, args: &[&str], code: i32, names: &str| {
        let before = snapshot(lab, &[&target]);
        let out = lab.attach().run(args).unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("attach {}: {:?}: {err}", args.join(" "), out.status.code());
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            err.contains(names),
            "{args:?}: does not name {names:?}: {err}"
        );
        let json = lab.attach().run(&[&["-o", "json"], args].concat()).unwrap();
        let v: Value = serde_json::from_slice(&json.stdout).unwrap_or(Value::Null);
        if code != 2 || !names.starts_with("--") {
            assert!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(names))
                    || v.is_null(),
                "{args:?} json: {v}"
            );
        }
        let after = snapshot(lab, &[&target]);
        assert!(
            before == after,
            "{args:?} changed the node:\n{}",
            before.diff(&after)
        );
    };
    let base = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = ["add", "ipvlan", "--parent", NODE_IF, "--netns"]
            .map(String::from)
            .to_vec();
        v.push(t.clone());
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&'static str], code: i32, names: &str| {
        let args = base(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        check(&lab, &args, code, names);
    };
    // On an empty node.
    run(&[], 2, "--ip");
    run(
        &["--ip", "10.77.0.60/24", "--backend", "native"],
        2,
        "CONFIG_IPVLAN",
    );
    run(
        &[
            "--ip",
            "10.77.0.60/24",
            "--flag",
            "private",
            "--flag",
            "vepa",
        ],
        2,
        "private",
    );
    run(&["--ip", "10.77.0.254/24"], 4, "10.77.0.254");
    run(&["--ip", "10.77.0.60/24", "--mtu", "9000"], 2, "9000");
    run(
        &["--ip", "10.77.0.60/24", "--gateway", "fd77::1"],
        2,
        "fd77::1",
    );
    let args = [
        "add",
        "ipvlan",
        "--parent",
        "nope0",
        "--netns",
        &t,
        "--ip",
        "10.77.0.60/24",
    ];
    check(&lab, &args, 3, "nope0");
    let args = [
        "add",
        "ipvlan",
        "--parent",
        NODE_IF,
        "--netns",
        "no-such-ns",
        "--ip",
        "10.77.0.60/24",
    ];
    check(&lab, &args, 3, "no-such-ns");
    // Beside an l2 bridge port: another mode or flag is a conflict.
    let c1 = attach_ipvlan(&lab, 1, "l2", "bridge", &[]).unwrap();
    run(
        &["--ip", "10.77.0.60/24", "--mode", "l3"],
        4,
        "mode and flag",
    );
    run(
        &["--ip", "10.77.0.60/24", "--flag", "private"],
        4,
        "mode and flag",
    );
    run(&["--ip", leak(format!("{}/24", c1.v4))], 4, &c1.v4.clone());
    detach(&lab, &c1).unwrap();
    // Beside a passthru macvlan, the parent is taken.
    let p = attach(
        &lab,
        5,
        "passthru",
        attach_tests::reach::Flavor::EbpfTc,
        &[],
    )
    .unwrap();
    run(&["--ip", "10.77.0.60/24"], 4, "passthru");
    detach(&lab, &p).unwrap();
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}
