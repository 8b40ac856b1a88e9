//! router in namespaces: the lab's node routes for its endpoints
//! (10.88.0.0/24, fd88::/64; the external host routes them via the node),
//! on both datapaths. Reachability container ↔ external host, container ↔
//! container, container ↔ node, IPv4 and IPv6; the TTL goes down by one per
//! routed hop; the eBPF datapath never uses the node's forwarding path (its
//! FORWARD hook counts nothing) while the kernel datapath does; counters
//! move; bad input is refused and leaves nothing.

use attach_tests::{
    lab::{EXT_V4, EXT_V6, Lab, NODE_IF, NODE_V4, NODE_V6, Netns, ping, require_root},
    report::{counters, link_mac, verdict},
    routed::{
        Routed as Ep, attach_router as try_attach_router, ext_routes as try_ext_routes,
        forward_counter as try_forward_counter, forward_counter_setup as try_forward_setup,
        reply_ttl,
    },
    snapshot::snapshot,
};

fn attach_router(lab: &Lab, i: u8, extra: &[&str]) -> Ep {
    try_attach_router(lab, i, extra).unwrap()
}

fn ext_routes(lab: &Lab) {
    try_ext_routes(lab).unwrap()
}

fn forward_counter_setup(node: &Netns) {
    try_forward_setup(node).unwrap()
}

fn forward_counter(node: &Netns) -> u64 {
    try_forward_counter(node).unwrap()
}
use serde_json::Value;

/// Everything a router endpoint must reach, with the TTL of each reply:
/// routed once (63) except from the node itself (64).
fn reachability(lab: &Lab, c1: &Ep, c2: &Ep, datapath: &str) {
    let mut failures = Vec::new();
    let mut check = |what: String, ttl: Option<u8>, want: u8| {
        eprintln!("{datapath}: {what}: reply TTL {ttl:?}");
        if ttl != Some(want) {
            failures.push(format!("{what}: reply TTL {ttl:?}, expected {want}"));
        }
    };
    for c in [c1, c2] {
        let name = c.ns.name();
        for dst in [EXT_V4, EXT_V6] {
            check(format!("{name} -> ext {dst}"), reply_ttl(&c.ns, dst), 63);
        }
        for dst in [&c.v4, &c.v6] {
            check(format!("ext -> {dst}"), reply_ttl(lab.ext(), dst), 63);
            check(format!("node -> {dst}"), reply_ttl(lab.node(), dst), 64);
        }
        for dst in [NODE_V4, NODE_V6] {
            check(format!("{name} -> node {dst}"), reply_ttl(&c.ns, dst), 64);
        }
    }
    for (a, b) in [(c1, c2), (c2, c1)] {
        for dst in [&b.v4, &b.v6] {
            check(
                format!("{} -> {dst}", a.ns.name()),
                reply_ttl(&a.ns, dst),
                63,
            );
        }
    }
    assert!(failures.is_empty(), "{datapath}:\n{}", failures.join("\n"));
}

/// eBPF: all of it reachable on both families, TTL down by one per routed
/// hop, and the node's FORWARD hook never sees a packet; ARP/ND for the
/// gateway answered by the program; counters move.
#[test]
fn ebpf_routes_without_the_nodes_forwarding() {
    require_root();
    let lab = Lab::new().unwrap();
    ext_routes(&lab);
    forward_counter_setup(lab.node());
    let up = ["--uplink", NODE_IF];
    let c1 = attach_router(&lab, 1, &up);
    let c2 = attach_router(&lab, 2, &up);
    reachability(&lab, &c1, &c2, "ebpf");
    assert_eq!(
        forward_counter(lab.node()),
        0,
        "the node's FORWARD hook saw eBPF-routed packets"
    );
    let stats = lab.attach().json(&["stats"]).unwrap();
    for c in [&c1, &c2] {
        let k = counters(&stats, c.ns.name());
        assert!(
            k["tx_packets"].as_u64().unwrap() > 10 && k["rx_packets"].as_u64().unwrap() > 5,
            "{}: {k}",
            c.ns.name()
        );
    }
    for (dir, v) in [
        ("tx", "neigh_reply"),
        ("tx", "routed"),
        ("tx", "to_endpoint"),
        ("rx", "to_endpoint"),
    ] {
        assert!(verdict(&stats, dir, v) > 0, "no {dir}/{v}: {stats}");
    }
    // The gateway's neighbour entry in the container: the host side's MAC.
    let rec = lab.attach().json(&["list"]).unwrap();
    let host = rec[0]["host_ifname"].as_str().unwrap().to_owned();
    let host_mac = link_mac(lab.node(), &host);
    let neigh = c1.ns.ok(&["ip", "neigh", "show", "169.254.1.1"]).unwrap();
    assert!(neigh.contains(&host_mac), "{neigh} vs {host_mac}");
    // An expiring TTL is the stack's: the node answers "time exceeded".
    let out = c1
        .ns
        .exec(&["ping", "-c", "1", "-W", "1", "-t", "1", EXT_V4])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.to_lowercase().contains("time to live exceeded"),
        "ping -t 1: {text}"
    );
    for c in [&c1, &c2] {
        lab.attach().ok(&["del", "--netns", c.ns.name()]).unwrap();
    }
    lab.node()
        .ok(&["nft", "delete", "table", "inet", "atkfwd"])
        .unwrap();
}

