//! An `attach add` killed (SIGKILL) at every point of its run, next to a
//! live endpoint on the same parent, with the tc and the xdp datapath:
//! whatever it left (its veth, map entries, cache slot, the MAC in the
//! parent's unicast filter, its journal) `check --all` names and
//! `reconcile` removes, leaving the node exactly as before the add; the
//! last `del` and `reset` remove it too. The live endpoint passes traffic
//! throughout.

use std::{
    path::Path,
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use attach_tests::{
    lab::{Attach, EXT_V4, Lab, NODE_IF, Netns, ping, require_root},
    reach::{Endpoint, Flavor, attach, mac_of},
    snapshot::{State, snapshot},
};
use serde_json::Value;

/// The endpoint cache's filled slots.
fn cache(lab: &Lab) -> Vec<(u32, attach_common::Endpoint)> {
    let pins = lab.node_pin_dir();
    lab.in_node(|| {
        let mut dp = attach::datapath::Datapath::open(&pins).unwrap();
        let cache = dp.ep_cache().unwrap();
        (0..attach_common::EP_CACHE_SLOTS)
            .filter_map(|s| cache.read(s).map(|e| (s, e)))
            .filter(|(_, e)| e.parent_ifindex != 0)
            .collect()
    })
}

/// The MACs in the parent's unicast filter.
fn unicast_filter(lab: &Lab) -> Vec<String> {
    let out = lab
        .node()
        .ok(&["bridge", "-j", "fdb", "show", "dev", NODE_IF])
        .unwrap();
    let v: Value = serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out }).unwrap();
    let mut macs: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["mac"].as_str().map(str::to_owned))
        .collect();
    macs.sort();
    macs
}

/// The node's host-side veths.
fn host_veths(lab: &Lab) -> Vec<String> {
    let out = lab
        .node()
        .ok(&["ip", "-j", "link", "show", "type", "veth"])
        .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| n.starts_with("atk"))
        .map(str::to_owned)
        .collect()
}

/// Whether the add of `target` finished (its record is saved).
fn recorded(lab: &Lab, target: &Netns) -> bool {
    lab.attach()
        .json(&["list"])
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["netns"] == target.name())
}

fn pending(lab: &Lab) -> bool {
    std::fs::read_dir(lab.node_state_dir().join("pending")).is_ok_and(|mut d| d.next().is_some())
}

/// The `add` of container 2 next to `c1`, as argv.
fn add_args(target: &Netns, flavor: Flavor) -> Vec<String> {
    let (v4, v6) = Lab::container_ip(2);
    let mut args: Vec<String> = [
        "add", "macvlan", "--mode", "bridge", "--parent", NODE_IF, "--netns",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend([
        target.name().to_owned(),
        "--ip".into(),
        v4,
        "--ip".into(),
        v6,
    ]);
    args.extend(["--mac".into(), mac_of(2)]);
    args.extend(flavor.args().iter().map(|s| s.to_string()));
    args
}

/// Spawns `attach <args>` in the node and waits until it has written its
/// journal (it has begun making things) or has exited; returns it and the
/// deadline its observation keeps to.
fn spawn_add(lab: &Lab, args: &[String]) -> (Child, Instant) {
    let bin = Attach::bin().unwrap();
    let mut argv = vec![bin.to_str().unwrap()];
    argv.extend(args.iter().map(String::as_str));
    let mut child = lab
        .node()
        .command(&argv)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pending(lab) && child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the add neither began nor ended");
        thread::yield_now();
    }
    (child, deadline)
}

/// Spawns the add and SIGKILLs it `delay` after its journal appears (the
/// add has begun making things), or once it exits; reaps it. Returns how
/// long the journal stayed, if the add outlived the delay (it was killed
/// mid-add), else `None`.
fn add_killed_after(lab: &Lab, args: &[String], delay: Duration) -> Option<Duration> {
    let (mut child, _) = spawn_add(lab, args);
    let began = Instant::now();
    // The delay is the point in the add the kill lands at, not a wait for
    // anything.
    thread::sleep(delay);
    let killed = child.try_wait().unwrap().is_none();
    // SIGKILL, by the exact pid of the process we started.
    let _ = child.kill();
    let _ = child.wait();
    killed.then(|| began.elapsed())
}

