//! Things changed behind the engine's back: `check` names them and
//! `reconcile` repairs them (the endpoint cache, the datapath's maps and
//! links, the host program, deleted parents and uplinks, GRO turned off).

use attach_tests::{
    kinds::{add_macvlan, detach_port_hook, in_ns},
    lab::{EXT_V4, Lab, Netns, ping, require_root},
    reach::{Flavor, attach, attach_refused},
    report::reconcile,
    snapshot::{links, snapshot},
};
use serde_json::Value;

use super::*;

/// The endpoint cache in front of the receive table: a slot emptied costs
/// only speed (the table answers) and `check` names it; a slot holding what
/// the table does not would send a frame to the wrong container, so `check`
/// names that too, and `reconcile` puts both right; a slot a dead writer
/// left half written is skipped by the programs and rewritten the same way.
#[test]
fn the_endpoint_cache_is_checked_and_repaired() {
    use attach::ep_cache::EpCache;
    use attach_common::Endpoint as Entry;
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    // tc and xdp on one parent are refused, as a conflict naming the parent's.
    attach_refused(
        &lab,
        2,
        "bridge",
        Flavor::EbpfXdp,
        &[],
        4,
        "uses the tc datapath",
    );
    let c2 = attach(&lab, 2, "bridge", Flavor::EbpfTc, &[]).unwrap();
    lab.attach().ok(&["check", "--all"]).unwrap();
    let pins = lab.node_pin_dir();
    let rec = |c: &attach_tests::reach::Endpoint| lab.record(&c.ns);
    let entry = |r: &Value| Entry {
        host_ifindex: r["host_ifindex"].as_u64().unwrap() as u32,
        parent_ifindex: r["parent_ifindex"].as_u64().unwrap() as u32,
        id: r["endpoint_id"].as_u64().unwrap() as u32,
        mac: mac_bytes(r["mac"].as_str().unwrap()),
        mode: 0,
        flags: 0,
    };
    let (r1, r2) = (rec(&c1), rec(&c2));
    let (e1, e2) = (entry(&r1), entry(&r2));
    let cache = |f: &(dyn Fn(&mut EpCache, &mut attach::datapath::Datapath) + Sync)| {
        lab.in_node(|| {
            let mut dp = attach::datapath::Datapath::open(&pins).unwrap();
            let mut cache = dp.ep_cache().unwrap();
            f(&mut cache, &mut dp);
        })
    };
    // Both endpoints are in the cache, as the table has them.
    let both_cached = || {
        cache(&|c, dp| {
            for e in [&e1, &e2] {
                let slot = attach_common::ep_cache_slot(e.parent_ifindex, &e.mac);
                assert_eq!(c.read(slot), dp.endpoint(e.parent_ifindex, e.mac).unwrap());
            }
        })
    };
    both_cached();

    // (a) c1's slot emptied: the table still delivers; check names it.
    cache(&|c, _| c.remove(e1.parent_ifindex, &e1.mac));
    assert!(ping_afresh(&c1.ns, EXT_V4), "the table must answer a miss");
    check_fails(&lab, &c1.ns, "missing from the endpoint cache");
    let r = reconcile(&lab);
    assert_eq!(action_for(&r, c1.ns.name()), Some("repaired"), "{r:?}");
    lab.attach().ok(&["check", "--all"]).unwrap();

    // (b) c2's slot pointing at c1's veth: c2's frames would go to c1.
    cache(&|c, dp| {
        let mut wrong = dp.endpoint(e2.parent_ifindex, e2.mac).unwrap().unwrap();
        wrong.host_ifindex = e1.host_ifindex;
        c.put(&wrong);
    });
    assert!(
        !ping_afresh(&c2.ns, EXT_V4),
        "c2's replies went to c1's veth"
    );
    check_fails(&lab, &c2.ns, "stale entry");
    let r = reconcile(&lab);
    assert_eq!(action_for(&r, c2.ns.name()), Some("repaired"), "{r:?}");
    assert!(ping_afresh(&c2.ns, EXT_V4));

    // (c) a slot for a MAC the table lacks (as a build without the cache
    // would leave behind by removing an endpoint): emptied by reconcile.
    let ghost = Entry {
        mac: mac_bytes("02:a7:00:00:00:99"),
        ..e1
    };
    cache(&|c, _| c.put(&ghost));
    let out = lab.attach().run(&["check", "--all"]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1)
            && err.contains("0 of 2 attachments drifted, and the node")
            && err.contains("the endpoint cache holds 1 slot(s)")
            && err.contains("02:a7:00:00:00:99"),
        "{err}"
    );
    let r = reconcile(&lab);
    assert_eq!(action_for(&r, "endpoint cache"), Some("emptied"), "{r:?}");
    cache(&|c, _| {
        let slot = attach_common::ep_cache_slot(ghost.parent_ifindex, &ghost.mac);
        assert_eq!(c.read(slot), Some(Entry::default()));
    });
    assert!(reconcile(&lab).is_empty(), "nothing left to repair");
    lab.attach().ok(&["check", "--all"]).unwrap();

    // (d) c1's slot left half written (its writer died between its
    // stores): the programs skip it, check names it, reconcile rewrites it.
    lab.in_node(|| {
        use aya::maps::{Array, Map, MapData};
        let data = MapData::from_pin(pins.join(attach_common::MAP_EP_CACHE)).unwrap();
        let mut slots: Array<_, attach_common::EpCacheSlot> =
            Array::try_from(Map::Array(data)).unwrap();
        let slot = attach_common::ep_cache_slot(e1.parent_ifindex, &e1.mac);
        let mut torn = slots.get(&slot, 0).unwrap();
        torn.seq = attach_common::EP_CACHE_WRITING;
        torn.ep.host_ifindex = e2.host_ifindex;
        slots.set(slot, &torn, 0).unwrap();
    });
    assert!(
        ping_afresh(&c1.ns, EXT_V4),
        "a half-written slot is skipped"
    );
    check_fails(&lab, &c1.ns, "left half written");
    let r = reconcile(&lab);
    assert_eq!(action_for(&r, c1.ns.name()), Some("repaired"), "{r:?}");
    both_cached();
    lab.attach().ok(&["check", "--all"]).unwrap();

    // (e) endpoints made by a build without the cache (an empty one):
    // `upgrade` fills it before its programs take the hooks.
    cache(&|c, _| {
        assert_eq!(c.sync(&[]).stale, 2, "both endpoints were cached");
    });
    let up = lab.attach().json(&["upgrade"]).unwrap();
    assert!(
        up.as_array()
            .unwrap()
            .iter()
            .any(|e| e["map"] == "attach_ep_cache" && e["action"] == "filled" && e["slots"] == 2),
        "{up}"
    );
    both_cached();
    lab.attach().ok(&["check", "--all"]).unwrap();
    assert!(ping_afresh(&c1.ns, EXT_V4) && ping_afresh(&c2.ns, EXT_V4));
}

