//! Drift in the XDP side of a parent's switch: its XDP link detached or
//! unpinned by hand, a port's device-map entry deleted. `check` names each
//! (the endpoint and what is missing), `reconcile` puts it back, traffic
//! flows again.

use std::{path::Path, process::Command, time::Duration};

use attach_tests::{
    lab::{EXT_V4, Lab, NODE_IF, ping, ping_within, require_root},
    reach::{Endpoint, Flavor, attach},
};
use serde_json::Value;

fn bpftool(args: &[&str]) {
    let out = Command::new("bpftool").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "bpftool {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The XDP program ids the node's parent reports (`ip -d link`).
fn parent_xdp(lab: &Lab) -> Option<Value> {
    let out = lab
        .node()
        .ok(&["ip", "-j", "-d", "link", "show", NODE_IF])
        .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0].get("xdp").cloned()
}

/// `check --all` fails (exit 1), naming every one of `names`.
fn check_all_fails(lab: &Lab, names: &[&str]) -> String {
    let out = lab.attach().run(&["check", "--all"]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    for n in names {
        assert!(err.contains(n), "check --all does not name {n:?}: {err}");
    }
    err
}

/// `reconcile` repairs in place (no recreation) what drifted: the parent's
/// pieces are shared, so repairing the first endpoint of `eps` mends the
/// others too. Nothing else is touched.
fn reconcile_repairs(lab: &Lab, eps: &[&Endpoint]) {
    let r = lab.attach().json(&["reconcile"]).unwrap();
    let repairs = r.as_array().unwrap();
    assert!(
        repairs.iter().any(|x| x["netns"] == eps[0].ns.name()),
        "{r}"
    );
    for x in repairs {
        assert!(
            x["action"] == "repaired" && eps.iter().any(|ep| x["netns"] == ep.ns.name()),
            "{r}"
        );
    }
    lab.attach().ok(&["check", "--all"]).unwrap();
}

/// Both endpoints reach the wire and each other again.
fn traffic_works(lab: &Lab, c1: &Endpoint, c2: &Endpoint) {
    for (from, to) in [(&c1.ns, EXT_V4), (&c2.ns, EXT_V4), (&c1.ns, c2.v4.as_str())] {
        assert!(
            ping_within(from, to, Duration::from_secs(5)),
            "{} -> {to}",
            from.name()
        );
    }
    assert!(ping_within(lab.ext(), &c1.v4, Duration::from_secs(5)));
}

fn ep_name(ep: &Endpoint) -> String {
    format!("eth0 in {}", ep.ns.name())
}

#[test]
fn a_detached_or_unpinned_xdp_link_is_checked_and_reattached() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfXdp, &[]).unwrap();
    let c2 = attach(&lab, 2, "bridge", Flavor::EbpfXdp, &[]).unwrap();
    assert!(ping(&c1.ns, EXT_V4));
    lab.attach().ok(&["check", "--all"]).unwrap();
    assert!(parent_xdp(&lab).is_some(), "no XDP on {NODE_IF}");
    let parent = lab.record(&c1.ns)["parent_ifindex"].as_u64().unwrap();
    let pin = lab
        .node_pin_dir()
        .join(format!("links/parent-{parent}-xdp"));
    let pin_s = pin.to_str().unwrap();

    // Detached: the pin stays, the hook is empty.
    bpftool(&["link", "detach", "pinned", pin_s]);
    assert!(pin.exists());
    assert_eq!(parent_xdp(&lab), None, "the detach did not land");
    let err = check_all_fails(&lab, &[&ep_name(&c1), &ep_name(&c2), "was detached"]);
    assert!(err.contains(&format!("the XDP program of {NODE_IF} is not attached")));
    reconcile_repairs(&lab, &[&c1, &c2]);
    assert!(parent_xdp(&lab).is_some(), "XDP not back on {NODE_IF}");
    traffic_works(&lab, &c1, &c2);

    // Unpinned: the link goes with its pin.
    std::fs::remove_file(&pin).unwrap();
    assert_eq!(parent_xdp(&lab), None, "removing the pin did not detach");
    check_all_fails(&lab, &[&ep_name(&c1), &ep_name(&c2), "is gone"]);
    reconcile_repairs(&lab, &[&c1, &c2]);
    assert!(pin.exists() && parent_xdp(&lab).is_some());
    traffic_works(&lab, &c1, &c2);
}

