//! attach-cni first in a chain with Debian's reference plugins (`tuning`,
//! `bandwidth`, `portmap`, `firewall`, `sbr`), each run from /usr/lib/cni as
//! a runtime runs a conflist: prevResult passed along, CHECK with the final
//! result, DEL in reverse order. Each plugin's ADD does its work on our
//! attachment and its DEL takes it away again; everything stays in the
//! lab's namespaces (iptables rules in the node's, routing rules in the
//! container's).

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Stdio},
    time::Duration,
};

use attach_tests::{
    cni::{Call, Chain, Leases},
    lab::{Attach, EXT_V4, Lab, NODE_V4, Netns, ping, require_root},
};
use serde_json::{Value, json};

/// attach-cni (macvlan on the eBPF datapath, host-local IPAM) followed by
/// `next` (a plugin, or an array of them).
fn chain<'a>(
    lab: &'a Lab,
    c: &'a Netns,
    dir: &Leases,
    net: &str,
    next: Value,
    runtime_config: Value,
) -> Chain<'a> {
    chain_of(lab, c, dir, net, json!({}), next, runtime_config)
}

/// [`chain`] with attach-cni's keys in `kind` over the macvlan ones (a
/// null leaves the key out).
fn chain_of<'a>(
    lab: &'a Lab,
    c: &'a Netns,
    dir: &Leases,
    net: &str,
    kind: Value,
    next: Value,
    runtime_config: Value,
) -> Chain<'a> {
    let mut attach = json!({
        "type": "attach-cni",
        "kind": "macvlan", "mode": "bridge", "parent": "eth1",
        "backend": "ebpf", "datapath": "tc",
        "ipam": {
            "type": "host-local",
            "dataDir": dir.0,
            "ranges": [
                [{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.150",
                  "rangeEnd": "10.77.0.160", "gateway": "10.77.0.1"}],
                [{"subnet": "fd77::/64", "rangeStart": "fd77::150", "rangeEnd": "fd77::160"}]
            ],
            "routes": [{"dst": "0.0.0.0/0"}]
        }
    });
    let a = attach.as_object_mut().unwrap();
    for (k, v) in kind.as_object().unwrap() {
        match v {
            Value::Null => a.remove(k),
            v => a.insert(k.clone(), v.clone()),
        };
    }
    // `next`: one plugin, or several in order.
    let mut plugins = vec![attach];
    match next {
        Value::Array(more) => plugins.extend(more),
        one => plugins.push(one),
    }
    Chain {
        call: Call {
            node: lab.node(),
            command: "ADD",
            container_id: "chained",
            netns: Some(c.path()),
            ifname: "eth0",
            env_extra: Vec::new(),
        },
        list: json!({"cniVersion": "1.0.0", "name": net, "plugins": plugins}),
        runtime_config,
    }
}

/// The container's IPv4 address (without prefix) in a result.
fn ipv4(result: &Value) -> String {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|ip| ip["address"].as_str())
        .find(|a| !a.contains(':'))
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no IPv4 address in {result}"))
        .to_owned()
}

/// The host side of the veth, as the result lists it: right after the
/// container's, without a `sandbox` (plugins after ours may list more).
fn host_side(result: &Value) -> String {
    let host = &result["interfaces"][1];
    assert!(
        host.get("sandbox").is_none() && host["mac"].is_string(),
        "no host-side interface in {result}"
    );
    host["name"].as_str().unwrap().to_owned()
}

/// After the whole chain's DEL: no record, no interface, no pins.
fn nothing_left(lab: &Lab, c: &Netns, host: &str) {
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
    assert!(c.ok(&["ip", "link", "show", "eth0"]).is_err(), "eth0 left");
    assert!(
        lab.node().ok(&["ip", "link", "show", host]).is_err(),
        "{host} left"
    );
    assert!(!lab.node_pin_dir().exists(), "pins left");
}