/// How long an add keeps its journal here: from the journal's writing to
/// its removal. (An add that comes and goes between two looks, this
/// process being off the CPU, is measured again.)
fn add_window(lab: &Lab, args: &[String], target: &Netns) -> Duration {
    for _ in 0..20 {
        let (mut child, deadline) = spawn_add(lab, args);
        let began = Instant::now();
        let seen = pending(lab);
        while pending(lab) {
            assert!(Instant::now() < deadline, "the add kept its journal");
            thread::yield_now();
        }
        let window = began.elapsed();
        assert!(child.wait().unwrap().success());
        lab.attach().ok(&["del", "--netns", target.name()]).unwrap();
        if seen {
            return window;
        }
    }
    panic!("never saw an add's journal");
}

fn node_state(
    lab: &Lab,
    c1: &Endpoint,
    target: &Netns,
) -> (State, Vec<(u32, attach_common::Endpoint)>) {
    (snapshot(lab, &[&c1.ns, target]), cache(lab))
}

fn live_endpoint_works(lab: &Lab, c1: &Endpoint) {
    assert!(ping(&c1.ns, EXT_V4), "c1 cannot reach the wire");
    assert!(ping(lab.ext(), &c1.v4), "the wire cannot reach c1");
}

fn killed_adds_are_rolled_back(flavor: Flavor) {
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", flavor, &[]).unwrap();
    let target = lab.container("c2").unwrap();
    let args = add_args(&target, flavor);
    live_endpoint_works(&lab, &c1);
    let before = node_state(&lab, &c1, &target);

    // How long an add works here, to spread the kills over it.
    let whole = add_window(&lab, &args, &target);
    assert_eq!(node_state(&lab, &c1, &target), before);

    let (mut partial, mut done) = (0, 0);
    for step in 0..=14u32 {
        let delay = whole * step / 12;
        add_killed_after(&lab, &args, delay);
        if recorded(&lab, &target) {
            done += 1;
            lab.attach().ok(&["del", "--netns", target.name()]).unwrap();
        } else if pending(&lab) {
            let left = node_state(&lab, &c1, &target);
            if left != before {
                partial += 1;
            }
            eprintln!(
                "{}: killed after {delay:?}: {}",
                flavor.name(),
                before.0.diff(&left.0)
            );
            let out = lab.attach().run(&["check", "--all"]).unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{err}");
            // Killed while writing its journal, the add had made nothing.
            let half_written = err.contains("left its journal") && err.contains("half written");
            assert!(
                half_written
                    || err.contains(&format!(
                        "the add of eth0 in {} was interrupted",
                        target.name()
                    )) && err.contains(&mac_of(2)),
                "{err}"
            );
            let r = lab.attach().json(&["reconcile"]).unwrap();
            assert!(
                r.as_array().unwrap().iter().any(|x| {
                    if half_written {
                        x["ifname"]
                            .as_str()
                            .is_some_and(|i| i.starts_with("journal"))
                            && x["action"] == "removed"
                    } else {
                        x["netns"] == target.name() && x["action"] == "rolled back"
                    }
                }),
                "{r}"
            );
        }
        let after = node_state(&lab, &c1, &target);
        assert!(
            after == before,
            "{}: killed after {delay:?}, the node is not as before:\n{}cache before {:?}\ncache after {:?}",
            flavor.name(),
            before.0.diff(&after.0),
            before.1,
            after.1
        );
        lab.attach().ok(&["check", "--all"]).unwrap();
        live_endpoint_works(&lab, &c1);
    }
    eprintln!(
        "{}: {partial} kill(s) left a half-made add, {done} landed after it finished",
        flavor.name()
    );
    assert!(partial >= 1, "no kill landed mid-add");

    // The last `del`, then `reset`, roll an interrupted add back too.
    let parent_mac_filter = unicast_filter(&lab);
    let half_made = (1..=80u32).any(|step| {
        add_killed_after(&lab, &args, whole * step / 40);
        let stuck =
            pending(&lab) && !recorded(&lab, &target) && unicast_filter(&lab).contains(&mac_of(2));
        if !stuck {
            lab.attach().ok(&["reconcile"]).unwrap();
            let _ = lab.attach().run(&["del", "--netns", target.name()]);
        }
        stuck
    });
    assert!(half_made, "no kill left the MAC in the unicast filter");
    lab.attach().ok(&["del", "--netns", c1.ns.name()]).unwrap();
    let filter = unicast_filter(&lab);
    assert!(
        !filter.contains(&mac_of(2)) && !filter.contains(&mac_of(1)),
        "{filter:?}"
    );
    // Nothing else unicast went (multicast entries come and go with the
    // endpoints' addresses).
    let unicast = |m: &&String| u8::from_str_radix(&m[..2], 16).unwrap() & 1 == 0;
    assert!(
        parent_mac_filter
            .iter()
            .filter(unicast)
            .all(|m| m == &mac_of(1) || filter.contains(m)),
        "{parent_mac_filter:?} -> {filter:?}"
    );
    assert_eq!(host_veths(&lab), Vec::<String>::new());
    assert!(!Path::new(&lab.node_pin_dir()).exists(), "pins left");
    assert!(!lab.node_state_dir().exists(), "state left");

    // Killed once more with nothing else attached (the node's first add,
    // which makes the pins): `reset` clears it.
    let whole = add_window(&lab, &args, &target);
    let half_made = (1..=80u32).any(|step| {
        add_killed_after(&lab, &args, whole * step / 40);
        let stuck =
            pending(&lab) && !recorded(&lab, &target) && unicast_filter(&lab).contains(&mac_of(2));
        if !stuck {
            lab.attach().ok(&["reset"]).unwrap();
        }
        stuck
    });
    assert!(half_made, "no kill left the MAC in the unicast filter");
    let out = lab.attach().run(&["check", "--all"]).unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "nothing attached, but leftovers"
    );
    lab.attach().ok(&["reset"]).unwrap();
    assert!(!unicast_filter(&lab).contains(&mac_of(2)));
    assert_eq!(host_veths(&lab), Vec::<String>::new());
    assert!(!lab.node_pin_dir().exists() && !lab.node_state_dir().exists());
    assert_eq!(
        lab.attach().ok(&["check", "--all"]).unwrap().trim(),
        "nothing attached"
    );
}

