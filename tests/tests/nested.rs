//! nested in namespaces: a namespace stands in for each VM, joined to the
//! lab's node (the physical host) by a veth: `tapN` on the node, `eth0` in
//! the VM (its uplink). Two engines run: the node's (`attach`, as in every
//! lab) and the VM's own (`nsenter --net=<vm> attach`: its own pins and
//! records, by its namespace cookie). A container in a VM is attached by
//! the VM's engine (`nested`, its VLAN on the uplink) and by the node's
//! (`nested-host`, that VLAN of the tap as an endpoint of `eth1`'s switch).
//!
//! Proves: a VM's container reaches the external host and a container on
//! the host (macvlan, on `eth1`), IPv4 and IPv6, its frames tagged on the
//! tap (802.1Q, and 802.1ad + 802.1Q when the VM's uplink is itself
//! tagged); two VMs' containers on different VLANs are isolated (also with
//! a forced neighbour entry: the switch drops the frame), while the same
//! VLAN spans VMs; bad input is refused and changes nothing on either side.

use attach_tests::{
    lab::{
        EXT_V4, EXT_V6, Lab, NODE_IF, node_id, ping, ping_within, require_root, unreachable_within,
    },
    reach::{Endpoint, Flavor, attach, detach},
    report::{counters_where, verdict},
    snapshot::{snapshot, tree},
    vm::{attach_nested, capture, nested_mac as mac, vm, vm_state},
};
use serde_json::json;

fn reaches(from: &Endpoint, to: &Endpoint) -> (bool, bool) {
    (ping(&from.ns, &to.v4), ping(&from.ns, &to.v6))
}

/// A VM's container reaches the external host and a container on the host,
/// both families, both ways; its frames carry VLAN 100 on the tap; both
/// engines count it; both records say what they are; `del` is idempotent
/// on both sides.
#[test]
fn vm_container_reaches_the_wire_and_a_host_container() {
    require_root();
    let lab = Lab::new().unwrap();
    let vm1 = vm(&lab, "vm1", "tap1").unwrap();
    let hostc = attach(&lab, 2, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let c = attach_nested(&lab, &vm1, "vm1c", 100, None, 31, &[]).unwrap();
    for dst in [EXT_V4, EXT_V6] {
        assert!(ping(&c.ns, dst), "vm1c -> ext {dst}");
    }
    for dst in [&c.v4, &c.v6] {
        assert!(ping(lab.ext(), dst), "ext -> {dst}");
    }
    assert_eq!(reaches(&c, &hostc), (true, true), "vm1c -> host container");
    assert_eq!(reaches(&hostc, &c), (true, true), "host container -> vm1c");
    let seen = capture(lab.node(), "tap1", "vlan", 2, || {
        ping(&c.ns, EXT_V4);
    });
    eprintln!("on tap1:\n{seen}");
    assert!(
        seen.contains("vlan 100") && seen.contains("10.77.0.31 > 10.77.0.1"),
        "the tap did not carry VLAN 100: {seen}"
    );

    let node_stats = lab.attach().json(&["stats"]).unwrap();
    let k = counters_where(&node_stats, |a| a["tap"] == "tap1" && a["vlan"] == 100);
    assert!(
        k["tx_packets"].as_u64().unwrap() > 4 && k["rx_packets"].as_u64().unwrap() > 4,
        "host side: {k}"
    );
    let vm_stats = vm1.engine.json(&["stats"]).unwrap();
    let k = counters_where(&vm_stats, |a| a["netns"] == c.ns.name());
    assert!(
        k["tx_packets"].as_u64().unwrap() > 4 && k["rx_packets"].as_u64().unwrap() > 4,
        "VM side: {k}"
    );

    let host_rec = &lab
        .attach()
        .json(&["list"])
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "nested")
        .cloned()
        .unwrap();
    assert_eq!(host_rec["netns"], "");
    assert_eq!(host_rec["role"], "host");
    assert_eq!(host_rec["tap"], "tap1");
    assert_eq!(host_rec["vlan"], 100);
    assert_eq!(host_rec["ifname"], "vlan100");
    assert_eq!(host_rec["parent"], NODE_IF);
    assert_eq!(host_rec["mode"], "bridge");
    assert_eq!(host_rec["mac"], mac(31));
    let vm_rec = &vm1.engine.json(&["list"]).unwrap()[0];
    assert_eq!(vm_rec["role"], "vm");
    assert_eq!(vm_rec["netns"], c.ns.name());
    assert_eq!(vm_rec["parent"], "eth0");
    assert_eq!(vm_rec["vlan"], 100);
    lab.attach()
        .ok(&["check", "--tap", "tap1", "--vlan", "100"])
        .unwrap();
    vm1.engine.ok(&["check", "--netns", c.ns.name()]).unwrap();

    for _ in 0..2 {
        lab.attach()
            .ok(&["del", "--tap", "tap1", "--vlan", "100"])
            .unwrap();
        vm1.engine.ok(&["del", "--netns", c.ns.name()]).unwrap();
    }
    assert!(!ping(&c.ns, EXT_V4), "still reaching out after del");
    detach(&lab, &hostc).unwrap();
    let pins = lab.node_pin_dir();
    assert!(!pins.exists(), "the node kept pins: {:?}", tree(&pins));
}

