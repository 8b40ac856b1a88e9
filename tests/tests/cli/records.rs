//! `del`, `list -o json`, NETNS as a name, a path or a pid, and `reset`.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use attach_tests::{
    lab::{EXT_V4, Lab, NETNS_PREFIX, NODE_IF, Netns, ping, require_root},
    reach::{Endpoint, Flavor, attach, mac_of},
    refusal::text,
    snapshot::{json_cmd, links, pin_dir, snapshot, state_dir},
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// del, list, NETNS forms, reset

/// The field names `list -o json` promises.
const FIELDS: [&str; 11] = [
    "netns",
    "ifname",
    "kind",
    "mode",
    "backend",
    "datapath",
    "parent",
    "mac",
    "ips",
    "mtu",
    "host_ifname",
];

fn host_links(lab: &Lab) -> Vec<String> {
    links(lab.node())
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| n.starts_with("atk"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn list_json_has_the_documented_fields() {
    require_root();
    let lab = Lab::new().unwrap();
    let out = lab.attach().ok(&["-o", "json", "list"]).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!([]),
        "empty list: {out}"
    );
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let c2 = attach(&lab, 2, "vepa", Flavor::Native, &["--mtu", "1400"]).unwrap();
    let list = lab.attach().json(&["list"]).unwrap();
    let list = list.as_array().expect("list is an array");
    assert_eq!(list.len(), 2, "{list:?}");
    for r in list {
        let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        for f in FIELDS {
            assert!(keys.contains(&f), "field {f} missing from {r}");
        }
    }
    let by_ns = |ns: &Netns| list.iter().find(|r| r["netns"] == ns.name()).unwrap();
    let (r1, r2) = (by_ns(&c1.ns), by_ns(&c2.ns));
    assert_eq!(r1["ifname"], "eth0");
    assert_eq!(r1["kind"], "macvlan");
    assert_eq!(r1["mode"], "bridge");
    assert_eq!(r1["backend"], "ebpf");
    assert_eq!(r1["datapath"], "tc");
    assert_eq!(r1["parent"], NODE_IF);
    assert_eq!(r1["mac"], mac_of(1));
    assert_eq!(r1["ips"], json!(["10.77.0.11/24", "fd77::11/64"]));
    assert_eq!(r1["mtu"], 1500);
    assert!(
        r1["host_ifname"].as_str().unwrap().starts_with("atk"),
        "{r1}"
    );
    assert_eq!(r2["mode"], "vepa");
    assert_eq!(r2["backend"], "native");
    assert_eq!(r2["datapath"], Value::Null);
    assert_eq!(r2["mac"], mac_of(2));
    assert_eq!(r2["mtu"], 1400);
    assert_eq!(r2["host_ifname"], Value::Null);
    // The text table has a row per attachment.
    let table = lab.attach().ok(&["list"]).unwrap();
    assert!(
        table.contains(c1.ns.name()) && table.contains(c2.ns.name()),
        "{table}"
    );
}

#[test]
fn del_is_idempotent() {
    require_root();
    let lab = Lab::new().unwrap();
    let never = lab.container("never").unwrap();
    let empty = snapshot(&lab, &[&never]);
    for flavor in [Flavor::EbpfTc, Flavor::Native, Flavor::EbpfXdp] {
        let c = attach(&lab, 1, "bridge", flavor, &[]).unwrap();
        let ns = c.ns.name();
        let first = lab.attach().json(&["del", "--netns", ns]).unwrap();
        assert_eq!(first["detached"]["netns"], ns, "{first}");
        let second = lab.attach().json(&["del", "--netns", ns]).unwrap();
        assert_eq!(second, json!({"detached": null}), "{}", flavor.name());
        let third = lab
            .attach()
            .ok(&["del", "--netns", ns, "--ifname", "eth0"])
            .unwrap();
        assert_eq!(third.trim(), format!("nothing attached as eth0 in {ns}"));
        let fourth = lab.attach().ok(&["del", "--netns", ns]).unwrap();
        assert_eq!(fourth.trim(), format!("nothing attached in {ns}"));
        assert!(links(&c.ns).iter().all(|l| l["ifname"] == "lo"));
        assert_eq!(
            snapshot(&lab, &[&never]),
            empty,
            "after del ({})",
            flavor.name()
        );
    }
    // Never attached: a live namespace, another ifname, a missing namespace.
    for args in [
        vec!["del", "--netns", never.name()],
        vec!["del", "--netns", never.name(), "--ifname", "net1"],
        vec!["del", "--netns", "no-such-ns"],
        vec!["del", "--netns", "/run/netns/no-such-ns"],
    ] {
        let out = lab.attach().run(&args).unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = lab
        .attach()
        .run(&[
            "del",
            "--netns",
            never.name(),
            "--ifname",
            "abcdefghijklmnop",
        ])
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "del with a 16-character ifname");
    assert!(text(&out.stderr).contains("abcdefghijklmnop"));
    // Without a target: invalid input, saying what to give.
    for cmd in ["del", "check"] {
        let out = lab.attach().run(&[cmd]).unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(err.contains("give --netns, or --tap with --vlan"), "{err}");
    }
    assert_eq!(snapshot(&lab, &[&never]), empty);
}

/// The container's namespace is deleted before `del`: the record, the host
/// veth, its map entries, and (with the last eBPF attachment) the pins go.
#[test]
fn del_after_the_netns_is_deleted() {
    require_root();
    let lab = Lab::new().unwrap();
    let empty = snapshot(&lab, &[]);
    let stay = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let (v4, _) = Lab::container_ip(2);
    let gone = Netns::named(&format!("{NETNS_PREFIX}-{}-gone", lab.tag())).unwrap();
    let gone_name = gone.name().to_owned();
    let add = |ifname: &str, backend: &str, mac: &str, ip: &str| {
        lab.attach()
            .ok(&[
                "add",
                "macvlan",
                "--parent",
                NODE_IF,
                "--netns",
                &gone_name,
                "--ifname",
                ifname,
                "--backend",
                backend,
                "--mac",
                mac,
                "--ip",
                ip,
            ])
            .unwrap();
    };
    add("eth0", "ebpf", &mac_of(2), &v4);
    add("eth1", "native", &mac_of(3), "10.77.0.13/24");
    let list = lab.attach().json(&["list"]).unwrap();
    let host = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["netns"] == gone_name.as_str() && r["ifname"] == "eth0")
        .and_then(|r| r["host_ifname"].as_str())
        .unwrap()
        .to_owned();
    assert!(host_links(&lab).contains(&host));
    drop(gone);

    for ifname in ["eth0", "eth1"] {
        let out = lab
            .attach()
            .json(&["del", "--netns", &gone_name, "--ifname", ifname])
            .unwrap();
        assert_eq!(out["detached"]["ifname"], ifname, "{out}");
    }
    let list = lab.attach().json(&["list"]).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["netns"], stay.ns.name());
    assert!(!host_links(&lab).contains(&host), "{host} is still there");
    let pins = pin_dir(&lab);
    for map in ["attach_eps", "attach_ports", "attach_devs"] {
        let dump = json_cmd(
            Command::new("bpftool")
                .args(["-j", "map", "dump", "pinned"])
                .arg(pins.join(map)),
            map,
        );
        assert_eq!(dump.as_array().unwrap().len(), 1, "{map}: {dump}");
    }
    assert!(ping(&stay.ns, EXT_V4), "the other attachment broke");

    // The last eBPF attachment, its namespace gone: the pins go too.
    let gone = Netns::named(&format!("{NETNS_PREFIX}-{}-gone2", lab.tag())).unwrap();
    let gone_name = gone.name().to_owned();
    lab.attach()
        .ok(&["del", "--netns", stay.ns.name()])
        .unwrap();
    lab.attach()
        .ok(&[
            "add", "macvlan", "--parent", NODE_IF, "--netns", &gone_name, "--ip", &v4,
        ])
        .unwrap();
    drop(gone);
    let out = lab.attach().json(&["del", "--netns", &gone_name]).unwrap();
    assert_eq!(out["detached"]["netns"], gone_name.as_str(), "{out}");
    let out = lab.attach().json(&["del", "--netns", &gone_name]).unwrap();
    assert_eq!(out, json!({"detached": null}));
    let after = snapshot(&lab, &[]);
    assert_eq!(after, empty, "\n{}", empty.diff(&after));
}