#[test]
fn a_deleted_device_map_entry_is_checked_and_put_back() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfXdp, &[]).unwrap();
    let c2 = attach(&lab, 2, "bridge", Flavor::EbpfXdp, &[]).unwrap();
    assert!(ping(&c1.ns, EXT_V4));
    let rec = lab.record(&c1.ns);
    let host_index = rec["host_ifindex"].as_u64().unwrap() as u32;
    let host_name = rec["host_ifname"].as_str().unwrap().to_owned();
    let devs = lab.node_pin_dir().join("attach_devs");
    let key: Vec<String> = host_index
        .to_le_bytes()
        .iter()
        .map(|b| b.to_string())
        .collect();
    let mut args = vec!["map", "delete", "pinned", devs.to_str().unwrap(), "key"];
    args.extend(key.iter().map(String::as_str));
    bpftool(&args);
    assert!(!has_key(&devs, host_index), "the delete did not land");

    let err = check_all_fails(&lab, &[&ep_name(&c1), &host_name, "device map"]);
    assert!(err.contains("1 of 2 attachments drifted"), "{err}");
    assert!(!err.contains(c2.ns.name()), "{err}");
    reconcile_repairs(&lab, &[&c1]);
    assert!(has_key(&devs, host_index), "not put back");
    traffic_works(&lab, &c1, &c2);
}

/// Whether the pinned device map holds `ifindex`.
fn has_key(map: &Path, ifindex: u32) -> bool {
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(map)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v.as_array().into_iter().flatten().any(|e| {
        let key: Vec<u8> = e["key"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| u8::from_str_radix(b.as_str()?.trim_start_matches("0x"), 16).ok())
            .collect();
        key == ifindex.to_le_bytes()
    })
}

/// The MACs in the parent's unicast filter.
fn unicast_filter(lab: &Lab) -> String {
    lab.node()
        .ok(&["bridge", "fdb", "show", "dev", NODE_IF])
        .unwrap()
}

/// A MAC changed inside the container: a kernel macvlan takes it on, and so
/// do ours once `reconcile` has run (until then their source check drops
/// the container's frames, and `check` names the change): the receive
/// entry, the source check, the flood row, the parent's unicast filter and
/// the record all follow the container's MAC.
#[test]
fn a_mac_changed_in_the_container_is_taken_on() {
    require_root();
    let lab = Lab::new().unwrap();
    let new = "02:a7:00:00:01:01";
    for flavor in Flavor::ALL {
        let c1 = attach(&lab, 1, "bridge", flavor, &[]).unwrap();
        let c2 = attach(&lab, 2, "bridge", flavor, &[]).unwrap();
        assert!(ping(lab.ext(), &c1.v4), "{}", flavor.name());
        let old = lab.record(&c1.ns)["mac"].as_str().unwrap().to_owned();
        c1.ns
            .ok(&["ip", "link", "set", "eth0", "address", new])
            .unwrap();
        for ns in [lab.ext(), &*c1.ns] {
            ns.ok(&["ip", "neigh", "flush", "all"]).unwrap();
        }
        if flavor != Flavor::Native {
            assert!(
                !ping(lab.ext(), &c1.v4),
                "{}: the source check should drop the new MAC until reconcile",
                flavor.name()
            );
        }
        let out = lab
            .attach()
            .run(&["check", "--netns", c1.ns.name()])
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", flavor.name());
        assert!(
            err.contains(&format!(
                "its MAC was changed to {new} (attached with {old})"
            )),
            "{}: {err}",
            flavor.name()
        );
        let r = lab.attach().json(&["reconcile"]).unwrap();
        let action = r
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["netns"] == c1.ns.name())
            .and_then(|x| x["action"].as_str());
        let want = format!("took on the MAC {new}");
        assert_eq!(action, Some(want.as_str()), "{}: {r}", flavor.name());
        lab.attach().ok(&["check", "--all"]).unwrap();
        assert_eq!(lab.record(&c1.ns)["mac"], new, "{}", flavor.name());
        if flavor != Flavor::Native {
            let filter = unicast_filter(&lab);
            assert!(
                filter.contains(new) && !filter.contains(&old),
                "{}: {filter}",
                flavor.name()
            );
        }
        lab.ext().ok(&["ip", "neigh", "flush", "all"]).unwrap();
        assert!(
            ping_within(lab.ext(), &c1.v4, Duration::from_secs(5)),
            "{}: the wire cannot reach c1 with its new MAC",
            flavor.name()
        );
        assert!(
            ping_within(&c1.ns, &c2.v4, Duration::from_secs(5)),
            "{}: c1 cannot reach c2",
            flavor.name()
        );
        for c in [&c1, &c2] {
            lab.attach().ok(&["del", "--netns", c.ns.name()]).unwrap();
        }
        let filter = unicast_filter(&lab);
        assert!(
            !filter.contains(new) && !filter.contains(&old),
            "{}: left after del: {filter}",
            flavor.name()
        );
    }
}