#[test]
fn an_add_killed_anywhere_is_rolled_back_tc() {
    require_root();
    killed_adds_are_rolled_back(Flavor::EbpfTc);
}

#[test]
fn an_add_killed_anywhere_is_rolled_back_native() {
    require_root();
    killed_adds_are_rolled_back(Flavor::Native);
}

#[test]
fn an_add_killed_anywhere_is_rolled_back_xdp() {
    require_root();
    killed_adds_are_rolled_back(Flavor::EbpfXdp);
}

/// What a killed add left with its journal lost (wiped by hand, or left by
/// a build before journals): `check --all` still names the veth, every map
/// entry no record owns and the parent's switch counting a port too many;
/// `reconcile` removes them, leaving the maps, cache and links as before.
/// (The MAC the add put in the parent's unicast filter cannot be told from
/// one put there by anyone else without the journal: it stays.)
#[test]
fn leftovers_without_a_journal_are_found_by_scanning() {
    require_root();
    let flavor = Flavor::EbpfXdp;
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", flavor, &[]).unwrap();
    let target = lab.container("c2").unwrap();
    let args = add_args(&target, flavor);
    let before = node_state(&lab, &c1, &target);
    let whole = add_window(&lab, &args, &target);
    let half_made = (1..=80u32).any(|step| {
        add_killed_after(&lab, &args, whole * step / 40);
        // Killed after it rewrote the parent's switch (its last map write).
        let stuck = pending(&lab)
            && !recorded(&lab, &target)
            && unicast_filter(&lab).contains(&mac_of(2))
            && parents(&lab) != before.0.0["map attach_parents"];
        if !stuck {
            lab.attach().ok(&["reconcile"]).unwrap();
            let _ = lab.attach().run(&["del", "--netns", target.name()]);
        }
        stuck
    });
    assert!(
        half_made,
        "no kill landed after the parent's switch was rewritten"
    );
    std::fs::remove_dir_all(lab.node_state_dir().join("pending")).unwrap();

    let out = lab.attach().run(&["check", "--all"]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let (v4, _) = Lab::container_ip(2);
    let v4 = v4.split('/').next().unwrap();
    for what in [
        "host-side veth atk".to_owned(),
        format!("the receive table holds {}", mac_of(2)),
        "the port table holds port ifindex".into(),
        "the device map holds ifindex".into(),
        format!("the anti-spoofing table holds {v4}"),
        "counts 2 port(s), its attachments 1".into(),
    ] {
        assert!(
            err.contains(&what),
            "check --all does not name {what:?}: {err}"
        );
    }
    assert!(!err.contains("interrupted"), "{err}");
    let r = lab.attach().json(&["reconcile"]).unwrap();
    assert!(
        r.as_array()
            .unwrap()
            .iter()
            .any(|x| x["action"] == "rewritten"),
        "{r}"
    );
    let mut after = node_state(&lab, &c1, &target);
    let fdb = "node fdb";
    let left_mac = after.0.0[fdb]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["mac"] == mac_of(2).as_str() && e["ifname"] == NODE_IF);
    assert!(left_mac, "the MAC without a journal was expected to stay");
    after.0.0.insert(fdb.into(), before.0.0[fdb].clone());
    assert!(
        after == before,
        "not as before:\n{}",
        before.0.diff(&after.0)
    );
    lab.node()
        .ok(&["bridge", "fdb", "del", &mac_of(2), "dev", NODE_IF, "self"])
        .unwrap();
    assert_eq!(node_state(&lab, &c1, &target), before);
    lab.attach().ok(&["check", "--all"]).unwrap();
    live_endpoint_works(&lab, &c1);
}

