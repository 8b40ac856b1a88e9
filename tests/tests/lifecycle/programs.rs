//! The programs: loaded once per build and reused, upgraded under traffic
//! without a loss, and `upgrade` bringing old endpoints to this build's
//! offloads.

use attach_tests::{
    flow::{UdpFlow, rx_packets},
    kinds::port_hook_prog,
    lab::{EXT_V4, Lab, Netns, ping, require_root},
    reach::{Flavor, attach},
};
use serde_json::Value;

use super::*;

#[test]
fn upgrade_under_traffic_loses_nothing() {
    require_root();
    let lab = Lab::new().unwrap();
    for flavor in [Flavor::EbpfTc, Flavor::EbpfXdp] {
        let c1 = attach(&lab, 1, "bridge", flavor, &[]).unwrap();
        assert!(ping(&c1.ns, EXT_V4));
        let rec = lab.record(&c1.ns);
        let parent = rec["parent_ifindex"].as_u64().unwrap();
        let rx_pin = lab.node_pin_dir().join(format!("links/parent-{parent}-rx"));
        let before = link_id(&rx_pin);
        let flow = UdpFlow::start(&lab, &c1.ns, &c1.v4, 5201, 4).unwrap();
        // Under way before anything changes.
        let mut seen = flow
            .wait_passing(&c1.ns, "eth0", rx_packets(&c1.ns, "eth0").unwrap(), 200)
            .unwrap();
        for _ in 0..5 {
            let out = lab.attach().json(&["upgrade", "--force"]).unwrap();
            assert!(
                out.as_array()
                    .unwrap()
                    .iter()
                    .all(|l| l["action"] == "updated"),
                "{out}"
            );
            // The flow passes the upgraded datapath before the next upgrade.
            seen = flow.wait_passing(&c1.ns, "eth0", seen, 200).unwrap();
        }
        let (sent, lost) = flow.finish().unwrap();
        assert!(
            sent > 1000,
            "{}: the flow barely ran ({sent})",
            flavor.name()
        );
        assert_eq!(
            lost,
            0,
            "{}: {lost} of {sent} datagrams lost across upgrades",
            flavor.name()
        );
        assert_eq!(link_id(&rx_pin), before);
        // Without --force, nothing to do.
        let out = lab.attach().json(&["upgrade"]).unwrap();
        assert!(
            out.as_array()
                .unwrap()
                .iter()
                .all(|l| l["action"] == "kept"),
            "{out}"
        );
        lab.attach().ok(&["del", "--netns", c1.ns.name()]).unwrap();
    }
}

/// Each `add` takes this build's programs from the node's cache instead of
/// loading them again (a verifier pass each); `upgrade --force` loads them
/// afresh and caches those; the cache goes with the last attachment.
#[test]
fn programs_are_loaded_once_per_build_and_reused() {
    require_root();
    let lab = Lab::new().unwrap();
    let pins = lab.node_pin_dir();
    let cached = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(pins.join("progs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let tx_prog = |ns: &Netns| {
        port_hook_prog(
            lab.node().path(),
            lab.record(ns)["host_ifname"].as_str().unwrap(),
        )
        .unwrap()
    };

    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let names = cached();
    let build = names[0].rsplit('-').next().unwrap().to_owned();
    for prog in ["attach_rx", "attach_tx"] {
        assert!(
            names.contains(&format!("{prog}-{build}")),
            "{prog} of build {build} not cached: {names:?}"
        );
    }
    // Not needed without a --host-access endpoint: not even loaded.
    assert!(
        !names.iter().any(|n| n.starts_with("attach_host")),
        "{names:?}"
    );
    assert!(names.iter().all(|n| n.ends_with(&build)), "{names:?}");
    let tx_pin = pins.join(format!("progs/attach_tx-{build}"));
    let first = tx_prog(&c1.ns);
    assert_eq!(bpftool_show("prog", &tx_pin)["id"], first);

    let c2 = attach(&lab, 2, "bridge", Flavor::EbpfTc, &[]).unwrap();
    assert_eq!(
        tx_prog(&c2.ns),
        first,
        "the second add loaded attach_tx again"
    );
    assert_eq!(cached(), names);

    lab.attach().ok(&["upgrade", "--force"]).unwrap();
    let fresh = tx_prog(&c1.ns);
    assert_ne!(fresh, first, "upgrade --force kept the cached program");
    assert_eq!(tx_prog(&c2.ns), fresh);
    assert_eq!(bpftool_show("prog", &tx_pin)["id"], fresh);
    assert!(ping(&c2.ns, EXT_V4));

    for c in [&c1, &c2] {
        lab.attach().ok(&["del", "--netns", c.ns.name()]).unwrap();
    }
    assert!(
        !pins.exists(),
        "the node's pins (and the cache) outlived its last attachment"
    );
}

/// An XDP endpoint attached by a build before fraglist GRO lacks it in its
/// container; `upgrade` turns it on where it is off (and touches no other
/// endpoint) and says so.
#[test]
fn upgrade_brings_xdp_containers_to_this_builds_offloads() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfXdp, &[]).unwrap();
    let c2 = attach(&lab, 2, "bridge", Flavor::EbpfXdp, &[]).unwrap();
    let gro_list = |ns: &Netns| {
        let f = ns.ok(&["ethtool", "-k", "eth0"]).unwrap();
        f.contains("rx-gro-list: on")
    };
    assert!(gro_list(&c1.ns) && gro_list(&c2.ns));
    c1.ns
        .ok(&["ethtool", "-K", "eth0", "rx-gro-list", "off"])
        .unwrap();

    let out = lab.attach().json(&["upgrade"]).unwrap();
    let entries = out.as_array().unwrap();
    let settings: Vec<&Value> = entries
        .iter()
        .filter(|e| e.get("setting").is_some())
        .collect();
    assert_eq!(settings.len(), 1, "{out}");
    let s = settings[0];
    assert_eq!(s["netns"], c1.ns.name(), "{out}");
    assert_eq!(s["interface"], "eth0", "{out}");
    assert_eq!(s["setting"], "rx-gro-list", "{out}");
    assert_eq!(s["action"], "updated", "{out}");
    assert!(
        entries
            .iter()
            .filter(|e| e.get("link").is_some())
            .all(|l| l["action"] == "kept"),
        "{out}"
    );
    assert!(gro_list(&c1.ns), "not turned on");

    // Done once: nothing more to do.
    let again = lab.attach().json(&["upgrade"]).unwrap();
    assert!(
        again
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e.get("setting").is_none()),
        "{again}"
    );
    // The text names it too.
    c1.ns
        .ok(&["ethtool", "-K", "eth0", "rx-gro-list", "off"])
        .unwrap();
    let text = lab.attach().ok(&["upgrade"]).unwrap();
    assert!(
        text.contains(&format!("eth0 in {}: fraglist GRO turned on", c1.ns.name())),
        "{text}"
    );
    assert!(ping(&c1.ns, EXT_V4));
}