/// The kernel datapath (the slow path): the same reachability, through
/// the node's forwarding (its FORWARD hook counts), with the gateway
/// addresses on the host side instead of programs.
#[test]
fn kernel_routes_through_the_nodes_forwarding() {
    require_root();
    let lab = Lab::new().unwrap();
    ext_routes(&lab);
    forward_counter_setup(lab.node());
    let k = ["--datapath", "kernel"];
    let c1 = attach_router(&lab, 1, &k);
    let c2 = attach_router(&lab, 2, &k);
    reachability(&lab, &c1, &c2, "kernel");
    assert!(
        forward_counter(lab.node()) >= 16,
        "the kernel datapath did not forward through the node"
    );
    let list = lab.attach().json(&["list"]).unwrap();
    for r in list.as_array().unwrap() {
        assert_eq!(r["backend"], "native");
        assert_eq!(r["datapath"], "kernel");
        assert_eq!(r["endpoint_id"], Value::Null);
    }
    for c in [&c1, &c2] {
        lab.attach().ok(&["del", "--netns", c.ns.name()]).unwrap();
    }
    lab.node()
        .ok(&["nft", "delete", "table", "inet", "atkfwd"])
        .unwrap();
}

/// The node's forwarding is turned on when off, said on stderr and in the
/// record, and left on after `del`; the record has the documented fields;
/// `del` is idempotent and leaves no route, neighbour, link or pin.
#[test]
fn forwarding_list_and_del() {
    require_root();
    let lab = Lab::new().unwrap();
    let sysctl = |k: &str| {
        lab.node()
            .ok(&["sysctl", "-n", k])
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(sysctl("net.ipv4.ip_forward"), "0", "a fresh node forwards?");
    let c1 = lab.container("c1").unwrap();
    let c2 = lab.container("c2").unwrap();
    let add = |c: &Netns, ips: &[&str]| {
        let mut args = vec!["-o", "json", "add", "router", "--netns", c.name()];
        for ip in ips {
            args.extend(["--ip", ip]);
        }
        args.extend(["--uplink", NODE_IF]);
        let out = lab.attach().run(&args).unwrap();
        assert!(out.status.success(), "{out:?}");
        (
            serde_json::from_slice::<Value>(&out.stdout).unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (rec, err) = add(&c1, &["10.88.0.11/32", "fd88::11/128"]);
    assert!(
        err.contains("net.ipv4.ip_forward") && err.contains("net.ipv6.conf.all.forwarding"),
        "not reported: {err}"
    );
    assert_eq!(rec["kind"], "router");
    assert_eq!(rec["backend"], "ebpf");
    assert_eq!(rec["datapath"], "ebpf");
    assert_eq!(rec["parent"], NODE_IF);
    assert_eq!(rec["gateway"], "169.254.1.1");
    assert_eq!(
        rec["forwarding_enabled"],
        serde_json::json!(["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"])
    );
    assert_eq!(sysctl("net.ipv4.ip_forward"), "1");
    assert_eq!(sysctl("net.ipv6.conf.all.forwarding"), "1");
    lab.attach().ok(&["del", "--netns", c1.name()]).unwrap();
    assert_eq!(
        sysctl("net.ipv4.ip_forward"),
        "1",
        "forwarding turned off again"
    );

    // Now forwarding is on (and the node a router): nothing reported, and
    // `del` puts everything back.
    let before = snapshot(&lab, &[&c1, &c2]);
    let (rec, err) = add(&c1, &["10.88.0.11/32", "fd88::11/128"]);
    assert!(!err.contains("forward"), "{err}");
    assert!(rec.get("forwarding_enabled").is_none(), "{rec}");
    add(&c2, &["10.88.0.12/24"]);
    let routes = lab.node().ok(&["ip", "route"]).unwrap();
    assert!(routes.contains("10.88.0.11 dev atk"), "{routes}");
    let neigh = lab.node().ok(&["ip", "neigh"]).unwrap();
    assert!(
        neigh.contains("10.88.0.12") && neigh.contains("PERMANENT"),
        "{neigh}"
    );
    // The container has no on-link route for its subnet: all via the gateway.
    let croutes = c2.ok(&["ip", "route"]).unwrap();
    assert!(!croutes.contains("10.88.0.0/24"), "{croutes}");
    lab.attach().ok(&["check", "--netns", c1.name()]).unwrap();
    for c in [&c1, &c2] {
        lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
        let again = lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
        assert!(again.contains("nothing attached"), "{again}");
    }
    let after = snapshot(&lab, &[&c1, &c2]);
    assert!(before == after, "del left:\n{}", before.diff(&after));
}

/// Drift: the node's route deleted, the uplink program unpinned; `check`
/// names it, `reconcile` repairs without recreating, `upgrade` covers the
/// router's links.
#[test]
fn check_reconcile_upgrade() {
    require_root();
    let lab = Lab::new().unwrap();
    ext_routes(&lab);
    let c1 = attach_router(&lab, 1, &["--uplink", NODE_IF]);
    let rec = &lab.attach().json(&["list"]).unwrap()[0];
    let host = rec["host_ifname"].as_str().unwrap().to_owned();
    let ifindex = rec["host_ifindex"].as_u64().unwrap();
    lab.node()
        .ok(&["ip", "route", "del", &c1.v4, "dev", &host])
        .unwrap();
    let out = lab
        .attach()
        .run(&["check", "--netns", c1.ns.name()])
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&c1.v4));
    let pins = lab.node_pin_dir().join("links");
    let uplink_pin = std::fs::read_dir(&pins)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with("-rt"))
        .expect("the uplink's router link is pinned");
    std::fs::remove_file(pins.join(&uplink_pin)).unwrap();
    let repairs = lab.attach().json(&["reconcile"]).unwrap();
    assert_eq!(repairs[0]["action"], "repaired", "{repairs}");
    lab.attach()
        .ok(&["check", "--netns", c1.ns.name()])
        .unwrap();
    assert_eq!(
        lab.attach().json(&["list"]).unwrap()[0]["host_ifindex"],
        ifindex,
        "recreated, not repaired"
    );
    assert!(ping(lab.ext(), &c1.v4) && ping(&c1.ns, EXT_V6));
    let links = lab.attach().json(&["upgrade", "--force"]).unwrap();
    let names: Vec<&str> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["link"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&uplink_pin.as_str()) && names.iter().any(|n| n.starts_with("port-")),
        "{names:?}"
    );
}