/// NETNS as a pid (of a process inside the container) and as a path.
#[test]
fn netns_as_a_pid_and_as_a_path() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = lab.container("c1").unwrap();
    let c2 = lab.container("c2").unwrap();
    let empty = snapshot(&lab, &[&c1, &c2]);

    let mut sleeper = c1.command(&["sleep", "60"]).spawn().unwrap();
    let pid = sleeper.id().to_string();
    let want = fs::metadata(c1.path()).unwrap().ino();
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::metadata(format!("/proc/{pid}/ns/net"))
        .map(|m| m.ino())
        .ok()
        != Some(want)
    {
        assert!(
            Instant::now() < deadline,
            "pid {pid} never entered {}",
            c1.name()
        );
        thread::sleep(Duration::from_millis(10));
    }
    let result = std::panic::catch_unwind(|| {
        let (v4, _) = Lab::container_ip(1);
        let rec = lab
            .attach()
            .json(&[
                "add", "macvlan", "--parent", NODE_IF, "--netns", &pid, "--ip", &v4,
            ])
            .unwrap();
        assert_eq!(rec["netns"], pid.as_str());
        assert!(ping(&c1, EXT_V4), "attached by pid");
        assert!(links(&c1).iter().any(|l| l["ifname"] == "eth0"));
        let out = lab.attach().json(&["del", "--netns", &pid]).unwrap();
        assert_eq!(out["detached"]["netns"], pid.as_str(), "{out}");
    });
    // That exact process, nothing else.
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }

    let path = c2.path().display().to_string();
    let (v4, _) = Lab::container_ip(2);
    for backend in ["ebpf", "native"] {
        let rec = lab
            .attach()
            .json(&[
                "add",
                "macvlan",
                "--parent",
                NODE_IF,
                "--netns",
                &path,
                "--ip",
                &v4,
                "--backend",
                backend,
            ])
            .unwrap();
        assert_eq!(rec["netns"], path.as_str());
        assert!(ping(&c2, EXT_V4), "attached by path ({backend})");
        // Added by path, found by name.
        let out = lab.attach().json(&["del", "--netns", c2.name()]).unwrap();
        assert_eq!(out["detached"]["netns"], path.as_str(), "{out}");
    }
    let after = snapshot(&lab, &[&c1, &c2]);
    assert_eq!(after, empty, "\n{}", empty.diff(&after));
}

