//! Bad input refused with the value named and the node left as it was.

use attach_tests::{
    lab::Lab,
    lab::require_root,
    reach::{attach_bridge, detach, mac_of},
    snapshot::snapshot,
};
use serde_json::Value;

use super::*;

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
    // An ipvlan or a native macvlan on the uplink of a switch is refused,
    // and the other way (eBPF macvlan endpoints may share it: see
    // `shared_uplink`).
    lab.add_nic(NIC).unwrap();
    let c3 = attach_bridge(&lab, 3, "sw2", "ebpf", &["--uplink", NIC]).unwrap();
    let args = [
        "add",
        "ipvlan",
        "--parent",
        NIC,
        "--netns",
        &t,
        "--ip",
        "10.77.0.99/24",
    ];
    check(&args, 4, "uplink of switch sw2", false);
    let args = [
        "add",
        "macvlan",
        "--backend",
        "native",
        "--parent",
        NIC,
        "--netns",
        &t,
    ];
    check(&args, 4, "uplink of switch sw2", false);
    let _i = attach_tests::reach::attach_ipvlan(&lab, 5, "l2", "bridge", &[]).unwrap();
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