/// Bad input: a clear error naming the value, the documented exit code,
/// and nothing changed (links, routes, pins, maps, records, forwarding).
#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    require_root();
    let lab = Lab::new().unwrap();
    let target = lab.container("t").unwrap();
    let t = target.name().to_owned();
    let check = |args: &[&str], code: i32, names: &str| {
        let before = snapshot(&lab, &[&target]);
        let out = lab.attach().run(args).unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("attach {}: {:?}: {err}", args.join(" "), out.status.code());
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            err.contains(names),
            "{args:?}: does not name {names:?}: {err}"
        );
        let after = snapshot(&lab, &[&target]);
        assert!(
            before == after,
            "{args:?} changed the node:\n{}",
            before.diff(&after)
        );
    };
    let run = |extra: &[&str], code: i32, names: &str| {
        let mut args = vec!["add", "router", "--netns", &t];
        args.extend(extra);
        check(&args, code, names);
    };
    let up = ["--uplink", NODE_IF];
    run(&up, 2, "--ip");
    run(
        &["--ip", "169.254.1.1/32", "--uplink", NODE_IF],
        2,
        "169.254.1.1",
    );
    run(&["--ip", "fe80::5/64", "--uplink", NODE_IF], 2, "fe80::5");
    run(
        &["--ip", "224.0.0.5/32", "--uplink", NODE_IF],
        2,
        "224.0.0.5",
    );
    run(&["--ip", "10.88.0.60/32", "--uplink", "nope0"], 3, "nope0");
    // The lab's node has no default route to take the uplink from.
    run(&["--ip", "10.88.0.60/32"], 2, "--uplink");
    run(
        &[
            "--ip",
            "10.88.0.60/32",
            "--datapath",
            "kernel",
            "--uplink",
            NODE_IF,
        ],
        2,
        "--uplink",
    );
    run(
        &["--ip", "10.88.0.60/32", "--datapath", "bogus"],
        2,
        "bogus",
    );
    run(
        &["--ip", "10.77.0.254/32", "--uplink", NODE_IF],
        4,
        "10.77.0.254",
    );
    run(
        &["--ip", "fd88::60/64", "--mtu", "1000", "--uplink", NODE_IF],
        2,
        "1000",
    );
    check(
        &[
            "add",
            "router",
            "--netns",
            "no-such-ns",
            "--ip",
            "10.88.0.60/32",
            "--uplink",
            NODE_IF,
        ],
        3,
        "no-such-ns",
    );
    // An address has one owner in the node.
    let c1 = attach_router(&lab, 1, &up);
    run(
        &["--ip", "10.88.0.11/32", "--uplink", NODE_IF],
        4,
        "10.88.0.11",
    );
    run(
        &[
            "--ip",
            "10.88.0.60/32",
            "--ifname",
            "lo",
            "--uplink",
            NODE_IF,
        ],
        4,
        "lo",
    );
    lab.attach().ok(&["del", "--netns", c1.ns.name()]).unwrap();
}
