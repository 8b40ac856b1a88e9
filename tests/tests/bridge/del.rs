//! `del` is idempotent, and the switch goes with its last port.

use attach_tests::{
    lab::Lab,
    lab::require_root,
    reach::{attach_bridge, detach, mac_of},
};
use serde_json::Value;

/// `del` is idempotent; the switch goes with its last port; `list -o json`
/// shows the bridge fields.
#[test]
fn del_is_idempotent_and_a_switch_goes_with_its_last_port() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach_bridge(&lab, 1, "sw9", "ebpf", &["--vlan", "7", "--isolated"]).unwrap();
    let c2 = attach_bridge(&lab, 2, "sw9", "ebpf", &[]).unwrap();
    let r = lab.record(&c1.ns);
    for (k, v) in [
        ("kind", "bridge"),
        ("parent", "sw9"),
        ("backend", "ebpf"),
        ("mac", mac_of(1).as_str()),
    ] {
        assert_eq!(r[k], v, "{k}: {r}");
    }
    assert_eq!(r["vlan"], 7);
    assert_eq!(r["isolated"], true);
    assert_eq!(r["spoofchk"], true);
    assert!(r["uplink"].is_null());
    let switches = |lab: &Lab| {
        let out = std::process::Command::new("bpftool")
            .args(["-j", "map", "dump", "pinned"])
            .arg(lab.node_pin_dir().join("attach_switches"))
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout)
            .map(|v| v.as_array().map_or(0, Vec::len))
            .unwrap_or(0)
    };
    assert_eq!(switches(&lab), 1);
    detach(&lab, &c1).unwrap();
    assert_eq!(switches(&lab), 1, "the switch went with a port left");
    lab.attach()
        .ok(&["check", "--netns", c2.ns.name()])
        .unwrap();
    detach(&lab, &c2).unwrap();
    assert!(
        !lab.node_pin_dir().exists(),
        "pins left after the last port"
    );
    let out = lab.attach().ok(&["del", "--netns", c2.ns.name()]).unwrap();
    assert!(out.contains("nothing attached"), "{out}");
}