/// `attach check` of the attachment in `ns` fails, naming `what`.
fn check_fails(lab: &Lab, ns: &Netns, what: &str) {
    let out = lab.attach().run(&["check", "--netns", ns.name()]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(what), "{err}");
}

fn mac_bytes(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

#[test]
fn reconcile_repairs_drift() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let c2 = attach(&lab, 2, "bridge", Flavor::EbpfTc, &[]).unwrap();
    // xdp beside tc on one parent is refused, as a conflict naming the
    // parent's.
    attach_refused(
        &lab,
        3,
        "vepa",
        Flavor::EbpfXdp,
        &[],
        4,
        "uses the tc datapath",
    );
    assert!(reconcile(&lab).is_empty(), "a healthy node needs no repair");
    let healthy = lab.attach().json(&["check", "--all"]).unwrap();
    assert_eq!(healthy["ok"], true, "{healthy}");
    assert_eq!(healthy["attachments"].as_array().unwrap().len(), 2);

    // (a) c1's veth deleted behind the engine's back: recreated.
    let host = lab.record(&c1.ns)["host_ifname"]
        .as_str()
        .unwrap()
        .to_owned();
    lab.node().ok(&["ip", "link", "del", &host]).unwrap();
    assert!(!ping(&c1.ns, EXT_V4));
    // `check --all` names the drifted one alone, and fails.
    let out = lab.attach().run(&["check", "--all"]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("1 of 2 attachments drifted")
            && err.contains(&format!("eth0 in {}", c1.ns.name()))
            && !err.contains(c2.ns.name()),
        "{err}"
    );
    let r = reconcile(&lab);
    assert_eq!(action_for(&r, c1.ns.name()), Some("recreated"), "{r:?}");
    lab.attach().ok(&["check", "--all"]).unwrap();
    assert!(ping(&c1.ns, EXT_V4), "c1 not back after recreation");

    // (b) c2's port entry removed from the map: repaired in place.
    let rec = lab.record(&c2.ns);
    let host_index = rec["host_ifindex"].as_u64().unwrap() as u32;
    let key: Vec<String> = host_index
        .to_le_bytes()
        .iter()
        .map(|b| b.to_string())
        .collect();
    let mut args = vec!["map", "delete", "pinned"];
    let map = lab.node_pin_dir().join("attach_ports");
    let map = map.to_str().unwrap();
    args.extend([map, "key"]);
    args.extend(key.iter().map(String::as_str));
    let out = std::process::Command::new("bpftool")
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !ping(&c2.ns, EXT_V4),
        "c2 should be cut off without its port entry"
    );
    let r = reconcile(&lab);
    assert_eq!(action_for(&r, c2.ns.name()), Some("repaired"), "{r:?}");
    assert!(ping_afresh(&c2.ns, EXT_V4));
    assert_eq!(
        lab.record(&c2.ns)["host_ifindex"],
        rec["host_ifindex"],
        "repair must not recreate"
    );

    // (c) c2's transmit program detached: repaired.
    detach_port_hook(
        lab.node().path(),
        lab.record(&c2.ns)["host_ifname"].as_str().unwrap(),
    );
    let r = reconcile(&lab);
    assert_eq!(action_for(&r, c2.ns.name()), Some("repaired"), "{r:?}");
    assert!(ping_afresh(&c2.ns, EXT_V4));

    // (d) another program put on the parent's receive link: switched back,
    // in place (same link).
    let parent = rec["parent_ifindex"].as_u64().unwrap();
    let rx_pin = lab.node_pin_dir().join(format!("links/parent-{parent}-rx"));
    let before = link_id(&rx_pin);
    let pins = lab.node_pin_dir();
    lab.in_node(|| {
        use aya::programs::links::{FdLink, PinnedLink};
        let mut dp = attach::datapath::Datapath::open(&pins).unwrap();
        let wrong = dp.classifier(attach::datapath::PROG_HOST).unwrap();
        let link = FdLink::from(PinnedLink::from_pin(&rx_pin).unwrap());
        wrong.attach_to_link(link.try_into().unwrap()).unwrap();
    });
    let check = lab
        .attach()
        .run(&["check", "--netns", c2.ns.name()])
        .unwrap();
    assert!(!check.status.success(), "check must see the wrong program");
    assert!(String::from_utf8_lossy(&check.stderr).contains("not this build"));
    let r = reconcile(&lab);
    assert!(r.iter().any(|x| x["action"] == "repaired"), "{r:?}");
    assert_eq!(
        link_id(&rx_pin),
        before,
        "the link must be updated, not replaced"
    );
    lab.attach()
        .ok(&["check", "--netns", c2.ns.name()])
        .unwrap();

    // (e) c1's namespace deleted: detached. (f) a leftover veth: deleted.
    lab.node()
        .ok(&[
            "ip",
            "link",
            "add",
            "atkdeadbeef0",
            "type",
            "veth",
            "peer",
            "name",
            "atkdeadbeef1",
        ])
        .unwrap();
    let c1_name = c1.ns.name().to_owned();
    drop(c1);
    lab.drop_container("c1");
    let r = reconcile(&lab);
    assert_eq!(
        action_for(&r, &c1_name),
        Some("detached: its network namespace is gone"),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|x| x["ifname"] == "atkdeadbeef0" && x["action"] == "deleted"),
        "{r:?}"
    );
    assert!(
        reconcile(&lab).is_empty(),
        "a second pass must find nothing"
    );
    lab.attach()
        .ok(&["check", "--netns", c2.ns.name()])
        .unwrap();
}

