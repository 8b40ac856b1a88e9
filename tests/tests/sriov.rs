//! `attach add sriov`: a device of the node moves into the container and
//! comes back restored.
//!
//! This machine has no SR-IOV (CONFIG_PCI_IOV is off) and no dummy driver:
//! the "physical" device is a stand-in, a veth `sr0` in the node whose peer
//! `p-sr0` is a port of the lab's switch, so the container reaches the
//! external host through it. The VF path (settings through the PF) is
//! covered by unit tests of the netlink bytes only; here a VF-only option on
//! the stand-in must be refused.

use std::{
    fs,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use attach_tests::{
    kinds::{self, STANDIN, STANDIN_PORT},
    lab::{EXT_V4, EXT_V6, Lab, NETNS_PREFIX, NODE_IF, NODE_V4, Netns, ping, require_root},
    reach::mac_of,
    refusal::{Bad, CONFLICT, INVALID, NOT_FOUND, SYSTEM, check_rejected},
    snapshot::{Scope, links, snapshot_with},
};
use serde_json::{Value, json};

const DEV: &str = STANDIN;
const SW_PORT: &str = STANDIN_PORT;

fn standin(lab: &Lab) {
    kinds::standin(lab).unwrap();
}

fn link<'a>(all: &'a [Value], name: &str) -> Option<&'a Value> {
    all.iter().find(|l| l["ifname"] == name)
}

/// The stand-in moves into c1 (renamed eth0, new MAC and MTU, addresses),
/// which then reaches the external host and is reached from it on IPv4 and
/// IPv6; the node no longer has it. Detached, it is back in the node as it
/// was: name, MAC, MTU, state.
#[test]
fn a_device_moves_in_works_and_comes_back_restored() {
    require_root();
    let lab = Lab::new().unwrap();
    standin(&lab);
    let c1 = lab.container("c1").unwrap();
    let scope = Scope {
        namespaces: vec![&c1],
        cgroups: vec![],
    };
    let before = snapshot_with(&lab, &scope);
    let node_links = links(lab.node());
    let orig = link(&node_links, DEV).unwrap().clone();
    let (v4, v6) = Lab::container_ip(21);
    let mac = mac_of(21);

    let rec = lab
        .attach()
        .json(&[
            "add",
            "sriov",
            "--device",
            DEV,
            "--netns",
            c1.name(),
            "--ip",
            &v4,
            "--ip",
            &v6,
            "--mac",
            &mac,
            "--mtu",
            "1400",
        ])
        .unwrap();
    assert_eq!(rec["kind"], "sriov");
    assert_eq!(rec["ifname"], "eth0");
    assert_eq!(rec["mac"], mac.as_str());
    assert_eq!(rec["mtu"], 1400);
    assert_eq!(rec["parent"], Value::Null, "a stand-in has no PF");
    assert_eq!(rec["sriov"]["device"], DEV);
    assert_eq!(rec["sriov"]["vf"], Value::Null);
    assert_eq!(rec["sriov"]["moved"], true);
    assert_eq!(
        rec["sriov"]["saved"],
        json!({"mtu": 1500, "mac": orig["address"], "up": true})
    );

    assert!(
        link(&links(lab.node()), DEV).is_none(),
        "{DEV} is still in the node"
    );
    let inside = links(&c1);
    let eth0 = link(&inside, "eth0").expect("eth0 in c1");
    assert_eq!(eth0["address"], mac.as_str());
    assert_eq!(eth0["mtu"], 1400);
    assert_eq!(eth0["up"], true);
    for dst in [EXT_V4, EXT_V6, NODE_V4] {
        assert!(ping(&c1, dst), "c1 cannot reach {dst} through {DEV}");
    }
    for dst in [&v4, &v6] {
        assert!(ping(lab.ext(), dst), "ext cannot reach c1 at {dst}");
    }
    lab.attach().ok(&["check", "--netns", c1.name()]).unwrap();
    let table = lab.attach().ok(&["list"]).unwrap();
    assert!(table.contains("sriov") && table.contains(DEV), "{table}");

    let out = lab.attach().json(&["del", "--netns", c1.name()]).unwrap();
    assert_eq!(out["detached"]["sriov"]["device"], DEV, "{out}");
    assert_eq!(out["detached"]["warnings"], json!([]));
    let after = snapshot_with(&lab, &scope);
    assert_eq!(after, before, "\n{}", before.diff(&after));
    let back = links(lab.node());
    assert_eq!(link(&back, DEV).unwrap()["address"], orig["address"]);
    let again = lab.attach().json(&["del", "--netns", c1.name()]).unwrap();
    assert_eq!(again, json!({"detached": null}));
}

