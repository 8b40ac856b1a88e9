//! Drift: `check` sees it and `reconcile` repairs it in place.

use attach_tests::{
    kinds::detach_port_hook,
    lab::require_root,
    lab::{EXT_V4, Lab, ping},
    reach::{Endpoint, mac_of},
    report::reconcile,
};
use serde_json::{Value, json};

use super::*;

/// `check` sees drift and `reconcile` repairs it in place: the static FDB
/// entry, the port's program, the uplink's program (ebpf); the bridge
/// port, its VLAN, the guard (native). Aged FDB entries are swept.
#[test]
fn reconcile_repairs_the_bridge() {
    require_root();
    for backend in BACKENDS {
        let lab = Lab::new().unwrap();
        let vlans = node_bridge(&lab, backend, true) || backend == "ebpf";
        let up = wire(&lab, backend);
        let c1 = port(&lab, 1, backend, &up);
        let vlan: &[&str] = if vlans { &["--vlan", "10"] } else { &[] };
        let c2 = port(&lab, 2, backend, &[vlan, &["--isolated"]].concat());
        let c3 = port(&lab, 3, backend, vlan);
        assert!(reconcile(&lab).is_empty(), "{backend}: a healthy node");
        let host = |c: &Endpoint| {
            lab.record(&c.ns)["host_ifname"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let index = |c: &Endpoint| lab.record(&c.ns)["host_ifindex"].as_u64().unwrap() as u32;
        let mut drifts: Vec<(&str, Drift)> = Vec::new();
        let (h1, h2) = (host(&c1), host(&c2));
        let (node, h) = (lab.node().path().to_owned(), h2.clone());
        drifts.push((
            "transmit program",
            Box::new(move || detach_port_hook(&node, &h)),
        ));
        if backend == "ebpf" {
            let pins = lab.node_pin_dir();
            let sid = lab.record(&c2.ns)["switch_id"].as_u64().unwrap() as u32;
            let mac = mac_of(2);
            drifts.push((
                "static FDB entry",
                Box::new(move || {
                    let mut key: Vec<String> =
                        sid.to_le_bytes().iter().map(u8::to_string).collect();
                    key.extend(10u16.to_le_bytes().iter().map(u8::to_string));
                    key.extend(
                        mac.split(':')
                            .map(|b| u8::from_str_radix(b, 16).unwrap().to_string()),
                    );
                    bpftool_map(&pins.join("attach_sw_fdb"), "delete", &key, &[]);
                }),
            ));
            let pins = lab.node_pin_dir();
            let nic = nic_index(&lab);
            drifts.push((
                "uplink program",
                Box::new(move || {
                    std::fs::remove_file(pins.join(format!("links/uplink-{nic}-sw"))).unwrap()
                }),
            ));
        } else {
            let node = lab.node().path().to_owned();
            let h = h1.clone();
            drifts.push((
                "bridge port",
                Box::new(move || nsenter(&node, &["ip", "link", "set", &h, "nomaster"])),
            ));
            let node = lab.node().path().to_owned();
            let h = h2.clone();
            drifts.push((
                "isolated flag",
                Box::new(move || {
                    let off = [
                        "ip",
                        "link",
                        "set",
                        &h,
                        "type",
                        "bridge_slave",
                        "isolated",
                        "off",
                    ];
                    nsenter(&node, &off)
                }),
            ));
            if vlans {
                let node = lab.node().path().to_owned();
                let h = h2.clone();
                drifts.push((
                    "VLAN",
                    Box::new(move || {
                        nsenter(&node, &["bridge", "vlan", "add", "dev", &h, "vid", "20"])
                    }),
                ));
            }
        }
        for (what, drift) in &drifts {
            drift();
            let bad = [&c1, &c2].iter().any(|c| {
                !lab.attach()
                    .run(&["check", "--netns", c.ns.name()])
                    .unwrap()
                    .status
                    .success()
            });
            assert!(bad, "{backend}: check did not see the {what} drift");
            let r = reconcile(&lab);
            assert!(
                !r.is_empty() && r.iter().all(|r| r["action"] == "repaired"),
                "{backend}: {what}: {r:?}"
            );
            assert!(
                reconcile(&lab).is_empty(),
                "{backend}: {what}: a second pass"
            );
            for c in [&c1, &c2] {
                lab.attach().ok(&["check", "--netns", c.ns.name()]).unwrap();
            }
            forget(&[&c1.ns, &c2.ns, &c3.ns, lab.ext()]);
            assert!(
                ping(&c1.ns, EXT_V4),
                "{backend}: {what}: c1 -> ext after repair"
            );
            assert!(
                ping(&c2.ns, &c3.v6),
                "{backend}: {what}: c2 -> c3 after repair"
            );
        }
        if backend == "ebpf" {
            // An aged learned entry (and one behind no port) is swept.
            let sid = lab.record(&c2.ns)["switch_id"].as_u64().unwrap() as u32;
            let fdb = lab.node_pin_dir().join("attach_sw_fdb");
            for (mac, port) in [(0x71u8, index(&c2)), (0x72, 999_999)] {
                let mut key: Vec<String> = sid.to_le_bytes().iter().map(u8::to_string).collect();
                key.extend(["0", "0", "2", "0", "0", "0", "0"].map(String::from));
                key.push(mac.to_string());
                let mut value: Vec<String> = port.to_le_bytes().iter().map(u8::to_string).collect();
                value.extend((0..12).map(|_| "0".to_owned()));
                value[8] = "1".into(); // seen_ns = 1: long ago
                bpftool_map(&fdb, "update", &key, &value);
            }
            let count = |lab: &Lab| {
                let out = std::process::Command::new("bpftool")
                    .args(["-j", "map", "dump", "pinned"])
                    .arg(lab.node_pin_dir().join("attach_sw_fdb"))
                    .output()
                    .unwrap();
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                v.as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| {
                        // The whole MAC: a learned one may end in 0x71 too.
                        let mac = &e["formatted"]["key"]["mac"];
                        [0x71, 0x72]
                            .iter()
                            .any(|last| *mac == json!([2, 0, 0, 0, 0, last]))
                    })
                    .count()
            };
            assert_eq!(count(&lab), 2);
            assert!(reconcile(&lab).is_empty(), "sweeping is no repair");
            assert_eq!(count(&lab), 0, "aged entries not swept");
        }
        let _ = h2;
    }
}

/// Something changed behind the engine's back.
type Drift = Box<dyn Fn()>;

fn nic_index(lab: &Lab) -> u32 {
    let v = lab.node().ok(&["ip", "-j", "link", "show", NIC]).unwrap();
    let v: Value = serde_json::from_str(&v).unwrap();
    v[0]["ifindex"].as_u64().unwrap() as u32
}

fn nsenter(ns: &std::path::Path, argv: &[&str]) {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .arg("--")
        .args(argv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn bpftool_map(map: &std::path::Path, op: &str, key: &[String], value: &[String]) {
    let mut cmd = std::process::Command::new("bpftool");
    cmd.args(["map", op, "pinned"])
        .arg(map)
        .arg("key")
        .args(key);
    if !value.is_empty() {
        cmd.arg("value").args(value);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "bpftool map {op}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
