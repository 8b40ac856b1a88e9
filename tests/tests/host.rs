//! `attach add host`: the container shares the node's namespace. The engine
//! records it, counts its cgroup's traffic (cgroup_skb programs), and warns
//! about declared ports that sockets of the node or another host attachment
//! already have. Bad input is refused with the documented exit code, names
//! the value and changes nothing.

use std::{io::Read, path::Path, process::Stdio};

use attach_tests::{
    cgroup::{Cgroup, attached_programs},
    kinds::listen_in,
    lab::{EXT_V4, EXT_V6, Lab, NODE_V4, NODE_V6, ping, require_root},
    refusal::{Bad, CONFLICT, INVALID, NOT_FOUND, check_rejected},
    sleeper::Sleeper,
    snapshot::{Scope, snapshot_with},
};
use serde_json::{Value, json};

fn counters(lab: &Lab, netns: &str) -> Value {
    let stats = lab.attach().json(&["stats"]).unwrap();
    stats["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["netns"] == netns)
        .map(|a| a["counters"].clone())
        .unwrap_or(Value::Null)
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// `busybox nc -l` on `port` in the node, inside the cgroup; `ext` connects
/// to `addr` and sends a line; whether it arrived.
fn served_from_ext(lab: &Lab, cg: &Cgroup, addr: &str, port: &str) -> bool {
    let mut server = cg
        .command(
            lab.node(),
            &["timeout", "8", "busybox", "nc", "-l", "-p", port],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    lab.node().wait_listening(port.parse().unwrap()).unwrap();
    let sent = lab
        .ext()
        .sh(&format!("echo hello | timeout 6 busybox nc {addr} {port}"))
        .is_ok_and(|o| o.status.success());
    let mut got = String::new();
    if let Some(mut out) = server.stdout.take() {
        let _ = out.read_to_string(&mut got);
    }
    let _ = server.kill();
    let _ = server.wait();
    sent && got.trim() == "hello"
}

/// The container (processes of the cgroup in the node's namespace) reaches
/// the external host and is reached from it, on IPv4 and IPv6; its traffic,
/// and only its, is counted; detaching removes the programs and the pins.
#[test]
fn host_counts_its_cgroup_traffic_on_v4_and_v6() {
    require_root();
    let lab = Lab::new().unwrap();
    let cg = Cgroup::new(lab.tag(), "web").unwrap();
    let scope = Scope {
        namespaces: vec![],
        cgroups: vec![cg.path().to_owned()],
    };
    let empty = snapshot_with(&lab, &scope);
    let node = lab.node().name().to_owned();
    let cgroup = cg.path().display().to_string();

    let rec = lab
        .attach()
        .json(&["add", "host", "--netns", &node, "--cgroup", &cgroup])
        .unwrap();
    assert_eq!(rec["kind"], "host");
    assert_eq!(rec["ifname"], "-");
    assert_eq!(rec["netns"], node.as_str());
    assert_eq!(rec["mac"], Value::Null);
    assert_eq!(rec["mtu"], Value::Null);
    assert_eq!(rec["parent"], Value::Null);
    assert_eq!(rec["host"]["cgroup"], cgroup.as_str());
    assert_eq!(rec["host"]["counter_id"], 0);
    assert_eq!(rec["warnings"], json!([]));
    let progs = attached_programs(Path::new(&cgroup)).unwrap();
    assert_eq!(
        progs,
        [
            ("attach_cg_eg".to_owned(), "egress"),
            ("attach_cg_in".to_owned(), "ingress")
        ],
        "{progs:?}"
    );
    assert_eq!(counters(&lab, &node)["tx_packets"], 0);

    // Out, both families.
    for dst in [EXT_V4, EXT_V6] {
        let family = if dst.contains(':') { "-6" } else { "-4" };
        assert!(
            cg.run(
                lab.node(),
                &["ping", family, "-c", "2", "-i", "0.2", "-W", "1", dst]
            ),
            "the host container cannot reach {dst}"
        );
    }
    let c = counters(&lab, &node);
    assert!(n(&c, "tx_packets") >= 4 && n(&c, "rx_packets") >= 4, "{c}");
    assert!(n(&c, "tx_bytes") >= 4 * 84, "{c}");

    // In, both families: a TCP service of the container, reached from ext.
    for (addr, port) in [(NODE_V4, "18080"), (NODE_V6, "18086")] {
        assert!(
            served_from_ext(&lab, &cg, addr, port),
            "ext cannot reach the host container's service on {addr} port {port}"
        );
    }
    let after_tcp = counters(&lab, &node);
    assert!(
        n(&after_tcp, "rx_packets") >= n(&c, "rx_packets") + 4,
        "TCP from ext not counted: {c} then {after_tcp}"
    );

    // The node's other processes are not the container's.
    assert!(ping(lab.node(), EXT_V4) && ping(lab.node(), EXT_V6));
    assert_eq!(
        counters(&lab, &node),
        after_tcp,
        "traffic outside the cgroup was counted"
    );

    // A second host container with its own cgroup counts into its own slot:
    // each is its own.
    let api = Cgroup::new(lab.tag(), "api").unwrap();
    let proc_api = Sleeper::in_ns(lab.node()).unwrap();
    let pid = proc_api.pid().to_string();
    let api_path = api.path().display().to_string();
    let rec = lab
        .attach()
        .json(&["add", "host", "--netns", &pid, "--cgroup", &api_path])
        .unwrap();
    assert_eq!(rec["host"]["counter_id"], 1);
    assert!(api.run(lab.node(), &["ping", "-6", "-c", "3", "-i", "0.2", EXT_V6]));
    let a = counters(&lab, &pid);
    assert_eq!((n(&a, "tx_packets"), n(&a, "rx_packets")), (3, 3), "{a}");
    assert_eq!(
        counters(&lab, &node),
        after_tcp,
        "api's traffic counted for web"
    );
    assert!(cg.run(lab.node(), &["ping", "-4", "-c", "1", EXT_V4]));
    assert_eq!(counters(&lab, &pid), a, "web's traffic counted for api");
    lab.attach().ok(&["del", "--netns", &pid]).unwrap();
    proc_api.kill();
    drop(api);

    // The text table has the row.
    let table = lab.attach().ok(&["stats"]).unwrap();
    assert!(table.contains(&node), "{table}");
    lab.attach().ok(&["check", "--netns", &node]).unwrap();

    let out = lab.attach().json(&["del", "--netns", &node]).unwrap();
    assert_eq!(out["detached"]["kind"], "host", "{out}");
    let after = snapshot_with(&lab, &scope);
    assert_eq!(after, empty, "\n{}", empty.diff(&after));
    let progs = attached_programs(Path::new(&cgroup)).unwrap();
    assert!(progs.is_empty(), "{progs:?}");
    assert!(!lab.node_pin_dir().exists());
}

/// Declared ports that a socket of the node already has, or another host
/// attachment declared, are warned about (stderr, and `warnings` in JSON);
/// the attachment is still made.
#[test]
fn host_warns_about_ports_already_in_use() {
    require_root();
    let lab = Lab::new().unwrap();
    let node = lab.node().name().to_owned();
    let _sockets = listen_in(lab.node(), 18080, 15353).unwrap();

    let out = lab
        .attach()
        .run(&[
            "add",
            "host",
            "--netns",
            &node,
            "--ports",
            "tcp/18080,udp/15353,tcp/19090",
        ])
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("warning: tcp/18080: a socket in the node already listens on 0.0.0.0:18080"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: udp/15353: a socket in the node already listens on [::]:15353"),
        "{stderr}"
    );
    assert!(!stderr.contains("tcp/19090"), "{stderr}");

    // A second host container (named by its process) declares tcp/19090.
    let other = Sleeper::in_ns(lab.node()).unwrap();
    let pid = other.pid().to_string();
    let out = lab
        .attach()
        .run(&[
            "-o",
            "json",
            "add",
            "host",
            "--netns",
            &pid,
            "--ports",
            "tcp/19090",
        ])
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = format!("tcp/19090 is also declared by the host attachment of \"{node}\"");
    assert_eq!(rec["warnings"], json!([want]), "{rec}");
    assert!(stderr.contains(&want), "{stderr}");
    assert_eq!(rec["host"]["ports"], json!(["tcp/19090"]));

    let list = lab.attach().json(&["list"]).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let mine = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["netns"] == node.as_str());
    assert_eq!(
        mine.unwrap()["warnings"].as_array().map(Vec::len),
        Some(2),
        "{list}"
    );
    // Each is found by its NETNS.
    let gone = lab.attach().json(&["del", "--netns", &pid]).unwrap();
    assert_eq!(gone["detached"]["netns"], pid.as_str());
    let gone = lab.attach().json(&["del", "--netns", &node]).unwrap();
    assert_eq!(gone["detached"]["netns"], node.as_str());
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
    other.kill();
}

#[test]
fn host_bad_input_is_refused_and_changes_nothing() {
    require_root();
    let lab = Lab::new().unwrap();
    let cg = Cgroup::new(lab.tag(), "db").unwrap();
    let c1 = lab.container("c1").unwrap();
    let scope = Scope {
        namespaces: vec![&c1],
        cgroups: vec![cg.path().to_owned()],
    };
    let node = lab.node().name().to_owned();
    let cgroup = cg.path().display().to_string();
    let tmp = std::env::temp_dir().display().to_string();
    let missing_cg = format!("{cgroup}-missing");
    let add = |extra: &[&str]| {
        let mut v = vec!["add", "host"];
        v.extend(extra);
        v.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let bad = |name: &str, args: Vec<String>, code: i32, names: &str| Bad {
        name: name.into(),
        args,
        code,
        names: names.into(),
        parse: false,
    };
    let mut cases = vec![
        bad(
            "a container's namespace, not the node's",
            add(&["--netns", c1.name()]),
            INVALID,
            c1.name(),
        ),
        bad(
            "--ifname",
            add(&["--netns", &node, "--ifname", "eth0"]),
            INVALID,
            "--ifname",
        ),
        bad(
            "missing netns",
            add(&["--netns", "no-such-ns"]),
            NOT_FOUND,
            "no-such-ns",
        ),
        bad(
            "missing cgroup",
            add(&["--netns", &node, "--cgroup", &missing_cg]),
            NOT_FOUND,
            &missing_cg,
        ),
        bad(
            "not a cgroup v2 directory",
            add(&["--netns", &node, "--cgroup", &tmp]),
            INVALID,
            "not a cgroup v2 directory",
        ),
        bad(
            "a port twice",
            add(&["--netns", &node, "--ports", "tcp/80,tcp/80"]),
            INVALID,
            "tcp/80 is given twice",
        ),
        bad(
            "port 0",
            add(&["--netns", &node, "--ports", "tcp/0"]),
            INVALID,
            "tcp/0",
        )
        .parse(),
        bad(
            "sctp",
            add(&["--netns", &node, "--ports", "sctp/9"]),
            INVALID,
            "sctp/9",
        )
        .parse(),
    ];
    let mut broken = Vec::new();
    for c in &cases {
        broken.extend(check_rejected(&lab, &scope, c));
    }

    // Beside a healthy one: the same NETNS again, the same cgroup again.
    lab.attach()
        .ok(&["add", "host", "--netns", &node, "--cgroup", &cgroup])
        .unwrap();
    let other = Sleeper::in_ns(lab.node()).unwrap();
    let pid = other.pid().to_string();
    cases = vec![
        bad(
            "already attached",
            add(&["--netns", &node]),
            CONFLICT,
            &node,
        ),
        bad(
            "cgroup already counted",
            add(&["--netns", &pid, "--cgroup", &cgroup]),
            CONFLICT,
            &cgroup,
        ),
    ];
    for c in &cases {
        broken.extend(check_rejected(&lab, &scope, c));
    }
    assert!(
        cg.run(lab.node(), &["ping", "-c", "1", "-W", "1", EXT_V4]),
        "the healthy one broke"
    );
    assert!(
        counters(&lab, &node)["tx_packets"].as_u64() >= Some(1),
        "the healthy one stopped counting"
    );
    other.kill();
    assert!(broken.is_empty(), "{}", broken.join("\n\n"));
}

#[test]
fn host_del_is_idempotent_and_reset_clears_the_counters() {
    require_root();
    let lab = Lab::new().unwrap();
    let cg = Cgroup::new(lab.tag(), "app").unwrap();
    let scope = Scope {
        namespaces: vec![],
        cgroups: vec![cg.path().to_owned()],
    };
    let empty = snapshot_with(&lab, &scope);
    let node = lab.node().name().to_owned();
    let cgroup = cg.path().display().to_string();
    lab.attach().ok(&["add", "host", "--netns", &node]).unwrap();
    let first = lab.attach().json(&["del", "--netns", &node]).unwrap();
    assert_eq!(first["detached"]["kind"], "host");
    let again = lab.attach().json(&["del", "--netns", &node]).unwrap();
    assert_eq!(again, json!({"detached": null}));
    let text = lab.attach().ok(&["del", "--netns", &node]).unwrap();
    assert!(text.contains("nothing attached"), "{text}");
    assert_eq!(snapshot_with(&lab, &scope), empty);

    // Relative: under the cgroup2 mount.
    let relative = cg
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let rec = lab
        .attach()
        .json(&["add", "host", "--netns", &node, "--cgroup", &relative])
        .unwrap();
    assert_eq!(rec["host"]["cgroup"], cgroup.as_str());
    let out = lab.attach().json(&["reset"]).unwrap();
    assert_eq!(out["detached"].as_array().map(Vec::len), Some(1), "{out}");
    let after = snapshot_with(&lab, &scope);
    assert_eq!(after, empty, "\n{}", empty.diff(&after));
}

/// `reconcile` keeps the counter links of a healthy attachment, re-attaches
/// one removed behind the engine's back (the counts kept), and `upgrade`
/// switches them to this build with each attachment's own slot.
#[test]
fn host_counters_survive_reconcile_and_upgrade() {
    require_root();
    let lab = Lab::new().unwrap();
    let web = Cgroup::new(lab.tag(), "web").unwrap();
    let api = Cgroup::new(lab.tag(), "api").unwrap();
    let node = lab.node().name().to_owned();
    let proc_api = Sleeper::in_ns(lab.node()).unwrap();
    let pid = proc_api.pid().to_string();
    let (web_p, api_p) = (
        web.path().display().to_string(),
        api.path().display().to_string(),
    );
    lab.attach()
        .ok(&["add", "host", "--netns", &node, "--cgroup", &web_p])
        .unwrap();
    lab.attach()
        .ok(&["add", "host", "--netns", &pid, "--cgroup", &api_p])
        .unwrap();
    let ping_in =
        |cg: &Cgroup| assert!(cg.run(lab.node(), &["ping", "-c", "1", "-W", "1", EXT_V4]));
    ping_in(&web);
    assert_eq!(lab.attach().json(&["reconcile"]).unwrap(), json!([]));
    let links = lab.node_pin_dir().join("links");
    for pin in ["cgroup-0-in", "cgroup-0-eg", "cgroup-1-in", "cgroup-1-eg"] {
        assert!(links.join(pin).exists(), "{pin} was swept");
    }

    // A link unpinned behind the engine's back: its program is detached.
    std::fs::remove_file(links.join("cgroup-0-eg")).unwrap();
    let before = counters(&lab, &node);
    ping_in(&web);
    assert_eq!(
        n(&counters(&lab, &node), "tx_packets"),
        n(&before, "tx_packets"),
        "egress still counted without its link"
    );
    assert!(
        lab.attach()
            .run(&["check", "--netns", &node])
            .unwrap()
            .status
            .code()
            != Some(0)
    );
    let repairs = lab.attach().json(&["reconcile"]).unwrap();
    assert_eq!(repairs[0]["action"], "repaired", "{repairs}");
    lab.attach().ok(&["check", "--netns", &node]).unwrap();
    ping_in(&web);
    let after = counters(&lab, &node);
    assert!(
        n(&after, "tx_packets") > n(&before, "tx_packets") && n(&after, "rx_packets") >= 3,
        "counts lost or not resumed: {before} then {after}"
    );

    // Upgrade: every counter link switched in place, each with its slot.
    let up = lab.attach().json(&["upgrade", "--force"]).unwrap();
    let updated: Vec<&str> = up
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["action"] == "updated")
        .filter_map(|l| l["link"].as_str())
        .collect();
    for pin in ["cgroup-0-in", "cgroup-0-eg", "cgroup-1-in", "cgroup-1-eg"] {
        assert!(updated.contains(&pin), "{pin} not updated: {up}");
    }
    let (w0, a0) = (counters(&lab, &node), counters(&lab, &pid));
    ping_in(&api);
    let (w1, a1) = (counters(&lab, &node), counters(&lab, &pid));
    assert_eq!(w1, w0, "api's traffic counted for web after the upgrade");
    assert_eq!(
        n(&a1, "tx_packets"),
        n(&a0, "tx_packets") + 1,
        "{a0} then {a1}"
    );
    let again = lab.attach().json(&["upgrade"]).unwrap();
    assert!(
        again
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["action"] == "kept"),
        "{again}"
    );
    proc_api.kill();
    // Its process gone, the second one is detached by reconcile.
    let repairs = lab.attach().json(&["reconcile"]).unwrap();
    assert_eq!(repairs[0]["netns"], pid.as_str(), "{repairs}");
    assert!(
        repairs[0]["action"]
            .as_str()
            .unwrap()
            .starts_with("detached"),
        "{repairs}"
    );
}