/// The parent's egress program switches only the node's frames to
/// `--host-access` endpoints: it is on the parent exactly while one of its
/// endpoints has host access, so the node's own traffic otherwise leaves
/// with no program on its way. `check` and `reconcile` agree either way.
#[test]
fn the_host_program_is_on_the_parent_only_for_host_access() {
    require_root();
    let lab = Lab::new().unwrap();
    let host_pin = || -> Option<std::path::PathBuf> {
        std::fs::read_dir(lab.node_pin_dir().join("links"))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-host"))
    };
    let links = || -> Vec<u64> {
        let out = in_ns(lab.node().path(), &["bpftool", "-j", "link", "show"]);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["id"].as_u64())
            .collect()
    };
    let checked = |ns: &Netns| lab.attach().ok(&["check", "--netns", ns.name()]).unwrap();

    let plain = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    assert_eq!(host_pin(), None);
    checked(&plain.ns);

    let reached = attach(&lab, 2, "bridge", Flavor::EbpfTc, &["--host-access"]).unwrap();
    let pin = host_pin().expect("the host program's link is pinned");
    let out = in_ns(
        lab.node().path(),
        &[
            "bpftool",
            "-j",
            "link",
            "show",
            "pinned",
            &pin.to_string_lossy(),
        ],
    );
    let link = serde_json::from_slice::<Value>(&out.stdout).unwrap()["id"]
        .as_u64()
        .expect("a live link behind the pin");
    assert!(
        ping(lab.node(), &reached.v4),
        "the node reaches its endpoint"
    );
    checked(&plain.ns);
    checked(&reached.ns);
    assert_eq!(reconcile(&lab), Vec::<Value>::new());

    lab.attach()
        .ok(&["del", "--netns", reached.ns.name()])
        .unwrap();
    assert_eq!(host_pin(), None);
    assert!(
        !links().contains(&link),
        "the host program's link outlived its last endpoint"
    );
    checked(&plain.ns);
    assert!(ping(&plain.ns, EXT_V4));
    lab.attach()
        .ok(&["del", "--netns", plain.ns.name()])
        .unwrap();
}

