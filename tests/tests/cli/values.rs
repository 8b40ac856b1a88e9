//! Values refused up front, named: an empty NETNS for every kind, values
//! out of the kernel's range.

use attach_tests::{
    lab::{Lab, NODE_IF, require_root},
    refusal::{Bad, check_rejected},
    snapshot::Scope,
};

use super::*;

/// `--netns ""` would make the node itself the container: every kind
/// refuses it up front, naming the option, and makes nothing.
#[test]
fn empty_netns_is_refused_for_every_kind() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = lab.container("c1").unwrap();
    let scope = Scope {
        namespaces: vec![&c],
        cgroups: vec![],
    };
    let kinds: &[(&str, &[&str])] = &[
        ("macvlan", &["--parent", NODE_IF, "--ip", "10.77.0.60/24"]),
        ("ipvlan", &["--parent", NODE_IF, "--ip", "10.77.0.60/24"]),
        ("bridge", &["--bridge", "br-e", "--ip", "10.77.0.60/24"]),
        ("router", &["--ip", "10.88.0.60/32"]),
        ("nested", &["--uplink", NODE_IF, "--vlan", "100"]),
        ("host", &["--ports", "tcp/80"]),
        ("sriov", &["--device", "sr0"]),
        ("container", &["--join", c.name()]),
    ];
    let mut broken = Vec::new();
    for (kind, extra) in kinds {
        let mut args = vec!["add", kind, "--netns", ""];
        args.extend_from_slice(extra);
        let bad = Bad::new(&format!("{kind} --netns \"\""), &args, 2, "--netns \"\"");
        broken.extend(check_rejected(&lab, &scope, &bad));
    }
    // Nor may del or check name it, beside an attachment (of a real
    // container) that must stay.
    lab.attach().ok(&add_macvlan(&c, &[])).unwrap();
    for cmd in ["del", "check"] {
        let bad = Bad::new(
            &format!("{cmd} --netns \"\""),
            &[cmd, "--netns", ""],
            2,
            "--netns \"\"",
        );
        broken.extend(check_rejected(&lab, &scope, &bad));
    }
    lab.attach().ok(&["check", "--netns", c.name()]).unwrap();
    lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
    assert!(broken.is_empty(), "{}", broken.join("\n\n"));
}

/// Values the kernel would refuse with a bare "Invalid argument" are refused
/// up front, named: an MTU above 65535 (router, sriov, bridge), a router
/// uplink that is the loopback device.
#[test]
fn out_of_range_values_are_named() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = lab.container("c1").unwrap();
    let n = c.name();
    let scope = Scope {
        namespaces: vec![&c],
        cgroups: vec![],
    };
    let cases = [
        Bad::new(
            "router MTU 65536",
            &[
                "add",
                "router",
                "--netns",
                n,
                "--ip",
                "10.88.0.60/32",
                "--mtu",
                "65536",
            ],
            2,
            "MTU 65536",
        ),
        Bad::new(
            "router on loopback",
            &[
                "add",
                "router",
                "--netns",
                n,
                "--ip",
                "10.88.0.60/32",
                "--uplink",
                "lo",
            ],
            2,
            "--uplink lo",
        ),
        Bad::new(
            "sriov MTU 65536",
            &[
                "add", "sriov", "--device", "sr0", "--netns", n, "--mtu", "65536",
            ],
            2,
            "MTU 65536",
        ),
        Bad::new(
            "macvlan MTU 70000",
            &[
                "add", "macvlan", "--parent", NODE_IF, "--netns", n, "--mtu", "70000",
            ],
            2,
            "MTU 70000",
        ),
    ];
    let mut broken = Vec::new();
    for bad in &cases {
        broken.extend(check_rejected(&lab, &scope, bad));
    }
    assert!(broken.is_empty(), "{}", broken.join("\n\n"));
}
