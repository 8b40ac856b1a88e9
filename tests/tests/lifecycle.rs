//! The faults a node sees: things changed behind the engine's back, an
//! engine killed mid-operation, program upgrades under traffic, many
//! operations at once.

use std::{process::Stdio, thread, time::Duration};

use attach_tests::{
    flow::{UdpFlow, rx_packets},
    kinds::{add_macvlan, detach_port_hook, in_ns, port_hook_prog},
    lab::{EXT_V4, Lab, Netns, ping, require_root},
    reach::{Flavor, attach, attach_refused},
    snapshot::{links, snapshot},
};
use serde_json::Value;

fn reconcile(lab: &Lab) -> Vec<Value> {
    lab.attach()
        .json(&["reconcile"])
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn action_for<'a>(repairs: &'a [Value], ifname_or_netns: &str) -> Option<&'a str> {
    repairs
        .iter()
        .find(|r| r["netns"] == ifname_or_netns || r["ifname"] == ifname_or_netns)
        .and_then(|r| r["action"].as_str())
}

/// A ping from `ns` after forgetting its neighbours. While the datapath was
/// broken, the ARP resolution of `dst` failed and stays pending for up to
/// three retransmits, one a second: a ping right after the repair would
/// wait for the next one (or fall between two) instead of probing afresh.
fn ping_afresh(ns: &Netns, dst: &str) -> bool {
    ns.ok(&["ip", "neigh", "flush", "all"]).unwrap();
    ping(ns, dst)
}

fn link_id(pin: &std::path::Path) -> u64 {
    bpftool_show("link", pin)["id"].as_u64().unwrap()
}

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

#[test]
fn an_engine_killed_mid_attach_disturbs_no_flow_and_is_cleaned_up() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let flow = UdpFlow::start(&lab, &c1.ns, &c1.v4, 5201, 4).unwrap();
    // Under way before anything changes.
    flow.wait_passing(&c1.ns, "eth0", rx_packets(&c1.ns, "eth0").unwrap(), 200)
        .unwrap();
    // Whether the add of process `pid` has its record of intent written
    // (and not yet removed). One a killed add left names another pid.
    let pending = |pid: u32| {
        std::fs::read_dir(lab.node_state_dir().join("pending")).is_ok_and(|d| {
            d.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter_map(|e| std::fs::read(e.path()).ok())
                .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
                .any(|j| j["pid"] == pid)
        })
    };
    // Start attaches of others and SIGKILL them at varying points after
    // they began making things (their record of intent is written).
    let mut mid_attach = 0;
    for (i, delay_us) in [
        (2u8, 0u64),
        (3, 0),
        (4, 250),
        (5, 500),
        (6, 1000),
        (7, 3000),
    ] {
        let ns = lab.container(&format!("c{i}")).unwrap();
        let (v4, _) = Lab::container_ip(i);
        let mut child = lab
            .node()
            .command(&[
                attach_tests::lab::Attach::bin().unwrap().to_str().unwrap(),
                "add",
                "macvlan",
                "--parent",
                "eth1",
                "--netns",
                ns.name(),
                "--ip",
                &v4,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // nsenter execs attach: the pid its record of intent names.
        let pid = child.id();
        let began = attach_tests::poll::until(Duration::from_secs(10), Duration::ZERO, || {
            pending(pid) || child.try_wait().unwrap().is_some()
        });
        assert!(began, "the attach of c{i} neither began nor ended");
        // The delay is the point in the attach the kill lands at, not a
        // wait for anything.
        thread::sleep(Duration::from_micros(delay_us));
        // SIGKILL, by the exact pid of the process we started.
        let _ = child.kill();
        let status = child.wait().unwrap();
        // Killed mid-attach: the kill ended it, and its record of intent
        // (removed when an attach ends) is still there.
        use std::os::unix::process::ExitStatusExt;
        if status.signal() == Some(libc::SIGKILL) && pending(pid) {
            mid_attach += 1;
        }
    }
    assert!(
        mid_attach > 0,
        "every attach had ended before its kill: nothing was killed mid-attach"
    );
    let (sent, lost) = flow.finish().unwrap();
    assert!(sent > 1000);
    assert_eq!(
        lost, 0,
        "{lost} of {sent} datagrams lost while engines were killed"
    );
    // Whatever the killed runs left half-made, reconcile settles.
    reconcile(&lab);
    assert!(reconcile(&lab).is_empty(), "reconcile did not converge");
    let list = lab.attach().json(&["list"]).unwrap();
    for r in list.as_array().unwrap() {
        let ns = r["netns"].as_str().unwrap();
        lab.attach().ok(&["check", "--netns", ns]).unwrap();
    }
    assert!(ping(&c1.ns, EXT_V4));
}

#[test]
fn fifty_parallel_adds_on_one_parent() {
    require_root();
    let lab = Lab::new().unwrap();
    let n = 50u8;
    let nss: Vec<_> = (1..=n)
        .map(|i| lab.container(&format!("c{i}")).unwrap())
        .collect();
    let bin = attach_tests::lab::Attach::bin().unwrap();
    let spawn_all = |args: &dyn Fn(u8, &Netns) -> Vec<String>| -> Vec<std::process::Output> {
        let children: Vec<_> = nss
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let mut argv = vec![bin.to_str().unwrap().to_owned()];
                argv.extend(args(i as u8 + 1, ns));
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                lab.node()
                    .command(&argv)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect()
    };
    let outs = spawn_all(&|i, ns| {
        let (v4, v6) = Lab::container_ip(i);
        [
            "add",
            "macvlan",
            "--parent",
            "eth1",
            "--netns",
            ns.name(),
            "--ip",
            &v4,
            "--ip",
            &v6,
        ]
        .map(String::from)
        .to_vec()
    });
    for (i, o) in outs.iter().enumerate() {
        assert!(
            o.status.success(),
            "add {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let list = lab.attach().json(&["list"]).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), n as usize);
    let mut macs: Vec<_> = list
        .iter()
        .map(|r| r["mac"].as_str().unwrap().to_owned())
        .collect();
    macs.sort();
    macs.dedup();
    assert_eq!(macs.len(), n as usize, "duplicate MACs");
    let eps = std::process::Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(lab.node_pin_dir().join("attach_eps"))
        .output()
        .unwrap();
    let eps: Value = serde_json::from_slice(&eps.stdout).unwrap();
    assert_eq!(eps.as_array().unwrap().len(), n as usize, "map entries");
    let veths = lab
        .node()
        .ok(&["ip", "-o", "link", "show", "type", "veth"])
        .unwrap();
    assert_eq!(
        veths.lines().filter(|l| l.contains(": atk")).count(),
        n as usize
    );
    assert!(ping(&nss[0], EXT_V4) && ping(&nss[49], EXT_V4));
    assert!(ping(&nss[0], &Lab::container_ip(50).0));

    let outs = spawn_all(&|_, ns| ["del", "--netns", ns.name()].map(String::from).to_vec());
    assert!(outs.iter().all(|o| o.status.success()));
    assert_eq!(lab.attach().json(&["list"]).unwrap(), Value::Array(vec![]));
    let veths = lab
        .node()
        .ok(&["ip", "-o", "link", "show", "type", "veth"])
        .unwrap();
    assert_eq!(veths.lines().filter(|l| l.contains(": atk")).count(), 0);
    assert!(!lab.node_pin_dir().exists());
}

/// What `bpftool -j <what> show pinned <pin>` says.
fn bpftool_show(what: &str, pin: &std::path::Path) -> Value {
    let out = std::process::Command::new("bpftool")
        .args(["-j", what, "show", "pinned"])
        .arg(pin)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
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
