//! Tests of the lab harness itself: topology, probes, cleanup.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    time::{Duration, Instant},
};

use attach_tests::lab::{
    EXT_IF, EXT_V4, EXT_V6, Lab, LabOptions, NETNS_PREFIX, NODE_IF, NODE_V4, NODE_V6, Netns,
    arping, broadcast_reaches, ndisc, netns_list, ping, require_root, unique_tag,
};

fn assert_gone(names: &[String]) {
    let left = netns_list().unwrap();
    let stale: Vec<_> = names.iter().filter(|n| left.contains(n)).collect();
    assert!(stale.is_empty(), "namespaces left behind: {stale:?}");
}

#[test]
fn lab_comes_up_and_drop_removes_it() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = lab.container("c1").unwrap();
    let names = lab.netns_names();
    assert_eq!(names.len(), 4);
    let listed = netns_list().unwrap();
    for n in &names {
        assert!(listed.contains(n), "{n} missing from {listed:?}");
    }
    assert!(c.name().ends_with("-c1"));

    // Through the switch, both ways, both families.
    assert!(ping(lab.ext(), NODE_V4));
    assert!(ping(lab.ext(), NODE_V6));
    assert!(ping(lab.node(), EXT_V4));
    assert!(ping(lab.node(), &format!("{EXT_V6}/64")));
    assert!(arping(lab.ext(), EXT_IF, NODE_V4));
    assert!(ndisc(lab.node(), NODE_IF, EXT_V6));
    assert!(broadcast_reaches(lab.ext(), EXT_IF, lab.node(), NODE_IF));
    assert!(broadcast_reaches(lab.node(), NODE_IF, lab.ext(), EXT_IF));

    // The container is empty: nothing to reach yet.
    assert!(!ping(&c, EXT_V4));

    drop(c);
    drop(lab);
    assert_gone(&names);
}

#[test]
fn a_panic_still_cleans_up() {
    require_root();
    let mut names = Vec::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::new().unwrap();
        let _c = lab.container("c1").unwrap();
        names = lab.netns_names();
        panic!("test failure inside a lab");
    }));
    assert!(result.is_err());
    assert_eq!(names.len(), 4);
    assert_gone(&names);
}

#[test]
fn failing_probes_are_false_and_quick() {
    require_root();
    let lab = Lab::new().unwrap();
    let t = Instant::now();
    assert!(!ping(lab.ext(), "10.77.0.123"));
    assert!(!ping(lab.ext(), "fd77::123"));
    assert!(
        t.elapsed() < Duration::from_millis(4500),
        "{:?}",
        t.elapsed()
    );
    assert!(!arping(lab.ext(), EXT_IF, "10.77.0.123"));
    assert!(!ndisc(lab.node(), NODE_IF, "fd77::123"));
    assert!(!broadcast_reaches(lab.ext(), EXT_IF, lab.node(), "lo"));
}

/// A probe that cannot run says nothing about reachability: it panics,
/// naming why, rather than answering "unreachable".
#[test]
fn probes_that_cannot_run_panic() {
    require_root();
    let lab = Lab::new().unwrap();
    let gone = Netns::new(&format!("{NETNS_PREFIX}-gone")).unwrap();
    let name = gone.name().to_owned();
    let del = std::process::Command::new("ip")
        .args(["netns", "del", &name])
        .status()
        .unwrap();
    assert!(del.success());
    type Probe<'a> = Box<dyn Fn() -> bool + 'a>;
    let cases: Vec<(&str, Probe)> = vec![
        (
            "ping of a non-address",
            Box::new(|| ping(lab.ext(), "not an address")),
        ),
        ("ping in a namespace gone", Box::new(|| ping(&gone, EXT_V4))),
        (
            "arping on a device missing",
            Box::new(|| arping(lab.ext(), "nosuchdev", NODE_V4)),
        ),
        (
            "broadcast sent on a device missing",
            Box::new(|| broadcast_reaches(lab.ext(), "nosuchdev", lab.node(), NODE_IF)),
        ),
        (
            "broadcast captured on a device missing",
            Box::new(|| broadcast_reaches(lab.ext(), EXT_IF, lab.node(), "nosuchdev")),
        ),
        (
            "ndisc on a device missing",
            Box::new(|| ndisc(lab.node(), "nosuchdev", EXT_V6)),
        ),
    ];
    for (what, probe) in &cases {
        let r = catch_unwind(AssertUnwindSafe(probe));
        assert!(
            r.is_err(),
            "{what}: answered {:?} instead of failing",
            r.ok()
        );
    }
    drop(cases);
    drop(gone); // warns that it is gone already
}