/// The result lists the host side of the veth the way the spec marks an
/// interface on the host: a name and MAC, no sandbox; the container's stays
/// first, the one every IP points at. For every kind with a veth, with
/// `bandwidth` after it: its shapers go on that host side (the port's hook
/// leaves the veth's ingress qdisc slot free), and everything goes on DEL.
#[test]
fn the_result_lists_the_host_side_of_every_veth_kind() {
    require_root();
    let lab = Lab::new().unwrap();
    let dir = Leases::new("chain", lab.tag());
    let router_ipam = json!({
        "type": "host-local", "dataDir": dir.0,
        "ranges": [[{"subnet": "10.78.0.0/24", "rangeStart": "10.78.0.150", "rangeEnd": "10.78.0.160"}]]
    });
    let kinds = [
        json!({}),
        json!({"datapath": "xdp"}),
        json!({"kind": "ipvlan", "mode": "l2", "datapath": null}),
        json!({"kind": "bridge", "mode": null, "parent": null, "datapath": null,
               "bridge": "sw0", "uplink": "eth1"}),
        json!({"kind": "router", "mode": null, "parent": null, "backend": null,
               "datapath": "ebpf", "uplink": "eth1", "ipam": router_ipam}),
    ];
    let bw = json!({"type": "bandwidth", "capabilities": {"bandwidth": true}});
    let limits = json!({"bandwidth": {
        "ingressRate": 20_000_000, "ingressBurst": 2_000_000,
        "egressRate": 20_000_000, "egressBurst": 2_000_000,
    }});
    for (i, kind) in kinds.iter().enumerate() {
        let c = lab.container(&format!("k{i}")).unwrap();
        let net = format!("ck{i}");
        let ch = chain_of(
            &lab,
            &c,
            &dir,
            &net,
            kind.clone(),
            bw.clone(),
            limits.clone(),
        );
        let res = ch.add().unwrap_or_else(|e| panic!("{kind}: {e:#}"));
        let ifaces = res["interfaces"].as_array().unwrap();
        assert_eq!(ifaces[0]["name"], "eth0", "{kind}: {res}");
        assert_eq!(ifaces[0]["sandbox"], c.path().display().to_string());
        let list = lab.attach().json(&["list"]).unwrap();
        let host = host_side(&res);
        assert_eq!(list[0]["host_ifname"], host.as_str(), "{kind}");
        let link = lab.node().ok(&["ip", "-j", "link", "show", &host]).unwrap();
        let link: Value = serde_json::from_str(&link).unwrap();
        assert_eq!(ifaces[1]["mac"], link[0]["address"], "{kind}: {res}");
        assert!(
            res["ips"]
                .as_array()
                .unwrap()
                .iter()
                .all(|ip| ip["interface"] == 0),
            "{kind}: {res}"
        );
        let qdiscs = lab
            .node()
            .ok(&["tc", "qdisc", "show", "dev", &host])
            .unwrap();
        assert!(qdiscs.contains("tbf"), "{kind}: no tbf on {host}: {qdiscs}");
        ch.check(&res).unwrap_or_else(|e| panic!("{kind}: {e:#}"));
        ch.del(Some(&res), |_| {}).unwrap();
        nothing_left(&lab, &c, &host);
    }
}

/// sbr moves the container's routes into a table of their own, chosen by
/// source address; the container still reaches the wire; DEL takes the
/// rule away.
#[test]
fn sbr_after_attach() {
    require_root();
    let lab = Lab::new().unwrap();
    let dir = Leases::new("chain", lab.tag());
    let c1 = lab.container("c1").unwrap();
    let ch = chain(&lab, &c1, &dir, "ch1", json!({"type": "sbr"}), json!({}));
    let res = ch.add().unwrap();
    let ip = ipv4(&res);
    let rules = c1.ok(&["ip", "-4", "rule", "show"]).unwrap();
    assert!(
        rules.contains(&format!("from {ip} lookup 100")),
        "no source rule: {rules}"
    );
    let table = c1
        .ok(&["ip", "-4", "route", "show", "table", "100"])
        .unwrap();
    assert!(table.contains("default via 10.77.0.1"), "{table}");
    // What is sent from the container's address takes the source table.
    let from_ip = || {
        c1.sh(&format!("ping -c 1 -W 1 -I {ip} {EXT_V4}"))
            .is_ok_and(|o| o.status.success())
    };
    assert!(
        (0..5).any(|_| from_ip()),
        "no IPv4 from {ip} through the source table"
    );
    ch.check(&res).unwrap();
    let host = host_side(&res);
    ch.del(Some(&res), |ty| {
        if ty == "sbr" {
            let rules = c1.ok(&["ip", "-4", "rule", "show"]).unwrap();
            assert!(!rules.contains("lookup 100"), "sbr's rule left: {rules}");
        }
    })
    .unwrap();
    nothing_left(&lab, &c1, &host);
}