fn parents(lab: &Lab) -> Value {
    snapshot(lab, &[]).0["map attach_parents"].clone()
}

/// A passthru add killed after taking the parent over (its MAC set to the
/// endpoint's, promiscuous): the rollback gives the parent back as it was,
/// from what the journal kept of it.
#[test]
fn a_killed_passthru_add_gives_the_parent_back() {
    require_root();
    let lab = Lab::new().unwrap();
    let target = lab.container("c2").unwrap();
    let args: Vec<String> = add_args(&target, Flavor::EbpfTc)
        .into_iter()
        .map(|a| if a == "bridge" { "passthru".into() } else { a })
        .collect();
    let state = || snapshot(&lab, &[&target]);
    let before = state();
    let whole = add_window(&lab, &args, &target);
    assert_eq!(state(), before);
    let taken = (1..=80u32).any(|step| {
        add_killed_after(&lab, &args, whole * step / 40);
        let now = state();
        let stuck = pending(&lab)
            && !recorded(&lab, &target)
            && now.0["parent"]["address"] == mac_of(2).as_str();
        if !stuck {
            lab.attach().ok(&["reconcile"]).unwrap();
            let _ = lab.attach().run(&["del", "--netns", target.name()]);
            assert!(state() == before, "{}", before.diff(&state()));
        }
        stuck
    });
    assert!(taken, "no kill landed after the parent was taken over");
    let out = lab.attach().run(&["check", "--all"]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("was interrupted"), "{err}");
    let r = lab.attach().json(&["reconcile"]).unwrap();
    assert!(
        r.as_array()
            .unwrap()
            .iter()
            .any(|x| x["netns"] == target.name() && x["action"] == "rolled back"),
        "{r}"
    );
    let after = state();
    assert!(after == before, "{}", before.diff(&after));
    assert_eq!(
        lab.attach().ok(&["check", "--all"]).unwrap().trim(),
        "nothing attached"
    );
}

/// A `reconcile` killed while it makes an endpoint again (its host side
/// deleted by hand) leaves a veth under the name the endpoint takes: the
/// next `reconcile` finishes the recreation (it does not give the
/// endpoint up), and leaves nothing of the killed one.
#[test]
fn a_killed_recreation_is_finished_by_the_next_reconcile() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let c2 = attach(&lab, 2, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let host = |lab: &Lab| {
        lab.record(&c1.ns)["host_ifname"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let name = host(&lab);
    let bin = Attach::bin().unwrap();
    let mut mid = 0;
    for step in 0..12u32 {
        lab.node().ok(&["ip", "link", "del", &name]).unwrap();
        let mut child = lab
            .node()
            .command(&[bin.to_str().unwrap(), "reconcile"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        // The recreation has made the veth again, or reconcile is done.
        while !host_veths(&lab).contains(&name) && child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "reconcile neither recreated nor ended"
            );
            thread::yield_now();
        }
        // The delay is the point the kill lands at, not a wait.
        thread::sleep(Duration::from_micros(500) * step);
        if child.try_wait().unwrap().is_none() {
            mid += 1;
        }
        // SIGKILL, by the exact pid of the process we started.
        let _ = child.kill();
        let _ = child.wait();
        lab.attach().ok(&["reconcile"]).unwrap();
        assert_eq!(host(&lab), name, "c1 was given up");
        lab.attach().ok(&["check", "--all"]).unwrap();
        assert!(
            attach_tests::lab::ping_within(&c1.ns, &c2.v4, Duration::from_secs(5)),
            "c1 cannot reach c2 after round {step}"
        );
    }
    assert!(mid >= 1, "no kill landed mid-recreation");
    assert_eq!(host_veths(&lab).len(), 2, "{:?}", host_veths(&lab));
}