/// The 4 bytes of `v` as bpftool takes them.
fn le_bytes(v: u32) -> Vec<String> {
    v.to_le_bytes().iter().map(|b| b.to_string()).collect()
}

/// The first 4 bytes of the value at key `key` (a u32) of pinned map `map`.
fn lookup_u32(map: &Path, key: u32) -> u32 {
    let mut args = vec![
        "-j",
        "map",
        "lookup",
        "pinned",
        map.to_str().unwrap(),
        "key",
    ];
    let key = le_bytes(key);
    args.extend(key.iter().map(String::as_str));
    let out = Command::new("bpftool").args(&args).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bytes: Vec<u8> = v["value"].as_array().unwrap()[..4]
        .iter()
        .map(|b| u8::from_str_radix(b.as_str().unwrap().trim_start_matches("0x"), 16).unwrap())
        .collect();
    u32::from_le_bytes(bytes.try_into().unwrap())
}

/// A flood row that lists one endpoint twice and the other not at all (its
/// count right): a broadcast from the wire never reaches the second. `check`
/// names the row, `reconcile` writes it anew from the records, and the
/// wire reaches both again.
#[test]
fn a_flood_row_listing_the_wrong_endpoints_is_checked_and_rewritten() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let c2 = attach(&lab, 2, "bridge", Flavor::EbpfTc, &[]).unwrap();
    traffic_works(&lab, &c1, &c2);
    let parent = lab.record(&c1.ns)["parent_ifindex"].as_u64().unwrap() as u32;
    let pins = lab.node_pin_dir();
    let slot = lookup_u32(&pins.join("attach_parents"), parent);
    let row = pins.join("attach_flood_id");
    let first = slot * attach_common::MAX_PORTS_PER_PARENT;
    let id = lookup_u32(&row, first);
    let (key, value) = (le_bytes(first + 1), le_bytes(id));
    let mut args = vec!["map", "update", "pinned", row.to_str().unwrap(), "key"];
    args.extend(key.iter().map(String::as_str));
    args.push("value");
    args.extend(value.iter().map(String::as_str));
    bpftool(&args);
    lab.ext().ok(&["ip", "neigh", "flush", "all"]).unwrap();
    let unflooded = [&c1, &c2]
        .into_iter()
        .find(|c| !ping(lab.ext(), &c.v4))
        .expect("the row as written still floods to both endpoints");

    let err = check_all_fails(
        &lab,
        &[&format!(
            "the flood row of parent ifindex {parent} lists endpoint id {id} twice"
        )],
    );
    assert!(!err.contains("port(s), its attachments"), "{err}");
    let r = lab.attach().json(&["reconcile"]).unwrap();
    assert!(
        r.as_array().unwrap().iter().any(
            |x| x["action"] == "rewritten" && x["ifname"] == format!("parent ifindex {parent}")
        ),
        "{r}"
    );
    lab.attach().ok(&["check", "--all"]).unwrap();
    lab.ext().ok(&["ip", "neigh", "flush", "all"]).unwrap();
    assert!(
        ping_within(lab.ext(), &unflooded.v4, Duration::from_secs(5)),
        "the wire still cannot reach {}",
        unflooded.ns.name()
    );
    traffic_works(&lab, &c1, &c2);
}