/// tuning sets a sysctl of the container's interface; CHECK holds it.
#[test]
fn tuning_after_attach() {
    require_root();
    let lab = Lab::new().unwrap();
    let dir = Leases::new("chain", lab.tag());
    let c1 = lab.container("c1").unwrap();
    let key = "net.ipv4.conf.eth0.accept_local";
    let tuning = json!({
        "type": "tuning",
        "dataDir": dir.0.join("tuning"),
        "sysctl": {key: "1"},
    });
    let ch = chain(&lab, &c1, &dir, "ch2", tuning, json!({}));
    let res = ch.add().unwrap();
    assert_eq!(c1.ok(&["sysctl", "-n", key]).unwrap().trim(), "1");
    assert!(ping(&c1, EXT_V4), "no IPv4 after tuning");
    ch.check(&res).unwrap();
    let host = host_side(&res);
    ch.del(Some(&res), |_| {}).unwrap();
    nothing_left(&lab, &c1, &host);
}

/// bandwidth finds the host side of the veth in the result and puts its
/// shapers there (a tbf on it, an ifb for the container's egress); its DEL
/// removes the ifb.
#[test]
fn bandwidth_after_attach() {
    require_root();
    let lab = Lab::new().unwrap();
    let dir = Leases::new("chain", lab.tag());
    let c1 = lab.container("c1").unwrap();
    let bw = json!({"type": "bandwidth", "capabilities": {"bandwidth": true}});
    let limits = json!({"bandwidth": {
        "ingressRate": 20_000_000, "ingressBurst": 2_000_000,
        "egressRate": 20_000_000, "egressBurst": 2_000_000,
    }});
    let ch = chain(&lab, &c1, &dir, "ch3", bw, limits);
    let res = ch.add().unwrap();
    let host = host_side(&res);
    let qdiscs = lab
        .node()
        .ok(&["tc", "qdisc", "show", "dev", &host])
        .unwrap();
    assert!(qdiscs.contains("tbf"), "no tbf on {host}: {qdiscs}");
    let ifbs = || {
        lab.node()
            .ok(&["ip", "-o", "link", "show", "type", "ifb"])
            .unwrap()
    };
    assert!(!ifbs().trim().is_empty(), "no ifb for the egress limit");
    assert!(ping(&c1, EXT_V4), "no IPv4 with bandwidth's qdiscs");
    ch.check(&res).unwrap();

    // The port's hook removed behind the engine's back: CHECK says so, and
    // reconcile puts it back beside bandwidth's ingress qdisc.
    attach_tests::kinds::detach_port_hook(lab.node().path(), &host);
    let check = ch.conf_of(0, Some(&res));
    let r = Call {
        command: "CHECK",
        env_extra: Vec::new(),
        ..ch.call
    }
    .run(&check.to_string())
    .unwrap();
    assert_eq!(r.code(), 102, "{}", r.stdout);
    lab.attach().ok(&["reconcile"]).unwrap();
    ch.check(&res).unwrap();
    let qdiscs = lab
        .node()
        .ok(&["tc", "qdisc", "show", "dev", &host])
        .unwrap();
    assert!(
        qdiscs.contains("tbf") && qdiscs.contains("ingress"),
        "bandwidth's qdiscs after reconcile: {qdiscs}"
    );
    assert!(ping(&c1, EXT_V4), "no IPv4 after reconcile");
    ch.del(Some(&res), |ty| {
        if ty == "bandwidth" {
            assert!(ifbs().trim().is_empty(), "ifb left: {}", ifbs());
        }
    })
    .unwrap();
    nothing_left(&lab, &c1, &host);
}

