//! The CNI plugin, run as a runtime runs it: ADD/CHECK/DEL/GC/STATUS/VERSION
//! with Debian's reference host-local IPAM, malformed input, drift.

use std::path::{Path, PathBuf};

use attach_tests::{
    cni::{Call, Leases},
    kinds::detach_port_hook,
    lab::{EXT_V4, EXT_V6, Lab, Netns, ping, require_root},
};
use serde_json::{Value, json};

fn conf(net: &str, version: &str, leases: &Path, extra: Value) -> String {
    let mut c = json!({
        "cniVersion": version,
        "name": net,
        "type": "attach-cni",
        "kind": "macvlan",
        "mode": "bridge",
        "parent": "eth1",
        "backend": "ebpf",
        "datapath": "tc",
        "ipam": {
            "type": "host-local",
            "dataDir": leases,
            "ranges": [
                [{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.100", "rangeEnd": "10.77.0.120", "gateway": "10.77.0.1"}],
                [{"subnet": "fd77::/64", "rangeStart": "fd77::100", "rangeEnd": "fd77::120"}]
            ],
            "routes": [{"dst": "0.0.0.0/0"}]
        }
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

fn call<'a>(lab: &'a Lab, command: &'a str, id: &'a str, ns: Option<&'a Netns>) -> Call<'a> {
    Call {
        node: lab.node(),
        command,
        container_id: id,
        netns: ns.map(Netns::path),
        ifname: "eth0",
        env_extra: Vec::new(),
    }
}

#[test]
fn add_check_del_with_host_local() {
    require_root();
    let lab = Lab::new().unwrap();
    let leases = Leases::new("cni", lab.tag());
    let c1 = lab.container("c1").unwrap();
    for version in ["1.1.0", "1.0.0", "0.4.0", "0.3.1"] {
        let id = format!("c1-{}", version.replace('.', ""));
        let cfg = conf("n1", version, &leases.0, json!({}));
        let r = call(&lab, "ADD", &id, Some(&c1)).run(&cfg).unwrap();
        assert!(r.ok, "ADD {version}: {} {}", r.stdout, r.stderr);
        let res = r.json();
        assert_eq!(res["cniVersion"], version);
        assert_eq!(res["interfaces"][0]["name"], "eth0");
        assert_eq!(
            res["interfaces"][0]["sandbox"],
            c1.path().display().to_string()
        );
        let ips = res["ips"].as_array().unwrap();
        assert_eq!(ips.len(), 2, "{res}");
        assert_eq!(ips[0]["gateway"], "10.77.0.1");
        assert_eq!(ips[0].get("version").is_some(), version.starts_with("0."));
        assert_eq!(leases.leased("n1").len(), 2);
        assert!(ping(&c1, EXT_V4), "{version}: no IPv4 to the wire");
        assert!(ping(&c1, EXT_V6), "{version}: no IPv6 to the wire");
        // The default route from IPAM was installed.
        let routes = c1.ok(&["ip", "-4", "route", "show", "default"]).unwrap();
        assert!(routes.contains("via 10.77.0.1"), "{routes}");

        let mut check = json!(serde_json::from_str::<Value>(&cfg).unwrap());
        check["prevResult"] = res.clone();
        let r = call(&lab, "CHECK", &id, Some(&c1))
            .run(&check.to_string())
            .unwrap();
        assert!(r.ok, "CHECK {version}: {}", r.stdout);

        for _ in 0..2 {
            let r = call(&lab, "DEL", &id, Some(&c1)).run(&cfg).unwrap();
            assert!(r.ok, "DEL {version}: {}", r.stdout);
        }
        assert!(leases.leased("n1").is_empty(), "lease not released");
        assert!(
            c1.ok(&["ip", "link", "show", "eth0"]).is_err(),
            "eth0 left behind"
        );
    }
    assert!(!lab.node_pin_dir().exists(), "pins left after the last DEL");
}

#[test]
fn runtime_config_mac_and_ips_are_honoured() {
    require_root();
    let lab = Lab::new().unwrap();
    let leases = Leases::new("cni", lab.tag());
    let c1 = lab.container("c1").unwrap();
    let cfg = conf(
        "n2",
        "1.0.0",
        &leases.0,
        json!({"runtimeConfig": {"mac": "02:aa:bb:cc:dd:01", "ips": ["10.77.0.115/24"]},
               "capabilities": {"mac": true, "ips": true}}),
    );
    let r = call(&lab, "ADD", "rc", Some(&c1)).run(&cfg).unwrap();
    assert!(r.ok, "{} {}", r.stdout, r.stderr);
    let res = r.json();
    assert_eq!(res["interfaces"][0]["mac"], "02:aa:bb:cc:dd:01");
    assert!(res["ips"].to_string().contains("10.77.0.115/24"), "{res}");
    let link = c1.ok(&["ip", "link", "show", "eth0"]).unwrap();
    assert!(link.contains("02:aa:bb:cc:dd:01"));
    assert!(call(&lab, "DEL", "rc", Some(&c1)).run(&cfg).unwrap().ok);
}

#[test]
fn del_succeeds_when_the_namespace_is_gone() {
    require_root();
    let lab = Lab::new().unwrap();
    let leases = Leases::new("cni", lab.tag());
    let gone = Netns::new("atl-gone").unwrap();
    let cfg = conf("n3", "1.1.0", &leases.0, json!({}));
    assert!(call(&lab, "ADD", "g1", Some(&gone)).run(&cfg).unwrap().ok);
    let path = gone.path().to_owned();
    drop(gone);
    let mut del = call(&lab, "DEL", "g1", None);
    del.netns = Some(&path);
    let r = del.run(&cfg).unwrap();
    assert!(r.ok, "{}", r.stdout);
    // And with no CNI_NETNS at all, again.
    let r = call(&lab, "DEL", "g1", None).run(&cfg).unwrap();
    assert!(r.ok, "{}", r.stdout);
    assert!(leases.leased("n3").is_empty());
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
}

#[test]
fn malformed_input_gets_the_right_code_and_leaves_nothing() {
    require_root();
    let lab = Lab::new().unwrap();
    let leases = Leases::new("cni", lab.tag());
    let c1 = lab.container("c1").unwrap();
    let good = conf("n4", "1.1.0", &leases.0, json!({}));
    let with = |extra: Value| conf("n4", "1.1.0", &leases.0, extra);
    let cases: Vec<(&str, String, u64)> = vec![
        ("not JSON", "{nope".into(), 6),
        (
            "unsupported version",
            conf("n4", "9.9.9", &leases.0, json!({})),
            1,
        ),
        ("unknown key", with(json!({"colour": "red"})), 2),
        ("unknown camelCase key", with(json!({"bogusKey": true})), 2),
        ("kind null", with(json!({"kind": null})), 7),
        // Checked as the CLI checks it, after the lease (released again).
        (
            "gateway off the subnet",
            with(json!({"gateway": "192.168.9.1"})),
            7,
        ),
        ("MTU 65536", with(json!({"mtu": 65536})), 7),
        ("kind unknown", with(json!({"kind": "teleport"})), 7),
        ("bad mode", with(json!({"mode": "sideways"})), 7),
        ("bad MAC", with(json!({"runtimeConfig": {"mac": "zz"}})), 7),
        ("netns in config", with(json!({"netns": "/x"})), 2),
        ("missing parent", with(json!({"parent": "nope0"})), 7),
        (
            "unknown ipam",
            with(json!({"ipam": {"type": "no-such-ipam"}})),
            7,
        ),
        ("object value", with(json!({"mode": {"a": 1}})), 2),
    ];
    let mut cases = cases;
    // The CNI keys a configuration must have.
    for key in ["name", "type", "cniVersion"] {
        let mut c: Value = serde_json::from_str(&good).unwrap();
        c.as_object_mut().unwrap().remove(key);
        cases.push((key, c.to_string(), 7));
    }
    for (what, cfg, want) in &cases {
        let r = call(&lab, "ADD", "bad", Some(&c1)).run(cfg).unwrap();
        assert_eq!(r.code(), *want, "{what}: {}", r.stdout);
        let msg = r.json()["msg"].as_str().unwrap().to_owned();
        assert!(!msg.is_empty(), "{what}: empty msg");
        // Named, in the configuration's words, not the argument parser's.
        let names = match *what {
            "unknown key" => "\"colour\"",
            "unknown camelCase key" => "\"bogusKey\"",
            "kind null" => "null",
            "kind unknown" => "teleport",
            "gateway off the subnet" => "192.168.9.1",
            "MTU 65536" => "65536",
            "bad mode" => "sideways",
            "name" | "type" | "cniVersion" => what,
            _ => "",
        };
        assert!(msg.contains(names), "{what}: {msg}");
        for parser in [
            "unexpected argument",
            "'--",
            "error:",
            "--bogus-key",
            "Usage",
        ] {
            assert!(!msg.contains(parser), "{what}: parser wording: {msg}");
        }
        assert!(leases.leased("n4").is_empty(), "{what}: lease left");
        assert_eq!(
            lab.attach().json(&["list"]).unwrap(),
            json!([]),
            "{what}: record left"
        );
        assert!(
            c1.ok(&["ip", "link", "show", "eth0"]).is_err(),
            "{what}: eth0 left"
        );
    }
    // Environment errors.
    let missing_ns = Netns::new("atl-missing").unwrap();
    let path = missing_ns.path().to_owned();
    drop(missing_ns);
    let mut no_ns = call(&lab, "ADD", "x", None);
    no_ns.netns = Some(&path);
    assert_eq!(no_ns.run(&good).unwrap().code(), 3, "missing netns");
    assert_eq!(
        call(&lab, "ADD", "x", None).run(&good).unwrap().code(),
        4,
        "no CNI_NETNS"
    );
    // An IPAM binary needed (host-local run as its binary), CNI_PATH not
    // set: the environment is at fault.
    let mut exec = serde_json::from_str::<Value>(&good).unwrap();
    exec["ipam"]["inProcess"] = json!(false);
    let mut no_path = call(&lab, "ADD", "x", Some(&c1));
    no_path.env_extra.push(("CNI_PATH", ""));
    let r = no_path.run(&exec.to_string()).unwrap();
    assert_eq!(r.code(), 4, "no CNI_PATH: {}", r.stdout);
    assert!(r.stdout.contains("CNI_PATH"), "{}", r.stdout);
    assert!(c1.ok(&["ip", "link", "show", "eth0"]).is_err());
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
    let mut no_cmd = call(&lab, "", "x", Some(&c1));
    no_cmd.command = "";
    assert_eq!(no_cmd.run(&good).unwrap().code(), 4, "no CNI_COMMAND");
    assert_eq!(
        call(&lab, "FROB", "x", Some(&c1))
            .run(&good)
            .unwrap()
            .code(),
        4
    );
    assert!(leases.leased("n4").is_empty());
    assert!(!lab.node_pin_dir().exists(), "pins left by failed ADDs");
}

#[test]
fn version_and_status() {
    require_root();
    let lab = Lab::new().unwrap();
    let leases = Leases::new("cni", lab.tag());
    let r = call(&lab, "VERSION", "", None)
        .run(r#"{"cniVersion":"1.1.0"}"#)
        .unwrap();
    assert!(r.ok);
    let v = r.json();
    assert_eq!(v["cniVersion"], "1.1.0");
    for want in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        assert!(v["supportedVersions"].to_string().contains(want));
    }
    let good = conf("n5", "1.1.0", &leases.0, json!({}));
    assert!(call(&lab, "STATUS", "", None).run(&good).unwrap().ok);
    let no_parent = conf("n5", "1.1.0", &leases.0, json!({"parent": "nope0"}));
    assert_eq!(
        call(&lab, "STATUS", "", None)
            .run(&no_parent)
            .unwrap()
            .code(),
        50
    );
}

#[test]
fn check_finds_drift() {
    require_root();
    let lab = Lab::new().unwrap();
    let leases = Leases::new("cni", lab.tag());
    let c1 = lab.container("c1").unwrap();
    let cfg = conf("n6", "1.1.0", &leases.0, json!({}));
    let add = call(&lab, "ADD", "d1", Some(&c1)).run(&cfg).unwrap();
    assert!(add.ok, "{}", add.stdout);
    let mut check = serde_json::from_str::<Value>(&cfg).unwrap();
    check["prevResult"] = add.json();
    let check = check.to_string();
    assert!(call(&lab, "CHECK", "d1", Some(&c1)).run(&check).unwrap().ok);

    // The endpoint's transmit program detached behind the engine's back.
    let rec = &lab.attach().json(&["list"]).unwrap()[0];
    detach_port_hook(lab.node().path(), rec["host_ifname"].as_str().unwrap());
    let r = call(&lab, "CHECK", "d1", Some(&c1)).run(&check).unwrap();
    assert_eq!(r.code(), 102, "{}", r.stdout);
    assert!(r.stdout.contains("transmit"), "{}", r.stdout);

    // An address removed inside the container.
    let addr = add.json()["ips"][0]["address"].as_str().unwrap().to_owned();
    c1.ok(&["ip", "addr", "del", &addr, "dev", "eth0"]).unwrap();
    let r = call(&lab, "CHECK", "d1", Some(&c1)).run(&check).unwrap();
    assert_eq!(r.code(), 102);

    // Unknown container.
    assert_eq!(
        call(&lab, "CHECK", "nobody", Some(&c1))
            .run(&check)
            .unwrap()
            .code(),
        3
    );
    assert!(call(&lab, "DEL", "d1", Some(&c1)).run(&cfg).unwrap().ok);
}

#[test]
fn gc_removes_what_is_not_valid() {
    require_root();
    let lab = Lab::new().unwrap();
    let leases = Leases::new("cni", lab.tag());
    let cfg = conf("n7", "1.1.0", &leases.0, json!({}));
    let names = ["g1", "g2", "g3"];
    let nss: Vec<_> = names.iter().map(|n| lab.container(n).unwrap()).collect();
    for (n, ns) in names.iter().zip(&nss) {
        let r = call(&lab, "ADD", n, Some(ns)).run(&cfg).unwrap();
        assert!(r.ok, "{}", r.stdout);
    }
    assert_eq!(leases.leased("n7").len(), 6);
    let gc = conf(
        "n7",
        "1.1.0",
        &leases.0,
        json!({"cni.dev/valid-attachments": [{"containerID": "g2", "ifname": "eth0"}]}),
    );
    let r = call(&lab, "GC", "", None).run(&gc).unwrap();
    assert!(r.ok, "{} {}", r.stdout, r.stderr);
    let list = lab.attach().json(&["list"]).unwrap();
    let left: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cni"]["container_id"].clone())
        .collect();
    assert_eq!(left, vec![json!("g2")]);
    assert_eq!(
        leases.leased("n7").len(),
        2,
        "leases of collected attachments"
    );
    assert!(ping(&nss[1], EXT_V4), "the valid attachment broke");
    assert!(nss[0].ok(&["ip", "link", "show", "eth0"]).is_err());
    assert!(call(&lab, "DEL", "g2", Some(&nss[1])).run(&cfg).unwrap().ok);
}

#[test]
fn status_reports_limited_connectivity_when_the_datapath_breaks() {
    require_root();
    let lab = Lab::new().unwrap();
    let leases = Leases::new("cni", lab.tag());
    let c1 = lab.container("c1").unwrap();
    let cfg = conf("n8", "1.1.0", &leases.0, json!({}));
    assert!(call(&lab, "ADD", "s1", Some(&c1)).run(&cfg).unwrap().ok);
    assert!(call(&lab, "STATUS", "", None).run(&cfg).unwrap().ok);
    // The parent's receive program goes: existing containers are cut off.
    let rec = &lab.attach().json(&["list"]).unwrap()[0];
    let parent = rec["parent_ifindex"].as_u64().unwrap();
    std::fs::remove_file(lab.node_pin_dir().join(format!("links/parent-{parent}-rx"))).unwrap();
    let r = call(&lab, "STATUS", "", None).run(&cfg).unwrap();
    assert_eq!(r.code(), 51, "{}", r.stdout);
    lab.attach().ok(&["reconcile"]).unwrap();
    assert!(call(&lab, "STATUS", "", None).run(&cfg).unwrap().ok);
    assert!(call(&lab, "DEL", "s1", Some(&c1)).run(&cfg).unwrap().ok);
}

/// An IPAM plugin of the test's own, in a directory removed on drop.
struct FakeIpam(PathBuf);

impl FakeIpam {
    /// A plugin `fake-ipam` that fails every call with `reply`.
    fn failing(lab: &Lab, reply: &Value) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("attach-fake-ipam-{}", lab.tag()));
        std::fs::create_dir_all(&dir).unwrap();
        let plugin = dir.join("fake-ipam");
        std::fs::write(
            &plugin,
            format!("#!/bin/sh\ncat >/dev/null\necho '{reply}'\nexit 1\n"),
        )
        .unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self(dir)
    }
}

impl Drop for FakeIpam {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An IPAM plugin's error reaches the runtime with the plugin's own code
/// and message (11, try again later; host-local's 999 when its range is
/// used up), and the failed ADD leaves nothing.
#[test]
fn ipam_errors_keep_their_code_and_message() {
    require_root();
    let lab = Lab::new().unwrap();
    let leases = Leases::new("cni", lab.tag());
    let c1 = lab.container("c1").unwrap();
    let fake = FakeIpam::failing(
        &lab,
        &json!({"cniVersion": "1.0.0", "code": 11, "msg": "pool busy, try again", "details": "lease file locked"}),
    );
    let cfg = conf(
        "n9",
        "1.0.0",
        &leases.0,
        json!({"ipam": {"type": "fake-ipam"}}),
    );
    let plugin_dir = attach_tests::cni::plugin().unwrap();
    let cni_path = format!(
        "{}:{}",
        fake.0.display(),
        plugin_dir.parent().unwrap().display()
    );
    let mut add = call(&lab, "ADD", "i1", Some(&c1));
    add.env_extra.push(("CNI_PATH", &cni_path));
    let r = add.run(&cfg).unwrap();
    assert_eq!(r.code(), 11, "{}", r.stdout);
    let e = r.json();
    assert_eq!(e["msg"], "pool busy, try again", "{e}");
    assert!(
        e["details"].as_str().unwrap().contains("lease file locked"),
        "{e}"
    );
    assert!(c1.ok(&["ip", "link", "show", "eth0"]).is_err(), "eth0 left");
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));

    // host-local with one address: the second ADD gets host-local's own error.
    let one = json!({"ipam": {
        "type": "host-local", "dataDir": leases.0,
        "ranges": [[{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.100", "rangeEnd": "10.77.0.100"}]]
    }});
    let cfg = conf("n9", "1.0.0", &leases.0, one);
    let c2 = lab.container("c2").unwrap();
    let r = call(&lab, "ADD", "i1", Some(&c1)).run(&cfg).unwrap();
    assert!(r.ok, "{}", r.stdout);
    let r = call(&lab, "ADD", "i2", Some(&c2)).run(&cfg).unwrap();
    assert_eq!(r.code(), 999, "{}", r.stdout);
    let msg = r.json()["msg"].as_str().unwrap().to_owned();
    assert!(msg.contains("no IP addresses available"), "{msg}");
    assert!(c2.ok(&["ip", "link", "show", "eth0"]).is_err(), "eth0 left");
    assert!(call(&lab, "DEL", "i1", Some(&c1)).run(&cfg).unwrap().ok);
    assert!(leases.leased("n9").is_empty());
}

/// The configuration's `dns` is in the result though host-local gives an
/// empty one; CNI_ARGS `MAC=` (podman's --mac-address) is the interface's
/// MAC, `IP=` picks host-local's lease, and without IPAM is the address.
#[test]
fn dns_and_cni_args_are_honoured() {
    require_root();
    let lab = Lab::new().unwrap();
    let leases = Leases::new("cni", lab.tag());
    let c1 = lab.container("c1").unwrap();
    let dns = json!({"nameservers": ["10.77.0.53"], "search": ["example.test"]});
    let cfg = conf("n10", "1.0.0", &leases.0, json!({"dns": dns}));
    let mut add = call(&lab, "ADD", "a1", Some(&c1));
    add.env_extra.push((
        "CNI_ARGS",
        "IgnoreUnknown=1;MAC=02:aa:bb:cc:dd:07;IP=10.77.0.110",
    ));
    let r = add.run(&cfg).unwrap();
    assert!(r.ok, "{} {}", r.stdout, r.stderr);
    let res = r.json();
    assert_eq!(res["dns"], dns, "{res}");
    assert_eq!(res["interfaces"][0]["mac"], "02:aa:bb:cc:dd:07", "{res}");
    assert!(res["ips"].to_string().contains("10.77.0.110/24"), "{res}");
    let link = c1.ok(&["ip", "link", "show", "eth0"]).unwrap();
    assert!(link.contains("02:aa:bb:cc:dd:07"), "{link}");
    let addrs = c1.ok(&["ip", "addr", "show", "eth0"]).unwrap();
    assert!(addrs.contains("10.77.0.110/24"), "{addrs}");
    assert!(ping(&c1, EXT_V4));
    assert!(call(&lab, "DEL", "a1", Some(&c1)).run(&cfg).unwrap().ok);

    // No IPAM: IP= is the static address.
    let cfg = conf("n10", "1.0.0", &leases.0, json!({"ipam": null}));
    let mut add = call(&lab, "ADD", "a2", Some(&c1));
    add.env_extra.push((
        "CNI_ARGS",
        "IgnoreUnknown=1;MAC=02:aa:bb:cc:dd:08;IP=10.77.0.111/24",
    ));
    let r = add.run(&cfg).unwrap();
    assert!(r.ok, "{} {}", r.stdout, r.stderr);
    let addrs = c1.ok(&["ip", "addr", "show", "eth0"]).unwrap();
    assert!(
        addrs.contains("10.77.0.111/24") && addrs.contains("02:aa:bb:cc:dd:08"),
        "{addrs}"
    );
    assert!(call(&lab, "DEL", "a2", Some(&c1)).run(&cfg).unwrap().ok);
    // A bad MAC in CNI_ARGS is named, and nothing is made.
    let mut add = call(&lab, "ADD", "a3", Some(&c1));
    add.env_extra
        .push(("CNI_ARGS", "MAC=zz:00;IP=10.77.0.112/24"));
    let r = add.run(&cfg).unwrap();
    assert_eq!(r.code(), 7, "{}", r.stdout);
    let msg = r.json()["msg"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("CNI_ARGS MAC") && msg.contains("zz:00"),
        "{msg}"
    );
    assert!(c1.ok(&["ip", "link", "show", "eth0"]).is_err(), "eth0 left");
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
    assert!(leases.leased("n10").is_empty());
}

/// Two networks in one pod (as Multus adds them: `eth0`, then `net1`):
/// each its own attachment, checked and deleted on its own; the first keeps
/// working when the second goes.
#[test]
fn a_second_attachment_in_one_namespace_works() {
    require_root();
    let lab = Lab::new().unwrap();
    let leases = Leases::new("cni", lab.tag());
    let c1 = lab.container("c1").unwrap();
    let first = conf("n1", "1.0.0", &leases.0, json!({}));
    let second = conf(
        "n2",
        "1.0.0",
        &leases.0,
        json!({"ipam": {
            "type": "host-local",
            "dataDir": leases.0,
            "ranges": [[{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.130", "rangeEnd": "10.77.0.140"}]]
        }}),
    );
    let add = |cfg: &str, ifname: &'static str| {
        let mut c = call(&lab, "ADD", "pod1", Some(&c1));
        c.ifname = ifname;
        let r = c.run(cfg).unwrap();
        assert!(r.ok, "ADD {ifname}: {} {}", r.stdout, r.stderr);
        r.json()
    };
    let run = |command: &'static str, cfg: &str, ifname: &'static str| {
        let mut c = call(&lab, command, "pod1", Some(&c1));
        c.ifname = ifname;
        let r = c.run(cfg).unwrap();
        assert!(r.ok, "{command} {ifname}: {} {}", r.stdout, r.stderr);
    };
    let res0 = add(&first, "eth0");
    let res1 = add(&second, "net1");
    assert_eq!(res1["interfaces"][0]["name"], "net1", "{res1}");
    for ifname in ["eth0", "net1"] {
        c1.ok(&["ip", "link", "show", ifname]).unwrap();
    }
    let list = lab.attach().json(&["list"]).unwrap();
    let mut names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ifname"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["eth0", "net1"], "{list}");
    for (cfg, res, ifname) in [(&first, &res0, "eth0"), (&second, &res1, "net1")] {
        let mut check: Value = serde_json::from_str(cfg).unwrap();
        check["prevResult"] = res.clone();
        run("CHECK", &check.to_string(), ifname);
    }
    run("DEL", &second, "net1");
    assert!(c1.ok(&["ip", "link", "show", "net1"]).is_err(), "net1 left");
    assert!(ping(&c1, EXT_V4), "eth0 no longer reaches the wire");
    let mut check: Value = serde_json::from_str(&first).unwrap();
    check["prevResult"] = res0;
    run("CHECK", &check.to_string(), "eth0");
    run("DEL", &first, "eth0");
    assert!(leases.leased("n1").is_empty() && leases.leased("n2").is_empty());
    assert!(!lab.node_pin_dir().exists(), "pins left after the last DEL");
}
