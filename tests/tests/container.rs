//! `attach add container --netns B --join A`: B shares A's network
//! namespace, held by the engine's own bind mount, so B keeps its network
//! when A's namespace file is deleted or A's last process exits — the known
//! failure of `--network container:` elsewhere — and the namespace really
//! goes when the last joiner detaches.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use attach_tests::{
    kinds::{in_ns, node_has_link, ping_from, wait_link_gone},
    lab::{
        EXT_V4, EXT_V6, Lab, NETNS_PREFIX, NODE_IF, Netns, ping, require_root,
        wait_released_netns_destroyed,
    },
    reach::mac_of,
    refusal::{Bad, CONFLICT, INVALID, NOT_FOUND, SYSTEM, check_rejected},
    sleeper::Sleeper,
    snapshot::{Scope, snapshot_with},
};
use serde_json::{Value, json};

/// `/run/netns/atl-<tag>-<name>`: a lab name the engine may create.
fn lab_name(lab: &Lab, name: &str) -> String {
    format!("{NETNS_PREFIX}-{}-{name}", lab.tag())
}

fn run_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

fn addresses(path: &Path) -> String {
    String::from_utf8_lossy(&in_ns(path, &["ip", "-br", "addr", "show"]).stdout).into_owned()
}

/// Attaches an eBPF macvlan endpoint `i` into the namespace at `netns`;
/// returns its host-side veth in the node.
fn attach_endpoint(lab: &Lab, netns: &str, i: u8) -> String {
    let (v4, v6) = Lab::container_ip(i);
    let rec = lab
        .attach()
        .json(&[
            "add",
            "macvlan",
            "--parent",
            NODE_IF,
            "--netns",
            netns,
            "--ip",
            &v4,
            "--ip",
            &v6,
            "--mac",
            &mac_of(i),
        ])
        .unwrap();
    rec["host_ifname"].as_str().unwrap().to_owned()
}

fn mounted(path: &Path) -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(&*path.to_string_lossy()))
}

fn v(i: u8) -> (String, String) {
    let (a, b) = Lab::container_ip(i);
    (
        a.split('/').next().unwrap().to_owned(),
        b.split('/').next().unwrap().to_owned(),
    )
}

/// A's namespace file is deleted (A exits): B still has A's interface and
/// addresses and reaches the external host on IPv4 and IPv6; once B
/// detaches, the namespace is gone (the veth of A's endpoint vanishes from
/// the node).
#[test]
fn joiner_keeps_its_network_when_the_first_container_exits() {
    require_root();
    let lab = Lab::new().unwrap();
    let empty = snapshot_with(&lab, &Scope::default());
    let a = Netns::named(&lab_name(&lab, "a")).unwrap();
    let a_name = a.name().to_owned();
    let host_veth = attach_endpoint(&lab, &a_name, 1);
    let b_name = lab_name(&lab, "b");
    let b_path = run_path(&b_name);

    let rec = lab
        .attach()
        .json(&["add", "container", "--netns", &b_name, "--join", &a_name])
        .unwrap();
    assert_eq!(rec["kind"], "container");
    assert_eq!(rec["ifname"], "-");
    assert_eq!(rec["netns"], b_name.as_str());
    assert_eq!(rec["join"]["other"], a_name.as_str());
    assert_eq!(rec["join"]["netns_created"], true);
    let hold = PathBuf::from(rec["join"]["hold"].as_str().unwrap());
    assert!(hold.starts_with(lab.node_state_dir()), "{}", hold.display());
    let a_inode = fs::metadata(a.path()).unwrap().ino();
    assert_eq!(rec["netns_inode"], a_inode);
    assert_eq!(fs::metadata(&b_path).unwrap().ino(), a_inode);
    assert!(mounted(&hold) && mounted(&b_path));

    let (a4, a6) = v(1);
    for dst in [EXT_V4, EXT_V6] {
        assert!(
            ping_from(&b_path, dst),
            "B cannot reach {dst} through A's eth0"
        );
    }
    for dst in [&a4, &a6] {
        assert!(ping(lab.ext(), dst), "ext cannot reach B (A's {dst})");
    }

    // A exits: its namespace file goes.
    drop(a);
    assert!(!run_path(&a_name).exists());
    assert!(addresses(&b_path).contains(&a4), "{}", addresses(&b_path));
    for dst in [EXT_V4, EXT_V6] {
        assert!(ping_from(&b_path, dst), "B lost {dst} when A exited");
    }
    assert!(ping(lab.ext(), &a6), "ext lost B when A exited");
    lab.attach().ok(&["check", "--netns", &b_name]).unwrap();
    assert!(node_has_link(&lab, &host_veth));

    // B detaches: nothing holds the namespace any more.
    let out = lab.attach().json(&["del", "--netns", &b_name]).unwrap();
    assert_eq!(out["detached"]["kind"], "container", "{out}");
    assert!(!b_path.exists() && !mounted(&hold) && !hold.exists());
    assert!(
        wait_link_gone(&lab, &host_veth),
        "{host_veth} is still in the node: the namespace lives on"
    );
    // A's own record goes by its name, its namespace gone.
    let out = lab.attach().json(&["del", "--netns", &a_name]).unwrap();
    assert_eq!(out["detached"]["netns"], a_name.as_str(), "{out}");
    let after = snapshot_with(&lab, &Scope::default());
    assert_eq!(after, empty, "\n{}", empty.diff(&after));
}