/// A PCI network function of this machine, if any (read-only: its address
/// is only given to the engine, which must not find it in the lab's node).
fn machine_nic_pci() -> Option<String> {
    fs::read_dir("/sys/bus/pci/devices")
        .ok()?
        .flatten()
        .find(|e| fs::read_to_string(e.path().join("class")).is_ok_and(|c| c.starts_with("0x02")))
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

#[test]
fn sriov_bad_input_is_refused_and_changes_nothing() {
    require_root();
    let lab = Lab::new().unwrap();
    standin(&lab);
    let c1 = lab.container("c1").unwrap();
    let busy = lab.container("busy").unwrap();
    busy.ok(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ])
    .unwrap();
    // A device the node uses (it has an address on it).
    for cmd in [
        &[
            "ip", "link", "add", "eth2", "type", "veth", "peer", "name", "eth2p",
        ][..],
        &["ip", "addr", "add", "10.88.0.1/24", "dev", "eth2"],
    ] {
        lab.node().ok(cmd).unwrap();
    }
    // An eBPF endpoint, for its host-side veth.
    let c9 = lab.container("c9").unwrap();
    let (e4, _) = Lab::container_ip(9);
    let ep = lab
        .attach()
        .json(&[
            "add",
            "macvlan",
            "--parent",
            NODE_IF,
            "--netns",
            c9.name(),
            "--ip",
            &e4,
        ])
        .unwrap();
    let host_veth = ep["host_ifname"].as_str().unwrap().to_owned();
    let nov6 = lab.container_without_ipv6("nov6").unwrap();
    let nov6n = nov6.name().to_owned();
    let scope = Scope {
        namespaces: vec![&c1, &busy, &nov6],
        cgroups: vec![],
    };
    let c = c1.name().to_owned();
    let node = lab.node().name().to_owned();
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = ["add", "sriov"].map(String::from).to_vec();
        if !extra.contains(&"--device") && !extra.contains(&"--pci") {
            v.extend(["--device".to_owned(), DEV.to_owned()]);
        }
        if !extra.contains(&"--netns") {
            v.extend(["--netns".to_owned(), c.clone()]);
        }
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let bad = |name: &str, extra: &[&str], code: i32, names: &str| Bad {
        name: name.into(),
        args: args(extra),
        code,
        names: names.into(),
        parse: false,
    };
    let mut cases = vec![
        bad("VLAN 0", &["--vlan", "0"], INVALID, "VLAN ID 0"),
        bad("VLAN 4095", &["--vlan", "4095"], INVALID, "VLAN ID 4095"),
        bad("QoS 8", &["--vlan", "10", "--qos", "8"], INVALID, "--qos 8"),
        bad("QoS without VLAN", &["--qos", "3"], INVALID, "needs --vlan"),
        bad("max rate 0", &["--max-rate", "0"], INVALID, "--max-rate 0"),
        bad(
            "VLAN on a non-VF",
            &["--vlan", "100"],
            INVALID,
            "--vlan needs a VF: sr0 is not a virtual function",
        ),
        bad(
            "spoof check on a non-VF",
            &["--spoofchk", "on"],
            INVALID,
            "--spoofchk needs a VF",
        ),
        bad(
            "trust on a non-VF",
            &["--trust", "off"],
            INVALID,
            "--trust needs a VF",
        ),
        bad(
            "rate on a non-VF",
            &["--max-rate", "100"],
            INVALID,
            "--max-rate needs a VF",
        ),
        bad(
            "device not present",
            &["--device", "nope0"],
            NOT_FOUND,
            "nope0",
        ),
        bad(
            "the parent of an endpoint",
            &["--device", NODE_IF],
            CONFLICT,
            "eth1 is in use: it is the parent of eth0",
        ),
        bad(
            "a device with the node's address",
            &["--device", "eth2"],
            CONFLICT,
            "carries the node's address(es) 10.88.0.1",
        ),
        bad("loopback", &["--device", "lo"], INVALID, "lo"),
        bad(
            "an endpoint's host-side veth",
            &["--device", &host_veth],
            INVALID,
            &host_veth,
        ),
        bad("bad PCI address", &["--pci", "03:00"], INVALID, "03:00"),
        bad(
            "PCI device not present",
            &["--pci", "0000:7e:1f.7"],
            NOT_FOUND,
            "0000:7e:1f.7",
        ),
        bad(
            "missing netns",
            &["--netns", "no-such-ns"],
            NOT_FOUND,
            "no-such-ns",
        ),
        bad(
            "the node's own namespace",
            &["--netns", &node],
            INVALID,
            &node,
        ),
        bad("ifname taken", &["--netns", busy.name()], CONFLICT, "eth0"),
        bad(
            "MTU below IPv6's",
            &["--ip", "fd77::21/64", "--mtu", "1200"],
            INVALID,
            "1200",
        ),
        bad(
            "--device and --pci",
            &["--device", DEV, "--pci", "0000:00:03.0"],
            INVALID,
            "--pci",
        )
        .parse(),
        bad(
            "gateway outside the subnet",
            &["--ip", "10.77.0.21/24", "--gateway", "192.168.9.1"],
            INVALID,
            "192.168.9.1",
        ),
        bad("MTU 65536", &["--mtu", "65536"], INVALID, "MTU 65536"),
        // Fails late, in the container: the device was moved, renamed, given
        // its MAC, MTU and IPv4 address; IPv6 is off there, so its IPv6
        // address is refused; all of it is undone.
        bad(
            "IPv6 off in the container",
            &[
                "--netns",
                &nov6n,
                "--ip",
                "10.77.0.21/24",
                "--ip",
                "fd77::21/64",
                "--mtu",
                "1400",
                "--mac",
                "02:a7:00:00:00:21",
            ],
            SYSTEM,
            "fd77::21/64",
        ),
    ];
    if let Some(pci) = machine_nic_pci() {
        let names = format!("{pci} has no network interface in the node's namespace");
        cases.push(Bad {
            name: "a PCI NIC outside the node".into(),
            args: args(&["--pci", &pci]),
            code: NOT_FOUND,
            names,
            parse: false,
        });
    }
    let mut broken = Vec::new();
    for case in &cases {
        broken.extend(check_rejected(&lab, &scope, case));
    }

    // Beside a healthy one: the device is taken, c1's eth0 too.
    let (v4, v6) = Lab::container_ip(21);
    lab.attach()
        .ok(&[
            "add", "sriov", "--device", DEV, "--netns", &c, "--ip", &v4, "--ip", &v6,
        ])
        .unwrap();
    let c2 = lab.container("c2").unwrap();
    let c2n = c2.name().to_owned();
    cases = vec![
        bad(
            "device already attached",
            &["--netns", &c2n],
            CONFLICT,
            "device sr0 is already in use",
        ),
        bad(
            "c1's eth0 already attached",
            &["--device", "nope0"],
            CONFLICT,
            "eth0",
        ),
    ];
    let scope = Scope {
        namespaces: vec![&c1, &busy, &c2],
        cgroups: vec![],
    };
    for case in &cases {
        broken.extend(check_rejected(&lab, &scope, case));
    }
    assert!(ping(&c1, EXT_V6), "the healthy one broke");
    assert!(broken.is_empty(), "{}", broken.join("\n\n"));
}