/// VM1's VLAN-100 container (tag stripped: the wire's untagged side) and
/// VM2's VLAN-200 container (tag kept) never reach each other, not even
/// with the neighbour entry forced (the switch drops the frame:
/// `vlan_mismatch`); VLAN 200 spans the VMs (VM1 has a VLAN-200 container
/// too); the untagged wire does not reach VLAN 200.
#[test]
fn vlans_isolate_the_vms_containers() {
    require_root();
    let lab = Lab::new().unwrap();
    let vm1 = vm(&lab, "vm1", "tap1").unwrap();
    let vm2 = vm(&lab, "vm2", "tap2").unwrap();
    let a = attach_nested(&lab, &vm1, "vm1c100", 100, None, 31, &[]).unwrap();
    let b = attach_nested(&lab, &vm1, "vm1c200", 200, None, 41, &["--keep-tag"]).unwrap();
    let d = attach_nested(&lab, &vm2, "vm2c200", 200, None, 42, &["--keep-tag"]).unwrap();
    assert!(
        ping(&a.ns, EXT_V4) && ping(&a.ns, EXT_V6),
        "VLAN 100 -> ext"
    );
    assert_eq!(reaches(&a, &d), (false, false), "VLAN 100 -> VLAN 200");
    assert_eq!(reaches(&d, &a), (false, false), "VLAN 200 -> VLAN 100");
    assert_eq!(reaches(&b, &d), (true, true), "VLAN 200 across VMs");
    assert_eq!(reaches(&d, &b), (true, true), "VLAN 200 across VMs, back");
    assert!(!ping(&d.ns, EXT_V4), "the untagged wire reached VLAN 200");
    // Neighbour entries forced: the frames reach the host's switch, which
    // drops them.
    let before = verdict(
        &lab.attach().json(&["stats"]).unwrap(),
        "tx",
        "vlan_mismatch",
    );
    a.ns.ok(&[
        "ip",
        "neigh",
        "replace",
        &d.v4,
        "lladdr",
        &mac(42),
        "dev",
        "eth0",
        "nud",
        "permanent",
    ])
    .unwrap();
    assert!(
        !ping(&a.ns, &d.v4),
        "VLAN 100 -> VLAN 200 with the neighbour forced"
    );
    let after = verdict(
        &lab.attach().json(&["stats"]).unwrap(),
        "tx",
        "vlan_mismatch",
    );
    assert!(
        after > before,
        "no vlan_mismatch drop counted ({before} -> {after})"
    );
}