/// A is only a process (no namespace file): joined by its pid; it exits;
/// B keeps the network; B detaches and the namespace is gone.
#[test]
fn joiner_keeps_its_network_when_the_first_containers_process_exits() {
    require_root();
    let lab = Lab::new().unwrap();
    let empty = snapshot_with(&lab, &Scope::default());
    let a = Netns::named(&lab_name(&lab, "a")).unwrap();
    let a_name = a.name().to_owned();
    let host_veth = attach_endpoint(&lab, &a_name, 2);
    let proc_a = Sleeper::in_ns(&a).unwrap();
    drop(a); // only the process holds it now
    let pid = proc_a.pid().to_string();
    let b_name = lab_name(&lab, "b");
    let b_path = run_path(&b_name);
    lab.attach()
        .ok(&["add", "container", "--netns", &b_name, "--join", &pid])
        .unwrap();
    assert!(ping_from(&b_path, EXT_V4));
    proc_a.kill(); // reaped: its reference to the namespace is gone
    // Had nothing else held the namespace, the kernel would have destroyed
    // it (and the host side of its veth) by now.
    wait_released_netns_destroyed().unwrap();
    assert!(
        node_has_link(&lab, &host_veth),
        "A's namespace went with its process"
    );
    for dst in [EXT_V4, EXT_V6] {
        assert!(
            ping_from(&b_path, dst),
            "B lost {dst} when A's process exited"
        );
    }
    lab.attach().ok(&["del", "--netns", &b_name]).unwrap();
    assert!(wait_link_gone(&lab, &host_veth), "the namespace lives on");
    lab.attach().ok(&["del", "--netns", &a_name]).unwrap();
    let after = snapshot_with(&lab, &Scope::default());
    assert_eq!(after, empty, "\n{}", empty.diff(&after));
}