/// The container's namespace is deleted while it has the device. A veth (the
/// stand-in) dies with it; a physical device would go to the machine's
/// initial namespace, which the engine must not touch. `del` succeeds, says
/// so (stderr and `warnings`), and removes the record.
#[test]
fn the_container_namespace_goes_first() {
    require_root();
    let lab = Lab::new().unwrap();
    standin(&lab);
    let gone = Netns::named(&format!("{NETNS_PREFIX}-{}-gone", lab.tag())).unwrap();
    let name = gone.name().to_owned();
    let (v4, _) = Lab::container_ip(22);
    lab.attach()
        .ok(&[
            "add", "sriov", "--device", DEV, "--netns", &name, "--ip", &v4,
        ])
        .unwrap();
    let empty_node = {
        let mut l = links(lab.node());
        l.retain(|x| x["ifname"] != DEV);
        l
    };
    drop(gone);
    let out = lab
        .attach()
        .run(&["-o", "json", "del", "--netns", &name])
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = v["detached"]["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{v}");
    let w = warnings[0].as_str().unwrap();
    assert!(
        w.contains("sr0")
            && w.contains("not in the node")
            && w.contains("initial network namespace"),
        "{w}"
    );
    assert!(stderr.contains("warning: sr0"), "{stderr}");
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
    // Destroyed with the namespace: gone from the node and from the switch.
    let mut now = links(lab.node());
    now.retain(|x| x["ifname"] != DEV);
    assert_eq!(now, empty_node);
    assert!(link(&links(lab.node()), DEV).is_none());
    // Namespaces are freed asynchronously: the peer goes a little later.
    let deadline = Instant::now() + Duration::from_secs(10);
    while link(&links(lab.sw()), SW_PORT).is_some() {
        assert!(
            Instant::now() < deadline,
            "{SW_PORT} still on the switch: the stand-in outlived its namespace"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(!Path::new(&format!("/run/netns/{name}")).exists());
}

/// Drift inside the container (its address removed) is repaired by moving
/// the device back and handing it over again; a container namespace gone is
/// detached.
#[test]
fn reconcile_recreates_and_detaches() {
    require_root();
    let lab = Lab::new().unwrap();
    standin(&lab);
    let c1 = lab.container("c1").unwrap();
    let (v4, v6) = Lab::container_ip(23);
    lab.attach()
        .ok(&[
            "add",
            "sriov",
            "--device",
            DEV,
            "--netns",
            c1.name(),
            "--ip",
            &v4,
            "--ip",
            &v6,
            "--mtu",
            "1400",
        ])
        .unwrap();
    assert_eq!(lab.attach().json(&["reconcile"]).unwrap(), json!([]));
    c1.ok(&["ip", "addr", "del", &v4, "dev", "eth0"]).unwrap();
    assert!(!ping(&c1, EXT_V4));
    let repairs = lab.attach().json(&["reconcile"]).unwrap();
    assert_eq!(repairs[0]["action"], "recreated", "{repairs}");
    lab.attach().ok(&["check", "--netns", c1.name()]).unwrap();
    assert!(ping(&c1, EXT_V4) && ping(&c1, EXT_V6));
    let inside = links(&c1);
    assert_eq!(link(&inside, "eth0").unwrap()["mtu"], 1400);

    let gone = Netns::named(&format!("{NETNS_PREFIX}-{}-gone", lab.tag())).unwrap();
    let name = gone.name().to_owned();
    lab.attach().ok(&["del", "--netns", c1.name()]).unwrap();
    lab.attach()
        .ok(&[
            "add", "sriov", "--device", DEV, "--netns", &name, "--ip", &v4,
        ])
        .unwrap();
    drop(gone);
    let repairs = lab.attach().json(&["reconcile"]).unwrap();
    assert!(
        repairs[0]["action"]
            .as_str()
            .unwrap()
            .starts_with("detached"),
        "{repairs}"
    );
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
}