/// The parent device deleted (a NIC unplugged): `check --all` names it, and
/// `reconcile` detaches its endpoints, eBPF and native alike, as the kernel
/// does with a deleted device's macvlans; nothing of them is left. Made
/// again under its name before `reconcile` (a NIC reset, a VF made anew),
/// the endpoints move to the new device and work again.
#[test]
fn a_deleted_parent_detaches_or_moves_its_endpoints() {
    require_root();
    let lab = Lab::new().unwrap();
    let cs = lab.containers(4).unwrap();
    let refs: Vec<&Netns> = cs.iter().map(|c| &**c).collect();
    let before = snapshot(&lab, &refs);
    let node = lab.node();
    let make_parent = || lab.add_veth("eth2").unwrap();
    // c1, c2 eBPF; c3, c4 native; bridge mode: each pair reaches itself.
    let attach_all = || {
        for (i, c) in cs.iter().enumerate() {
            let ip = format!("10.78.0.{}/24", i + 2);
            let backend = if i < 2 { "ebpf" } else { "native" };
            lab.attach()
                .ok(&add_macvlan("eth2", c, &ip, &["--backend", backend]))
                .unwrap();
        }
    };
    let assert_pairs_reach = |when: &str| {
        let (ebpf, native) = (ping(&cs[0], "10.78.0.3"), ping(&cs[2], "10.78.0.5"));
        assert!(
            ebpf && native,
            "{when}: eBPF pair {ebpf}, native pair {native}"
        );
    };
    let actions = || {
        let r = reconcile(&lab);
        let a: Vec<&str> = cs.iter().filter_map(|c| action_for(&r, c.name())).collect();
        (a.iter().map(|s| s.to_string()).collect::<Vec<_>>(), r)
    };

    make_parent();
    attach_all();
    assert_pairs_reach("attached");
    node.ok(&["ip", "link", "del", "eth2"]).unwrap();
    let out = lab.attach().run(&["check", "--all"]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("parent eth2 (ifindex").count(), 4, "{err}");
    let (acts, r) = actions();
    assert_eq!(acts, vec!["detached: its parent is gone"; 4], "{r:?}");
    assert_eq!(lab.attach().json(&["list"]).unwrap(), Value::Array(vec![]));
    assert_eq!(snapshot(&lab, &refs), before);

    // Deleted and made again before reconcile.
    make_parent();
    attach_all();
    node.ok(&["ip", "link", "del", "eth2"]).unwrap();
    make_parent();
    let index = links(node)
        .into_iter()
        .find(|l| l["ifname"] == "eth2")
        .map(|l| l["ifindex"].clone())
        .unwrap();
    let (acts, r) = actions();
    let moved = format!("recreated on the new eth2 (ifindex {index})");
    assert_eq!(acts, vec![moved; 4], "{r:?}");
    lab.attach().ok(&["check", "--all"]).unwrap();
    assert_pairs_reach("on the new parent");
    for c in &cs {
        lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
    }
    node.ok(&["ip", "link", "del", "eth2"]).unwrap();
    assert_eq!(snapshot(&lab, &refs), before);
}