/// Joiners of one namespace share one hold; it goes with the last. A joiner
/// already in the namespace (named by its pid) is recorded, not created.
#[test]
fn joiners_share_one_hold_released_by_the_last() {
    require_root();
    let lab = Lab::new().unwrap();
    let a = lab.container("a").unwrap();
    attach_endpoint(&lab, a.name(), 3);
    let empty = snapshot_with(&lab, &Scope::default());
    let b1 = lab_name(&lab, "b1");
    let b2 = lab_name(&lab, "b2");
    let r1 = lab
        .attach()
        .json(&["add", "container", "--netns", &b1, "--join", a.name()])
        .unwrap();
    let r2 = lab
        .attach()
        .json(&["add", "container", "--netns", &b2, "--join", a.name()])
        .unwrap();
    assert_eq!(r1["join"]["hold"], r2["join"]["hold"]);
    let hold = PathBuf::from(r1["join"]["hold"].as_str().unwrap());
    let already = Sleeper::in_ns(&a).unwrap();
    let pid = already.pid().to_string();
    let r3 = lab
        .attach()
        .json(&["add", "container", "--netns", &pid, "--join", a.name()])
        .unwrap();
    assert_eq!(r3["join"]["netns_created"], false);
    assert_eq!(r3["join"]["hold"], r1["join"]["hold"]);
    let list = lab.attach().json(&["list"]).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 4, "{list}");

    lab.attach().ok(&["del", "--netns", &b1]).unwrap();
    assert!(mounted(&hold), "the hold went with the first joiner");
    assert!(!run_path(&b1).exists());
    assert!(ping_from(&run_path(&b2), EXT_V6));
    lab.attach().ok(&["del", "--netns", &pid]).unwrap();
    assert!(mounted(&hold));
    lab.attach().ok(&["del", "--netns", &b2]).unwrap();
    assert!(
        !mounted(&hold) && !hold.exists(),
        "the last joiner left the hold"
    );
    assert!(ping(&a, EXT_V4), "A itself broke");
    let after = snapshot_with(&lab, &Scope::default());
    assert_eq!(after, empty, "\n{}", empty.diff(&after));
    already.kill();
}

#[test]
fn container_bad_input_is_refused_and_changes_nothing() {
    require_root();
    let lab = Lab::new().unwrap();
    let a = lab.container("a").unwrap();
    let other = lab.container("other").unwrap();
    attach_endpoint(&lab, a.name(), 4);
    let scope = Scope {
        namespaces: vec![&a, &other],
        cgroups: vec![],
    };
    let b = lab_name(&lab, "b");
    let file = std::env::temp_dir().join(lab_name(&lab, "file"));
    fs::write(&file, "").unwrap();
    let file_s = file.display().to_string();
    let node = lab.node().name().to_owned();
    let a_name = a.name().to_owned();
    let late = format!("/proc/sys/{}", lab_name(&lab, "b"));
    let args = |netns: &str, join: &str, extra: &[&str]| {
        let mut v: Vec<String> = ["add", "container", "--netns", netns, "--join", join]
            .map(String::from)
            .to_vec();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let bad = |name: &str, args: Vec<String>, code: i32, names: &str| Bad {
        name: name.into(),
        args,
        code,
        names: names.into(),
        parse: false,
    };
    let dead = (1..)
        .map(|i| 4_194_304 - i)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap()
        .to_string();
    let mut cases = vec![
        bad(
            "missing OTHER",
            args(&b, "no-such-ns", &[]),
            NOT_FOUND,
            "no-such-ns",
        ),
        bad(
            "OTHER is the node",
            args(&b, &node, &[]),
            INVALID,
            "attach add host",
        ),
        bad(
            "NETNS is another namespace",
            args(other.name(), &a_name, &[]),
            CONFLICT,
            other.name(),
        ),
        bad(
            "NETNS is a plain file",
            args(&file_s, &a_name, &[]),
            CONFLICT,
            &file_s,
        ),
        bad(
            "NETNS in a missing directory",
            args("/no-such-dir-atl/b", &a_name, &[]),
            NOT_FOUND,
            "/no-such-dir-atl",
        ),
        bad(
            "NETNS a dead pid",
            args(&dead, &a_name, &[]),
            NOT_FOUND,
            &dead,
        ),
        bad(
            "--ifname",
            args(&b, &a_name, &["--ifname", "eth0"]),
            INVALID,
            "--ifname",
        ),
        bad(
            "NETNS is OTHER",
            args(&a_name, &a_name, &[]),
            INVALID,
            "same namespace",
        ),
        // Fails late, after the hold is made: rolled back.
        bad(
            "NETNS cannot be created",
            args(&late, &a_name, &[]),
            SYSTEM,
            &late,
        ),
    ];
    let mut broken = Vec::new();
    for c in &cases {
        broken.extend(check_rejected(&lab, &scope, c));
    }
    lab.attach()
        .ok(&["add", "container", "--netns", &b, "--join", &a_name])
        .unwrap();
    cases = vec![bad(
        "already attached",
        args(&b, &a_name, &[]),
        CONFLICT,
        &b,
    )];
    for c in &cases {
        broken.extend(check_rejected(&lab, &scope, c));
    }
    assert!(ping_from(&run_path(&b), EXT_V4), "the healthy joiner broke");
    fs::remove_file(&file).unwrap();
    assert!(broken.is_empty(), "{}", broken.join("\n\n"));
}

#[test]
fn container_del_is_idempotent_and_reset_releases_the_holds() {
    require_root();
    let lab = Lab::new().unwrap();
    let a = lab.container("a").unwrap();
    attach_endpoint(&lab, a.name(), 5);
    let empty = snapshot_with(&lab, &Scope::default());
    let b = lab_name(&lab, "b");
    lab.attach()
        .ok(&["add", "container", "--netns", &b, "--join", a.name()])
        .unwrap();
    let first = lab.attach().json(&["del", "--netns", &b]).unwrap();
    assert_eq!(first["detached"]["netns"], b.as_str());
    let again = lab.attach().json(&["del", "--netns", &b]).unwrap();
    assert_eq!(again, json!({"detached": null}));
    assert_eq!(snapshot_with(&lab, &Scope::default()), empty);

    lab.attach()
        .ok(&["add", "container", "--netns", &b, "--join", a.name()])
        .unwrap();
    let list = lab.attach().json(&["list"]).unwrap();
    let rec = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "container")
        .cloned()
        .unwrap_or(Value::Null);
    for f in [
        "netns", "ifname", "kind", "mode", "backend", "parent", "mac", "ips", "mtu", "join",
        "warnings",
    ] {
        assert!(rec.get(f).is_some(), "field {f} missing from {rec}");
    }
    let hold = PathBuf::from(rec["join"]["hold"].as_str().unwrap());
    lab.attach().ok(&["reset"]).unwrap();
    assert!(!mounted(&hold) && !run_path(&b).exists());
    assert!(!lab.node_state_dir().exists());
}