/// portmap's DNAT in the node: a connection to the node's port reaches the
/// container's server; DEL removes the container's chain and rule.
#[test]
fn portmap_after_attach() {
    require_root();
    let lab = Lab::new().unwrap();
    let dir = Leases::new("chain", lab.tag());
    let c1 = lab.container("c1").unwrap();
    let pm = json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true});
    let maps = json!({"portMappings": [
        {"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}
    ]});
    let ch = chain(&lab, &c1, &dir, "ch4", pm, maps);
    let res = ch.add().unwrap();
    let ip = ipv4(&res);
    let nat = || lab.node().ok(&["iptables", "-t", "nat", "-S"]).unwrap();
    let rules = nat();
    assert!(
        rules.contains(&format!("--to-destination {ip}:8080")),
        "no DNAT to {ip}:8080: {rules}"
    );
    assert!(rules.contains("CNI-HOSTPORT-DNAT"), "{rules}");

    // A server in the container; a client in the node, to the node's port.
    let server = c1.run(|| Ok(TcpListener::bind("0.0.0.0:8080")?)).unwrap();
    let served = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = server.accept()?;
        s.write_all(b"from the container")
    });
    let got = lab
        .node()
        .run(|| {
            let addr = format!("{NODE_V4}:18080").parse()?;
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut got = String::new();
            s.read_to_string(&mut got)?;
            Ok(got)
        })
        .unwrap();
    assert_eq!(got, "from the container");
    served.join().unwrap().unwrap();

    // portmap 1.1.1's CHECK compares its IPv4 rules with ip6tables' chain
    // too (and fails whatever came before it): every other plugin's CHECK.
    ch.check_except(&res, &["portmap"]).unwrap();
    let host = host_side(&res);
    ch.del(Some(&res), |ty| {
        if ty == "portmap" {
            let rules = nat();
            assert!(!rules.contains(&ip), "portmap's rules left: {rules}");
            assert!(!rules.contains("CNI-DN-"), "portmap's chain left: {rules}");
        }
    })
    .unwrap();
    nothing_left(&lab, &c1, &host);
}

/// firewall admits the container's address in the node's forwarding
/// chain; DEL takes the entries out.
#[test]
fn firewall_after_attach() {
    require_root();
    let lab = Lab::new().unwrap();
    let dir = Leases::new("chain", lab.tag());
    let c1 = lab.container("c1").unwrap();
    let fw = json!({"type": "firewall", "backend": "iptables"});
    let ch = chain(&lab, &c1, &dir, "ch5", fw, json!({}));
    let res = ch.add().unwrap();
    let ip = ipv4(&res);
    let filter = || lab.node().ok(&["iptables", "-S"]).unwrap();
    let rules = filter();
    assert!(rules.contains("-N CNI-FORWARD"), "{rules}");
    let entries: Vec<_> = rules.lines().filter(|l| l.contains(&ip)).collect();
    assert!(
        entries.iter().any(|l| l.contains(&format!("-s {ip}/32")))
            && entries.iter().any(|l| l.contains(&format!("-d {ip}/32"))),
        "no entries for {ip}: {rules}"
    );
    assert!(ping(&c1, EXT_V4));
    ch.check(&res).unwrap();
    let host = host_side(&res);
    ch.del(Some(&res), |ty| {
        if ty == "firewall" {
            let rules = filter();
            assert!(!rules.contains(&ip), "firewall's entries left: {rules}");
        }
    })
    .unwrap();
    nothing_left(&lab, &c1, &host);
}