/// `reset` detaches everything, removes every host-side veth (leftovers
/// too) and the node's pins and state.
#[test]
fn reset_removes_everything() {
    require_root();
    let lab = Lab::new().unwrap();
    let cs: Vec<_> = (1..=4)
        .map(|i| lab.container(&format!("c{i}")).unwrap())
        .collect();
    let seen: Vec<&Netns> = cs.iter().map(|c| c.as_ref()).collect();
    let empty = snapshot(&lab, &seen);
    let _eps: Vec<Endpoint> = vec![
        attach(&lab, 1, "bridge", Flavor::EbpfXdp, &[]).unwrap(),
        attach(&lab, 2, "vepa", Flavor::EbpfXdp, &["--host-access"]).unwrap(),
        attach(&lab, 3, "private", Flavor::Native, &[]).unwrap(),
        attach(&lab, 4, "bridge", Flavor::Native, &[]).unwrap(),
    ];
    // A host-side veth a crashed attach could have left.
    lab.node()
        .ok(&[
            "ip",
            "link",
            "add",
            "atk00deadbeef",
            "type",
            "veth",
            "peer",
            "name",
            "lefto",
        ])
        .unwrap();
    assert!(pin_dir(&lab).exists());
    assert!(state_dir(&lab).exists());

    let out = lab.attach().json(&["reset"]).unwrap();
    assert_eq!(out["detached"].as_array().map(Vec::len), Some(4), "{out}");
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
    assert_eq!(host_links(&lab), Vec::<String>::new());
    assert!(
        !pin_dir(&lab).exists(),
        "{} remains",
        pin_dir(&lab).display()
    );
    assert!(
        !state_dir(&lab).exists(),
        "{} remains",
        state_dir(&lab).display()
    );
    let after = snapshot(&lab, &seen);
    assert_eq!(after, empty, "\n{}", empty.diff(&after));
    // And again, on nothing.
    lab.attach().ok(&["reset"]).unwrap();
}