/// The engine's hold unmounted behind its back: `check` says so and
/// `reconcile` puts it back from NETNS; the joiner then survives A's exit.
#[test]
fn reconcile_puts_a_lost_hold_back() {
    require_root();
    let lab = Lab::new().unwrap();
    let a = Netns::named(&lab_name(&lab, "a")).unwrap();
    let a_name = a.name().to_owned();
    let host_veth = attach_endpoint(&lab, &a_name, 6);
    let b = lab_name(&lab, "b");
    let rec = lab
        .attach()
        .json(&["add", "container", "--netns", &b, "--join", &a_name])
        .unwrap();
    let hold = PathBuf::from(rec["join"]["hold"].as_str().unwrap());
    assert!(
        lab.attach()
            .json(&["reconcile"])
            .unwrap()
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        std::process::Command::new("umount")
            .arg("-l")
            .arg(&hold)
            .status()
            .unwrap()
            .success()
    );
    assert!(!mounted(&hold));
    let out = lab.attach().run(&["check", "--netns", &b]).unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hold"));
    let repairs = lab.attach().json(&["reconcile"]).unwrap();
    let mine: Vec<_> = repairs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["netns"] == b.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{repairs}");
    assert_eq!(mine[0]["action"], "repaired", "{repairs}");
    assert!(mounted(&hold));
    drop(a);
    assert!(
        ping_from(&run_path(&b), EXT_V4),
        "B lost the network: the hold did not hold"
    );
    lab.attach().ok(&["del", "--netns", &b]).unwrap();
    assert!(wait_link_gone(&lab, &host_veth));
    lab.attach().ok(&["del", "--netns", &a_name]).unwrap();
}
