//! host-local IPAM inside the CNI plugin: one data directory shared with
//! Debian's reference host-local binary, both ways (order, lease files,
//! release by either), dual stack, exhaustion, parallel ADDs, DEL twice,
//! CHECK, and the opt-out and fallback that run the binary instead.

use std::path::{Path, PathBuf};

use attach_tests::{
    cni::{Call, Leases, SYSTEM_CNI_DIR},
    lab::{Lab, Netns, require_root},
};
use serde_json::{Value, json};

/// A macvlan network with `ipam` (the data directory filled in).
fn conf(net: &str, leases: &Path, mut ipam: Value) -> String {
    ipam["type"] = json!("host-local");
    ipam["dataDir"] = json!(leases);
    json!({
        "cniVersion": "1.0.0",
        "name": net,
        "type": "attach-cni",
        "kind": "macvlan",
        "mode": "bridge",
        "parent": "eth1",
        "ipam": ipam,
    })
    .to_string()
}

fn dual_stack() -> Value {
    json!({"ranges": [
        [{"subnet": "10.78.0.0/24", "rangeStart": "10.78.0.10", "rangeEnd": "10.78.0.20"}],
        [{"subnet": "fd78::/64", "rangeStart": "fd78::10", "rangeEnd": "fd78::20"}]
    ]})
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

fn host_local() -> PathBuf {
    Path::new(SYSTEM_CNI_DIR).join("host-local")
}

/// The real host-local binary, as a runtime would run it.
fn theirs(lab: &Lab, command: &str, id: &str, cfg: &str) -> attach_tests::cni::Reply {
    let ns = lab.node().path().to_owned();
    let mut c = call(lab, command, id, None);
    c.netns = Some(&ns);
    c.run_plugin(&host_local(), cfg).unwrap()
}

fn addresses(res: &Value) -> Vec<String> {
    res["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| ip["address"].as_str().unwrap().to_owned())
        .collect()
}

/// Ours allocates, the binary next (and vice versa): each takes the next
/// address in host-local's order, the lease files are the same, and a DEL by
/// either frees what the other leased.
#[test]
fn shares_a_data_directory_with_the_binary_both_ways() {
    require_root();
    let lab = Lab::new().unwrap();
    let leases = Leases::new("ipam", lab.tag());
    let (c1, c2) = (lab.container("c1").unwrap(), lab.container("c2").unwrap());
    let cfg = conf("i1", &leases.0, dual_stack());

    // Ours first (dual stack: one address per range set), then the binary.
    let r = call(&lab, "ADD", "ours-1", Some(&c1)).run(&cfg).unwrap();
    assert!(r.ok, "{} {}", r.stdout, r.stderr);
    let res = r.json();
    assert_eq!(addresses(&res), ["10.78.0.10/24", "fd78::10/64"], "{res}");
    let addrs = c1.ok(&["ip", "addr", "show", "eth0"]).unwrap();
    assert!(addrs.contains("10.78.0.10/24") && addrs.contains("fd78::10/64"));
    assert_eq!(
        leases.leased("i1"),
        [
            ("10.78.0.10".into(), "ours-1\r\neth0".into()),
            ("fd78::10".into(), "ours-1\r\neth0".into())
        ]
    );
    assert_eq!(leases.last("i1", 0), "10.78.0.10");
    assert_eq!(leases.last("i1", 1), "fd78::10");
    let r = theirs(&lab, "ADD", "theirs-1", &cfg);
    assert!(r.ok, "{} {}", r.stdout, r.stderr);
    assert_eq!(addresses(&r.json()), ["10.78.0.11/24", "fd78::11/64"]);

    // Then ours again: after the binary's.
    let r = call(&lab, "ADD", "ours-2", Some(&c2)).run(&cfg).unwrap();
    assert!(r.ok, "{} {}", r.stdout, r.stderr);
    assert_eq!(addresses(&r.json()), ["10.78.0.12/24", "fd78::12/64"]);

    // The binary releases ours' lease, ours releases the binary's.
    assert!(theirs(&lab, "DEL", "ours-1", &cfg).ok);
    assert!(call(&lab, "DEL", "theirs-1", None).run(&cfg).unwrap().ok);
    assert_eq!(
        leases.addresses("i1"),
        ["10.78.0.12", "fd78::12"],
        "only ours-2 is left"
    );
    // Ours' DEL of ours-1 (its lease already gone) still removes the attachment.
    assert!(call(&lab, "DEL", "ours-1", Some(&c1)).run(&cfg).unwrap().ok);
    assert!(c1.ok(&["ip", "link", "show", "eth0"]).is_err());

    // The other way round, on a fresh network: the binary first.
    let cfg2 = conf("i2", &leases.0, dual_stack());
    let r = theirs(&lab, "ADD", "theirs-2", &cfg2);
    assert!(r.ok, "{}", r.stdout);
    assert_eq!(addresses(&r.json()), ["10.78.0.10/24", "fd78::10/64"]);
    let r = call(&lab, "ADD", "ours-3", Some(&c1)).run(&cfg2).unwrap();
    assert!(r.ok, "{} {}", r.stdout, r.stderr);
    assert_eq!(addresses(&r.json()), ["10.78.0.11/24", "fd78::11/64"]);
    // The binary's CHECK finds ours' lease; its DEL frees it, and then
    // ours' CHECK says the lease is gone, with host-local's words.
    assert!(theirs(&lab, "CHECK", "ours-3", &cfg2).ok);
    let r = call(&lab, "CHECK", "ours-3", Some(&c1)).run(&cfg2).unwrap();
    assert!(r.ok, "{}", r.stdout);
    assert!(theirs(&lab, "DEL", "ours-3", &cfg2).ok);
    let r = call(&lab, "CHECK", "ours-3", Some(&c1)).run(&cfg2).unwrap();
    assert_eq!(r.code(), 999, "{}", r.stdout);
    assert!(
        r.json()["msg"]
            .as_str()
            .unwrap()
            .contains("Failed to find address added by container ours-3"),
        "{}",
        r.stdout
    );
    // The binary follows ours' last reserved address (.11): with .10 freed,
    // it takes .12, as ours would.
    assert!(theirs(&lab, "DEL", "theirs-2", &cfg2).ok);
    let r = theirs(&lab, "ADD", "theirs-3", &cfg2);
    assert!(r.ok, "{}", r.stdout);
    assert_eq!(addresses(&r.json()), ["10.78.0.12/24", "fd78::12/64"]);
    for (id, ns, cfg) in [("ours-2", &c2, &cfg), ("ours-3", &c1, &cfg2)] {
        for _ in 0..2 {
            let r = call(&lab, "DEL", id, Some(ns)).run(cfg).unwrap();
            assert!(r.ok, "DEL {id}: {}", r.stdout);
        }
    }
    assert!(theirs(&lab, "DEL", "theirs-3", &cfg2).ok);
    assert!(leases.addresses("i1").is_empty() && leases.addresses("i2").is_empty());
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
}

/// A used-up range is a CNI error naming the range; the failed ADD leaves
/// nothing, and a DEL of it twice is fine.
#[test]
fn exhaustion_names_the_range_and_del_twice_is_fine() {
    require_root();
    let lab = Lab::new().unwrap();
    let leases = Leases::new("ipam", lab.tag());
    let (c1, c2) = (lab.container("c1").unwrap(), lab.container("c2").unwrap());
    let one = json!({"ranges": [
        [{"subnet": "fd79::/64", "rangeStart": "fd79::5", "rangeEnd": "fd79::7", "gateway": "fd79::6"}],
        [{"subnet": "10.79.0.0/24", "rangeStart": "10.79.0.5", "rangeEnd": "10.79.0.5"}]
    ]});
    let cfg = conf("i3", &leases.0, one);
    let r = call(&lab, "ADD", "a", Some(&c1)).run(&cfg).unwrap();
    assert!(r.ok, "{} {}", r.stdout, r.stderr);
    assert_eq!(addresses(&r.json()), ["fd79::5/64", "10.79.0.5/24"]);
    let r = call(&lab, "ADD", "b", Some(&c2)).run(&cfg).unwrap();
    assert_eq!(r.code(), 999, "{}", r.stdout);
    let msg = r.json()["msg"].as_str().unwrap().to_owned();
    assert_eq!(
        msg,
        "failed to allocate for range 1: no IP addresses available in range set: \
         10.79.0.5-10.79.0.5"
    );
    // The v6 address b got from range set 0 (fd79::7: the gateway is
    // skipped) was given back.
    assert_eq!(leases.addresses("i3"), ["10.79.0.5", "fd79::5"]);
    assert!(c2.ok(&["ip", "link", "show", "eth0"]).is_err(), "eth0 left");
    // The binary says the same.
    let r = theirs(&lab, "ADD", "c", &cfg);
    assert!(!r.ok);
    assert_eq!(r.json()["msg"], msg.as_str());
    for _ in 0..2 {
        assert!(call(&lab, "DEL", "b", Some(&c2)).run(&cfg).unwrap().ok);
        assert!(call(&lab, "DEL", "a", Some(&c1)).run(&cfg).unwrap().ok);
    }
    assert!(leases.addresses("i3").is_empty());
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
}

/// 20 plugin processes and 10 host-local binaries allocating at once from
/// one directory: 30 different addresses (the binary's lock is ours).
#[test]
fn parallel_adds_get_unique_addresses() {
    require_root();
    let lab = Lab::new().unwrap();
    let leases = Leases::new("ipam", lab.tag());
    let containers = lab.containers(20).unwrap();
    let cfg = conf(
        "i4",
        &leases.0,
        json!({"ranges": [[{"subnet": "10.80.0.0/24"}]]}),
    );
    let ids: Vec<String> = (0..30).map(|i| format!("p{i}")).collect();
    let got: Vec<Result<Vec<String>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let (lab, cfg, containers) = (&lab, &cfg, &containers);
                s.spawn(move || {
                    let r = if i < 20 {
                        call(lab, "ADD", id, Some(&containers[i])).run(cfg).unwrap()
                    } else {
                        theirs(lab, "ADD", id, cfg)
                    };
                    if r.ok {
                        Ok(addresses(&r.json()))
                    } else {
                        Err(format!("{id}: {} {}", r.stdout, r.stderr))
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<String> = Vec::new();
    for g in &got {
        all.extend(g.clone().unwrap_or_else(|e| panic!("{e}")));
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 30, "{all:?}");
    assert_eq!(leases.addresses("i4").len(), 30);
    // Addresses .2 to .31: none skipped, none twice.
    let mut want: Vec<String> = (2..32).map(|i| format!("10.80.0.{i}/24")).collect();
    want.sort();
    assert_eq!(all, want);
    for (i, id) in ids.iter().enumerate() {
        let r = if i < 20 {
            call(&lab, "DEL", id, Some(&containers[i]))
                .run(&cfg)
                .unwrap()
        } else {
            theirs(&lab, "DEL", id, &cfg)
        };
        assert!(r.ok, "DEL {id}: {}", r.stdout);
    }
    assert!(leases.addresses("i4").is_empty());
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
}

/// `"inProcess": false` runs the binary (found in CNI_PATH, so missing
/// there it is an error); a key host-local would read in another case
/// (Go's decoder ignores case) is left to the binary too, which honours it.
#[test]
fn the_opt_out_and_unknown_forms_run_the_binary() {
    require_root();
    let lab = Lab::new().unwrap();
    let leases = Leases::new("ipam", lab.tag());
    let c1 = lab.container("c1").unwrap();
    // In process by default: no binary needed.
    let cfg = conf("i5", &leases.0, dual_stack());
    let mut add = call(&lab, "ADD", "w", Some(&c1));
    add.env_extra.push(("CNI_PATH", "/nonexistent"));
    let r = add.run(&cfg).unwrap();
    assert!(r.ok, "{} {}", r.stdout, r.stderr);
    let mut del = call(&lab, "DEL", "w", Some(&c1));
    del.env_extra.push(("CNI_PATH", "/nonexistent"));
    assert!(del.run(&cfg).unwrap().ok);

    let mut ipam = dual_stack();
    ipam["inProcess"] = json!(false);
    let cfg = conf("i5", &leases.0, ipam);
    let mut add = call(&lab, "ADD", "x", Some(&c1));
    add.env_extra.push(("CNI_PATH", "/nonexistent"));
    let r = add.run(&cfg).unwrap();
    assert_eq!(r.code(), 7, "{}", r.stdout);
    assert!(r.stdout.contains("not found in CNI_PATH"), "{}", r.stdout);
    let r = call(&lab, "ADD", "x", Some(&c1)).run(&cfg).unwrap();
    assert!(r.ok, "{} {}", r.stdout, r.stderr);
    assert_eq!(addresses(&r.json()), ["10.78.0.11/24", "fd78::11/64"]);
    assert!(call(&lab, "DEL", "x", Some(&c1)).run(&cfg).unwrap().ok);

    let bad = json!({"inProcess": "no", "subnet": "10.78.1.0/24"});
    let r = call(&lab, "ADD", "y", Some(&c1))
        .run(&conf("i5", &leases.0, bad))
        .unwrap();
    assert_eq!(r.code(), 7, "{}", r.stdout);

    let odd = json!({"ranges": [[{"subnet": "10.78.2.0/24", "RangeStart": "10.78.2.50"}]]});
    let cfg = conf("i6", &leases.0, odd);
    let mut add = call(&lab, "ADD", "z", Some(&c1));
    add.env_extra.push(("CNI_PATH", "/nonexistent"));
    assert_eq!(add.run(&cfg).unwrap().code(), 7, "not the binary");
    let r = call(&lab, "ADD", "z", Some(&c1)).run(&cfg).unwrap();
    assert!(r.ok, "{} {}", r.stdout, r.stderr);
    assert_eq!(addresses(&r.json()), ["10.78.2.50/24"]);
    assert!(call(&lab, "DEL", "z", Some(&c1)).run(&cfg).unwrap().ok);
    assert!(leases.addresses("i5").is_empty() && leases.addresses("i6").is_empty());
}