/// The VM's uplink is itself tagged (S-tag 10): the container's frames
/// carry 802.1ad 10 outside 802.1Q 100 on the tap; it reaches the external
/// host and the host's container; VLAN 100 of another VM without S-tag is
/// another endpoint, working beside it.
#[test]
fn qinq_vm_uplink() {
    require_root();
    let lab = Lab::new().unwrap();
    let vm1 = vm(&lab, "vm1", "tap1").unwrap();
    let vm3 = vm(&lab, "vm3", "tap3").unwrap();
    let hostc = attach(&lab, 2, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let plain = attach_nested(&lab, &vm1, "vm1c", 100, None, 31, &[]).unwrap();
    let q = attach_nested(&lab, &vm3, "vm3c", 100, Some(10), 51, &[]).unwrap();
    for c in [&q, &plain] {
        assert!(
            ping(&c.ns, EXT_V4) && ping(&c.ns, EXT_V6),
            "{} -> ext",
            c.label
        );
        assert!(
            ping(lab.ext(), &c.v4) && ping(lab.ext(), &c.v6),
            "ext -> {}",
            c.label
        );
        assert_eq!(
            reaches(c, &hostc),
            (true, true),
            "{} -> host container",
            c.label
        );
        assert_eq!(
            reaches(&hostc, c),
            (true, true),
            "host container -> {}",
            c.label
        );
    }
    assert_eq!(
        reaches(&q, &plain),
        (true, true),
        "both on the untagged side"
    );
    let seen = capture(lab.node(), "tap3", "vlan", 2, || {
        ping(&q.ns, EXT_V4);
    });
    eprintln!("on tap3:\n{seen}");
    assert!(
        seen.contains("802.1Q-QinQ") && seen.contains("vlan 10,") && seen.contains("vlan 100,"),
        "the tap did not carry S-tag 10 around VLAN 100: {seen}"
    );
    lab.attach()
        .ok(&["check", "--tap", "tap3", "--qinq", "10", "--vlan", "100"])
        .unwrap();
}

/// How soon a repaired path carries a ping: the neighbour entries the
/// broken one left unresolved retry once a second.
const REPAIRED_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

/// Drift on either side is found and repaired in place: the tap's program
/// unpinned on the host, the uplink's in the VM; reconcile never detaches
/// a host-side record for lack of a namespace.
#[test]
fn check_and_reconcile_both_sides() {
    require_root();
    let lab = Lab::new().unwrap();
    let vm1 = vm(&lab, "vm1", "tap1").unwrap();
    let c = attach_nested(&lab, &vm1, "vm1c", 100, None, 31, &[]).unwrap();
    assert_eq!(
        lab.attach().json(&["reconcile"]).unwrap(),
        json!([]),
        "nothing to repair"
    );
    let unpin = |dir: std::path::PathBuf, suffix: &str| {
        let links = dir.join("links");
        let pin = std::fs::read_dir(&links)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap_or_else(|| panic!("no *{suffix} pin in {links:?}"));
        std::fs::remove_file(pin).unwrap();
    };
    unpin(lab.node_pin_dir(), "-nest");
    assert!(
        unreachable_within(&c.ns, EXT_V4, REPAIRED_WITHIN),
        "the tap still switched"
    );
    let out = lab
        .attach()
        .run(&["check", "--tap", "tap1", "--vlan", "100"])
        .unwrap();
    assert!(!out.status.success());
    let repairs = lab.attach().json(&["reconcile"]).unwrap();
    assert_eq!(repairs[0]["action"], "repaired", "{repairs}");
    assert!(
        ping_within(&c.ns, EXT_V4, REPAIRED_WITHIN),
        "after the host's repair"
    );

    let vm_pins = format!(
        "/sys/fs/bpf/attach/node-{}",
        node_id(vm1.ns.path()).unwrap()
    );
    unpin(vm_pins.into(), "-nest");
    assert!(
        unreachable_within(lab.ext(), &c.v4, REPAIRED_WITHIN),
        "the uplink still delivered"
    );
    let repairs = vm1.engine.json(&["reconcile"]).unwrap();
    assert_eq!(repairs[0]["action"], "repaired", "{repairs}");
    assert!(
        ping_within(lab.ext(), &c.v4, REPAIRED_WITHIN)
            && ping_within(lab.ext(), &c.v6, REPAIRED_WITHIN),
        "after the VM's repair"
    );
}

/// Bad input on either side: a clear error naming the value, the
/// documented exit code, and nothing changed in the VM or on the host.
#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    require_root();
    let lab = Lab::new().unwrap();
    let vm1 = vm(&lab, "vm1", "tap1").unwrap();
    let hostc = attach(&lab, 2, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let t = lab.container("t").unwrap();
    let tn = t.name().to_owned();
    let outcome = |out: std::process::Output, args: &[&str], code: i32, names: &str| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("attach {}: {:?}: {err}", args.join(" "), out.status.code());
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            err.contains(names),
            "{args:?}: does not name {names:?}: {err}"
        );
    };
    let in_vm = |extra: &[&str], code: i32, names: &str| {
        let mut args = vec!["add", "nested", "--netns", &tn, "--ip", "10.77.0.61/24"];
        args.extend(extra);
        let (vb, hb) = (vm_state(&vm1, &[t.as_ref()]), snapshot(&lab, &[]));
        outcome(vm1.engine.run(&args).unwrap(), &args, code, names);
        let (va, ha) = (vm_state(&vm1, &[t.as_ref()]), snapshot(&lab, &[]));
        assert_eq!(vb, va, "{args:?} changed the VM");
        assert!(hb == ha, "{args:?} changed the host:\n{}", hb.diff(&ha));
    };
    let on_host = |extra: &[&str], code: i32, names: &str| {
        let mut args = vec!["add", "nested-host"];
        args.extend(extra);
        let (vb, hb) = (vm_state(&vm1, &[]), snapshot(&lab, &[]));
        outcome(lab.attach().run(&args).unwrap(), &args, code, names);
        let (va, ha) = (vm_state(&vm1, &[]), snapshot(&lab, &[]));
        assert_eq!(vb, va, "{args:?} changed the VM");
        assert!(hb == ha, "{args:?} changed the host:\n{}", hb.diff(&ha));
    };
    let up = ["--uplink", "eth0"];
    for (v, names) in [("0", "--vlan 0"), ("4095", "--vlan 4095"), ("abc", "abc")] {
        in_vm(&[&up[..], &["--vlan", v]].concat(), 2, names);
    }
    in_vm(
        &[&up[..], &["--vlan", "100", "--qinq", "4096"]].concat(),
        2,
        "--qinq 4096",
    );
    in_vm(&["--uplink", "nope0", "--vlan", "100"], 3, "nope0");
    in_vm(
        &[&up[..], &["--vlan", "100", "--mtu", "9000"]].concat(),
        2,
        "9000",
    );
    in_vm(&["--vlan", "100"], 2, "--uplink");
    // The lease gives the address: --ip (always given here) excludes --dhcp.
    in_vm(
        &[&up[..], &["--vlan", "100", "--dhcp"]].concat(),
        2,
        "--dhcp and --ip exclude each other",
    );
    let args = [
        "add",
        "nested",
        "--netns",
        "no-such-ns",
        "--uplink",
        "eth0",
        "--vlan",
        "100",
    ];
    outcome(vm1.engine.run(&args).unwrap(), &args, 3, "no-such-ns");

    let host = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["--parent", NODE_IF, "--mac", "02:a7:01:00:00:3d"];
        v.extend(extra);
        v
    };
    on_host(&host(&["--tap", "nope0", "--vlan", "100"]), 3, "nope0");
    on_host(
        &[
            "--tap",
            "tap1",
            "--vlan",
            "100",
            "--parent",
            "nope1",
            "--mac",
            "02:a7:01:00:00:3d",
        ],
        3,
        "nope1",
    );
    on_host(&host(&["--tap", "tap1", "--vlan", "0"]), 2, "--vlan 0");
    on_host(&host(&["--tap", "tap1", "--vlan", "x1"]), 2, "x1");
    on_host(
        &host(&["--tap", "tap1", "--vlan", "100", "--mode", "passthru"]),
        2,
        "passthru",
    );
    on_host(
        &["--tap", "tap1", "--vlan", "100", "--parent", NODE_IF],
        2,
        "--mac",
    );
    on_host(
        &[
            "--tap",
            "tap1",
            "--vlan",
            "100",
            "--parent",
            NODE_IF,
            "--mac",
            "01:00:5e:00:00:01",
        ],
        2,
        "01:00:5e:00:00:01",
    );
    on_host(
        &[
            "--tap",
            NODE_IF,
            "--vlan",
            "100",
            "--parent",
            NODE_IF,
            "--mac",
            "02:a7:01:00:00:3d",
        ],
        2,
        NODE_IF,
    );
    let used = attach_tests::reach::mac_of(2);
    let used: &'static str = Box::leak(used.into_boxed_str());
    on_host(
        &[
            "--tap", "tap1", "--vlan", "100", "--parent", NODE_IF, "--mac", used,
        ],
        4,
        used,
    );
    // Taken VLANs, on each side.
    let c = attach_nested(&lab, &vm1, "vm1c", 100, None, 31, &[]).unwrap();
    in_vm(&[&up[..], &["--vlan", "100"]].concat(), 4, "VLAN 100");
    on_host(&host(&["--tap", "tap1", "--vlan", "100"]), 4, "vlan100");
    // Detaching by tap needs the VLAN.
    let out = lab.attach().run(&["del", "--tap", "tap1"]).unwrap();
    assert_eq!(out.status.code(), Some(2));
    lab.attach()
        .ok(&["del", "--tap", "tap1", "--vlan", "100"])
        .unwrap();
    vm1.engine.ok(&["del", "--netns", c.ns.name()]).unwrap();
    detach(&lab, &hostc).unwrap();
}