/// The uplinks of a router endpoint and of an eBPF switch deleted: the
/// endpoints are kept (the switch's ports still reach each other) and
/// `reconcile` says so; made again under their names, the uplinks are taken
/// again and everything checks.
#[test]
fn a_deleted_uplink_keeps_router_and_switch_endpoints() {
    require_root();
    let lab = Lab::new().unwrap();
    let cs = lab.containers(3).unwrap();
    let refs: Vec<&Netns> = cs.iter().map(|c| &**c).collect();
    let node = lab.node();
    // A router endpoint turns it on and leaves it so.
    node.ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        .unwrap();
    let before = snapshot(&lab, &refs);
    let make_uplinks = || {
        for dev in ["up0", "up1"] {
            lab.add_veth(dev).unwrap();
        }
    };
    make_uplinks();
    let add = |args: &[&str]| lab.attach().ok(args).unwrap();
    add(&[
        "add",
        "router",
        "--netns",
        cs[0].name(),
        "--ip",
        "10.88.0.4/32",
        "--uplink",
        "up0",
    ]);
    add(&[
        "add",
        "bridge",
        "--bridge",
        "sw1",
        "--netns",
        cs[1].name(),
        "--uplink",
        "up1",
        "--ip",
        "10.66.0.2/24",
    ]);
    add(&[
        "add",
        "bridge",
        "--bridge",
        "sw1",
        "--netns",
        cs[2].name(),
        "--ip",
        "10.66.0.3/24",
    ]);
    lab.attach().ok(&["check", "--all"]).unwrap();

    for dev in ["up0", "up1"] {
        node.ok(&["ip", "link", "del", dev]).unwrap();
    }
    let r = reconcile(&lab);
    for (c, up) in [(&cs[0], "up0"), (&cs[1], "up1"), (&cs[2], "up1")] {
        let kept =
            format!("kept: uplink {up} is gone (taken again when a device of that name appears)");
        assert_eq!(action_for(&r, c.name()), Some(kept.as_str()), "{r:?}");
    }
    assert!(
        ping(&cs[1], "10.66.0.3"),
        "the switch's ports lost each other"
    );

    make_uplinks();
    reconcile(&lab);
    lab.attach().ok(&["check", "--all"]).unwrap();
    assert!(ping(&cs[1], "10.66.0.3"));
    let ifindex = |dev: &str| {
        links(node)
            .into_iter()
            .find(|l| l["ifname"] == dev)
            .map(|l| l["ifindex"].clone())
            .unwrap()
    };
    assert_eq!(lab.record(&cs[0])["parent_ifindex"], ifindex("up0"));
    assert_eq!(lab.record(&cs[1])["parent_ifindex"], ifindex("up1"));
    for c in &cs {
        lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
    }
    for dev in ["up0", "up1"] {
        node.ok(&["ip", "link", "del", dev]).unwrap();
    }
    assert_eq!(snapshot(&lab, &refs), before);
}

/// An XDP endpoint's container side needs GRO (without it the veth drops
/// what XDP redirects into it): turned off there, it is drift that `check`
/// names and `reconcile` mends, fraglist GRO with it.
#[test]
fn gro_turned_off_in_an_xdp_container_is_repaired() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfXdp, &[]).unwrap();
    assert!(ping(&c1.ns, EXT_V4));
    c1.ns
        .ok(&["ethtool", "-K", "eth0", "gro", "off", "rx-gro-list", "off"])
        .unwrap();
    assert!(
        !ping_afresh(&c1.ns, EXT_V4),
        "no GRO: XDP frames are dropped"
    );
    let out = lab
        .attach()
        .run(&["check", "--netns", c1.ns.name()])
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("GRO is off on eth0") && err.contains("dropped"),
        "{err}"
    );
    let r = reconcile(&lab);
    assert_eq!(action_for(&r, c1.ns.name()), Some("repaired"), "{r:?}");
    let features = c1.ns.ok(&["ethtool", "-k", "eth0"]).unwrap();
    for f in ["generic-receive-offload: on", "rx-gro-list: on"] {
        assert!(features.contains(f), "want {f}:\n{features}");
    }
    lab.attach()
        .ok(&["check", "--netns", c1.ns.name()])
        .unwrap();
    assert!(ping_afresh(&c1.ns, EXT_V4), "c1 not back after the repair");
}