#[test]
fn hairpin_reflects_the_nodes_broadcasts() {
    require_root();
    let on = Lab::new().unwrap();
    let off = Lab::with_options(LabOptions { hairpin: false }).unwrap();
    assert!(broadcast_reaches(on.node(), NODE_IF, on.node(), NODE_IF));
    assert!(!broadcast_reaches(off.node(), NODE_IF, off.node(), NODE_IF));
    // Two labs side by side do not interfere.
    assert!(ping(off.ext(), NODE_V4));
    assert_ne!(on.tag(), off.tag());
}

#[test]
fn netns_guard_runs_commands_inside() {
    require_root();
    let ns = Netns::new("atl-guard").unwrap();
    let name = ns.name().to_owned();
    assert_eq!(ns.path().to_str().unwrap(), format!("/run/netns/{name}"));
    let links = ns.ok(&["ip", "-o", "link", "show"]).unwrap();
    assert_eq!(links.lines().count(), 1, "only lo: {links}");
    assert!(ns.sh("exit 3").unwrap().status.code() == Some(3));
    assert!(ns.ok(&["false"]).is_err());
    drop(ns);
    assert_gone(&[name]);
}

#[test]
fn attach_runs_in_the_node() {
    require_root();
    let lab = Lab::new().unwrap();
    let version = lab.attach().ok(&["--version"]).unwrap();
    assert!(version.starts_with("attach "), "{version}");
    assert!(lab.attach().ok(&["no-such-command"]).is_err());
}

/// A test process killed outright (SIGKILL, as a CI timeout does) runs no
/// destructor and leaves its lab: the next test process removes it —
/// namespaces, the node's pins and records, cgroups — and nothing of a live
/// process.
#[test]
fn what_a_killed_test_process_left_is_swept() {
    use std::io::{BufRead, BufReader};
    require_root();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "killed_child", "--ignored", "--nocapture"])
        .env(KILLED_CHILD, "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("ready ").map(str::to_owned));
    child.kill().unwrap();
    child.wait().unwrap();
    let ready = ready.expect("the child made its lab");
    let left: Vec<&str> = ready.split_whitespace().collect();
    let (paths, names) = left.split_at(3);
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let listed = netns_list().unwrap();
    assert!(names.iter().all(|n| listed.contains(n)), "{names:?}");
    for p in paths {
        assert!(std::path::Path::new(p).exists(), "{p} left by the child");
    }
    // One of this (live) process's namespaces stays.
    let mine = Netns::new("atl-live").unwrap();
    // The child's namespaces and its cgroup at least.
    assert!(attach_tests::stale::sweep() > names.len());
    assert_gone(&names);
    for p in paths {
        assert!(!std::path::Path::new(p).exists(), "{p} was not swept");
    }
    assert!(netns_list().unwrap().contains(&mine.name().to_owned()));
}

const KILLED_CHILD: &str = "ATTACH_TEST_KILLED_CHILD";

/// The child of `what_a_killed_test_process_left_is_swept`: a lab with an
/// eBPF endpoint and a cgroup, then it waits to be killed.
#[test]
#[ignore = "run by what_a_killed_test_process_left_is_swept"]
fn killed_child() {
    use std::io::Write;
    if std::env::var_os(KILLED_CHILD).is_none() {
        return;
    }
    let lab = Lab::new().unwrap();
    attach_tests::reach::attach(&lab, 1, "bridge", attach_tests::reach::Flavor::EbpfTc, &[])
        .unwrap();
    let cgroup = attach_tests::cgroup::Cgroup::new(&unique_tag(), "victim").unwrap();
    println!(
        "ready {} {} {} {}",
        lab.node_pin_dir().display(),
        lab.node_state_dir().display(),
        cgroup.path().display(),
        lab.netns_names().join(" ")
    );
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}