/// The five in one conflist after attach-cni, as a runtime would run it:
/// each finds what it needs in the result the ones before it passed on,
/// and the whole chain's DEL leaves the node and the container as before.
#[test]
fn all_five_in_one_conflist() {
    require_root();
    let lab = Lab::new().unwrap();
    let dir = Leases::new("chain", lab.tag());
    let c1 = lab.container("c1").unwrap();
    let key = "net.ipv4.conf.eth0.accept_local";
    let next = json!([
        {"type": "tuning", "dataDir": dir.0.join("tuning"), "sysctl": {key: "1"}},
        {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
        {"type": "firewall", "backend": "iptables"},
        {"type": "bandwidth", "capabilities": {"bandwidth": true}},
        {"type": "sbr"},
    ]);
    let rc = json!({
        "portMappings": [{"hostPort": 18081, "containerPort": 8081, "protocol": "tcp"}],
        "bandwidth": {"ingressRate": 20_000_000, "ingressBurst": 2_000_000,
                      "egressRate": 20_000_000, "egressBurst": 2_000_000},
    });
    let ch = chain(&lab, &c1, &dir, "ch6", next, rc);
    let res = ch.add().unwrap();
    let ip = ipv4(&res);
    let host = host_side(&res);
    assert_eq!(c1.ok(&["sysctl", "-n", key]).unwrap().trim(), "1");
    let nat = lab.node().ok(&["iptables", "-t", "nat", "-S"]).unwrap();
    assert!(
        nat.contains(&format!("--to-destination {ip}:8081")),
        "{nat}"
    );
    let filter = lab.node().ok(&["iptables", "-S"]).unwrap();
    assert!(filter.contains(&format!("-s {ip}/32")), "{filter}");
    let qdiscs = lab
        .node()
        .ok(&["tc", "qdisc", "show", "dev", &host])
        .unwrap();
    assert!(qdiscs.contains("tbf"), "{qdiscs}");
    let rules = c1.ok(&["ip", "-4", "rule", "show"]).unwrap();
    assert!(rules.contains(&format!("from {ip} lookup 100")), "{rules}");
    let from_ip = || {
        c1.sh(&format!("ping -c 1 -W 1 -I {ip} {EXT_V4}"))
            .is_ok_and(|o| o.status.success())
    };
    assert!((0..5).any(|_| from_ip()), "no IPv4 from {ip} in the chain");
    ch.check_except(&res, &["portmap"]).unwrap();
    ch.del(Some(&res), |_| {}).unwrap();
    let nat = lab.node().ok(&["iptables", "-t", "nat", "-S"]).unwrap();
    let filter = lab.node().ok(&["iptables", "-S"]).unwrap();
    assert!(
        !nat.contains(&ip) && !filter.contains(&ip),
        "{nat}\n{filter}"
    );
    let ifbs = lab
        .node()
        .ok(&["ip", "-o", "link", "show", "type", "ifb"])
        .unwrap();
    assert!(ifbs.trim().is_empty(), "ifb left: {ifbs}");
    nothing_left(&lab, &c1, &host);
}

/// The node's agent (`attach agent`, periodic reconcile every second, no
/// metrics), killed by its pid on drop.
struct NodeAgent {
    child: Child,
    socket: PathBuf,
}

impl NodeAgent {
    fn start(lab: &Lab) -> Self {
        let bin = Attach::bin().unwrap();
        let child = lab
            .node()
            .command(&[
                bin.to_str().unwrap(),
                "agent",
                "--no-metrics",
                "--reconcile-interval",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let socket = PathBuf::from(format!(
            "/run/attach/{}.sock",
            lab.node_pin_dir().file_name().unwrap().to_string_lossy()
        ));
        let agent = Self { child, socket };
        let up =
            attach_tests::poll::until(Duration::from_secs(10), Duration::from_millis(50), || {
                std::os::unix::net::UnixStream::connect(&agent.socket).is_ok()
            });
        assert!(up, "the agent's socket did not open");
        agent
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// tuning's `mac` after attach-cni: the container's interface takes the new
/// MAC, which our datapath's source check drops until the node's agent
/// takes it on (its watch of the container's links, or its periodic pass);
/// then the container reaches the wire with it and the chain's CHECK, with
/// tuning's MAC in the result, holds.
#[test]
fn tuning_mac_after_attach_with_the_agent() {
    require_root();
    let lab = Lab::new().unwrap();
    let dir = Leases::new("chain", lab.tag());
    let c1 = lab.container("c1").unwrap();
    let _agent = NodeAgent::start(&lab);
    let new = "02:aa:bb:cc:dd:42";
    let tuning = json!({"type": "tuning", "dataDir": dir.0.join("tuning"), "mac": new});
    let ch = chain(&lab, &c1, &dir, "ch7", tuning, json!({}));
    let res = ch.add().unwrap();
    assert_eq!(res["interfaces"][0]["mac"], new, "{res}");
    let link = c1.ok(&["ip", "link", "show", "eth0"]).unwrap();
    assert!(link.contains(new), "{link}");
    let taken_on =
        attach_tests::poll::until(Duration::from_secs(10), Duration::from_millis(100), || {
            lab.attach().json(&["list"]).unwrap()[0]["mac"] == new
                && lab.attach().ok(&["check", "--all"]).is_ok()
        });
    assert!(taken_on, "the agent did not take on {new}");
    assert!(ping(&c1, EXT_V4), "no IPv4 with the new MAC");
    ch.check(&res).unwrap();
    let host = host_side(&res);
    ch.del(Some(&res), |_| {}).unwrap();
    nothing_left(&lab, &c1, &host);
}
