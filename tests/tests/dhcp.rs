//! DHCP without a daemon, against dnsmasq on the wire (in the lab's `ext`
//! host): macvlan and ipvlan endpoints each get their own lease (ipvlan
//! told apart by its client identifier), the agent renews it past T1, del
//! releases it (reset too), and the CNI plugin's `"dhcp": true` gets one whose
//! address, gateway and DNS are in its result; a leased address another host
//! answers for is refused and declined. Containers in a VM (nested)
//! lease on their VLAN of the VM's uplink, through the host's switch,
//! renewed by the VM's agent. Rebinding past T2: `dhcp_rebind.rs`.

use std::{
    thread,
    time::{Duration, Instant},
};

use attach_tests::{
    cni::Call,
    dhcp::{Agent, add, run_add},
    dnsmasq::Dnsmasq,
    lab::{EXT_IF, Lab, NODE_IF, Netns, ping, require_root},
    refusal::text,
    snapshot::snapshot,
    vm::{nested_mac, vm, vm_state},
};
use serde_json::{Value, json};

/// Checks that `rec`'s lease is in its record and in its container.
fn leased(rec: &Value, c: &Netns) -> String {
    let lease = &rec["dhcp"];
    let addr = lease["address"].as_str().expect("a lease in the record");
    assert!(addr.starts_with("10.77.0.1"), "{rec}");
    assert_eq!(rec["ips"], json!([format!("{addr}/24")]), "{rec}");
    assert_eq!(rec["gateway"], "10.77.0.1", "{rec}");
    assert_eq!(lease["server"], "10.77.0.1", "{rec}");
    assert_eq!(lease["dns"], json!(["10.77.0.53"]), "{rec}");
    assert_eq!(lease["t1"], 15, "{rec}");
    let shown = c.ok(&["ip", "-4", "-o", "addr", "show", "eth0"]).unwrap();
    assert!(shown.contains(&format!("{addr}/24")), "{shown}");
    let route = c.ok(&["ip", "-4", "route", "show", "default"]).unwrap();
    assert!(route.contains("via 10.77.0.1"), "{route}");
    assert!(ping(c, "10.77.0.1"), "{addr} cannot reach the server");
    addr.to_owned()
}

#[test]
fn macvlan_and_ipvlan_get_their_own_leases_and_del_releases_them() {
    require_root();
    let lab = Lab::new().unwrap();
    let dnsmasq = Dnsmasq::start(&lab).unwrap();
    let c1 = lab.container("c1").unwrap();
    let c2 = lab.container("c2").unwrap();
    // What the lease gives cannot be given too; ipvlan l3 has no broadcast.
    for (args, says) in [
        (
            vec!["--ip", "10.77.0.9/24"],
            "--dhcp and --ip exclude each other",
        ),
        (vec!["--mode", "l3"], "--dhcp needs ipvlan mode l2"),
    ] {
        let mut argv = vec![
            "add",
            "ipvlan",
            "--parent",
            NODE_IF,
            "--netns",
            c1.name(),
            "--dhcp",
        ];
        argv.extend(args);
        let out = lab.attach().run(&argv).unwrap();
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
    }
    let (mac_rec, warned) = add(&lab, "macvlan", c1.name());
    // No agent runs: add says the lease will run out.
    assert!(
        warned.contains("attach: warning: no agent runs on this node to renew the lease"),
        "{warned}"
    );
    let (ipv_rec, _) = add(&lab, "ipvlan", c2.name());
    let a1 = leased(&mac_rec, &c1);
    let a2 = leased(&ipv_rec, &c2);
    assert_ne!(a1, a2);
    // The ipvlan endpoint speaks with the parent's MAC, the macvlan one
    // with its own: each known to the server by its client identifier.
    assert_eq!(ipv_rec["dhcp"]["chaddr"], ipv_rec["mac"]);
    assert_eq!(mac_rec["dhcp"]["chaddr"], mac_rec["mac"]);
    let id1 = mac_rec["dhcp"]["client_id"].as_str().unwrap().to_owned();
    let id2 = ipv_rec["dhcp"]["client_id"].as_str().unwrap().to_owned();
    assert_ne!(id1, id2);
    let leases = dnsmasq.leases();
    for (id, addr) in [(&id1, &a1), (&id2, &a2)] {
        assert!(
            leases
                .lines()
                .any(|l| l.contains(&format!(" {addr} ")) && l.ends_with(id.as_str())),
            "{addr} for {id} not in dnsmasq's leases:\n{leases}"
        );
    }
    lab.attach().ok(&["check", "--netns", c1.name()]).unwrap();
    let listed = lab.attach().ok(&["list"]).unwrap();
    for a in [&a1, &a2] {
        assert!(
            listed.contains(&format!("lease of {a} from 10.77.0.1, expires 20")),
            "{listed}"
        );
    }
    // del gives each lease back.
    for (c, id) in [(&c1, &id1), (&c2, &id2)] {
        let out = lab.attach().run(&["del", "--netns", c.name()]).unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            !text(&out.stderr).contains("warning"),
            "{}",
            text(&out.stderr)
        );
        dnsmasq.wait_for(|| !dnsmasq.leases().contains(id.as_str()), "the release");
    }
}

#[test]
fn the_agent_renews_a_lease_past_t1() {
    require_root();
    let lab = Lab::new().unwrap();
    let _dnsmasq = Dnsmasq::start(&lab).unwrap();
    let c = lab.container("c1").unwrap();
    let _agent = Agent::start(&lab);
    let (rec, warned) = add(&lab, "macvlan", c.name());
    assert!(!warned.contains("no agent runs"), "{warned}");
    let first = rec["dhcp"].clone();
    let at = |l: &Value, k: &str| l[k].as_u64().unwrap();
    // T1 is 15 s; the agent reconciles every 2 s.
    let deadline = Instant::now() + Duration::from_secs(40);
    let renewed = loop {
        let now = lab.record(&c)["dhcp"].clone();
        if at(&now, "renewed_at") > at(&first, "renewed_at") {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not renew the lease within 40 s: {now}"
        );
        thread::sleep(Duration::from_millis(500));
    };
    assert!(at(&renewed, "expires_at") > at(&first, "expires_at"));
    assert!(at(&renewed, "renewed_at") >= at(&first, "renewed_at") + 15);
    assert_eq!(renewed["address"], first["address"]);
    lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
}

/// CNI ADD with configuration `conf` from the node `node` for container
/// `c` gets a lease from `dnsmasq` into its result; DEL releases it.
fn cni_leases(node: &Netns, conf: &str, c: &Netns, dnsmasq: &Dnsmasq) {
    let call = |command| Call {
        node,
        command,
        container_id: "dhcp-c1",
        netns: Some(c.path()),
        ifname: "eth0",
        env_extra: vec![("ATTACH_NO_AGENT", "1")],
    };
    let reply = call("ADD").run(conf).unwrap();
    assert!(reply.ok, "{}", reply.stderr);
    let r = reply.json();
    let addr = r["ips"][0]["address"].as_str().unwrap().to_owned();
    assert!(
        addr.starts_with("10.77.0.1") && addr.ends_with("/24"),
        "{r}"
    );
    assert_eq!(r["ips"][0]["gateway"], "10.77.0.1", "{r}");
    assert_eq!(r["dns"]["nameservers"], json!(["10.77.0.53"]), "{r}");
    let ip = addr.trim_end_matches("/24").to_owned();
    assert!(dnsmasq.leases().contains(&format!(" {ip} ")));
    assert!(ping(c, "10.77.0.1"), "{ip} cannot reach the server");
    let reply = call("DEL").run(conf).unwrap();
    assert!(reply.ok, "{}", reply.stderr);
    dnsmasq.wait_for(
        || !dnsmasq.leases().contains(&format!(" {ip} ")),
        "the release",
    );
}

#[test]
fn the_cni_plugin_gets_a_lease_into_its_result() {
    require_root();
    let lab = Lab::new().unwrap();
    let dnsmasq = Dnsmasq::start(&lab).unwrap();
    let c = lab.container("c1").unwrap();
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "dhcpnet",
        "type": "attach-cni",
        "kind": "macvlan",
        "parent": NODE_IF,
        "dhcp": true,
    })
    .to_string();
    cni_leases(lab.node(), &conf, &c, &dnsmasq);
}

/// The CNI plugin in a VM: `"kind": "nested"` with `"dhcp": true` leases on
/// the container's VLAN (its host side attached first, by its MAC).
#[test]
fn the_cni_plugin_leases_for_a_nested_container() {
    require_root();
    let lab = Lab::new().unwrap();
    let dnsmasq = Dnsmasq::start(&lab).unwrap();
    let vm1 = vm(&lab, "vm1", "tap1").unwrap();
    let c = lab.container("vm1c").unwrap();
    let mac = nested_mac(31);
    lab.attach()
        .ok(&[
            "add",
            "nested-host",
            "--tap",
            "tap1",
            "--vlan",
            "100",
            "--parent",
            NODE_IF,
            "--mac",
            &mac,
        ])
        .unwrap();
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "nestnet",
        "type": "attach-cni",
        "kind": "nested",
        "uplink": "eth0",
        "vlan": 100,
        "mac": mac,
        "dhcp": true,
    })
    .to_string();
    cni_leases(&vm1.ns, &conf, &c, &dnsmasq);
}

#[test]
fn no_server_is_an_error_naming_the_device_and_nothing_is_left() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = lab.container("c1").unwrap();
    let empty = snapshot(&lab, &[&c]);
    let started = Instant::now();
    let out = run_add(&lab, &["add", "macvlan"], c.name());
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("no DHCP server answered on {NODE_IF} within 4 s")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(snapshot(&lab, &[&c]), empty);
}

/// dnsmasq whose only address to lease is another host's on the wire (a
/// macvlan of wire0 in a namespace of its own, returned to be kept); without
/// its ping check, dnsmasq offers it anyway.
fn squatted_server(lab: &Lab) -> (Dnsmasq, std::sync::Arc<Netns>) {
    let squatter = lab.container("squatter").unwrap();
    let ext = |argv: &[&str]| lab.ext().ok(argv).unwrap();
    ext(&[
        "ip", "link", "add", "sq0", "link", EXT_IF, "type", "macvlan", "mode", "bridge",
    ]);
    ext(&["ip", "link", "set", "sq0", "netns", squatter.name()]);
    squatter
        .ok(&["ip", "addr", "add", "10.77.0.100/24", "dev", "sq0"])
        .unwrap();
    squatter.ok(&["ip", "link", "set", "sq0", "up"]).unwrap();
    let dnsmasq = Dnsmasq::start_with(lab, "10.77.0.100,10.77.0.100", &["--no-ping"]).unwrap();
    (dnsmasq, squatter)
}

/// The lease's address is another host's: `add` refuses it (exit 4),
/// leaves nothing, and declines it to the server (DHCPDECLINE, RFC 2131
/// 3.1.5), which drops the lease.
#[test]
fn a_leased_address_another_host_answers_for_is_refused_and_declined() {
    require_root();
    let lab = Lab::new().unwrap();
    let (dnsmasq, _squatter) = squatted_server(&lab);
    let c = lab.container("c1").unwrap();
    let empty = snapshot(&lab, &[&c]);
    let out = run_add(&lab, &["add", "macvlan"], c.name());
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("address 10.77.0.100 is in use")
            && err.contains("the lease from 10.77.0.1 is declined"),
        "{err}"
    );
    assert_eq!(snapshot(&lab, &[&c]), empty);
    // It was leased, and declined by the failed add.
    assert!(dnsmasq.log().contains("DHCPACK"), "{}", dnsmasq.log());
    dnsmasq.wait_for(
        || {
            dnsmasq.log().contains("DHCPDECLINE(wire0) 10.77.0.100")
                && !dnsmasq.leases().contains("10.77.0.100")
        },
        "the decline",
    );
    assert!(!dnsmasq.log().contains("DHCPRELEASE"), "{}", dnsmasq.log());
}

/// The same for a VM's container: the decline leaves the VM's uplink on
/// the container's VLAN, like its DISCOVER, and nothing is left in the VM.
#[test]
fn a_nested_leased_address_in_use_is_declined_on_its_vlan() {
    require_root();
    let lab = Lab::new().unwrap();
    let (dnsmasq, _squatter) = squatted_server(&lab);
    let vm1 = vm(&lab, "vm1", "tap1").unwrap();
    let c = lab.container("vm1c").unwrap();
    let mac = nested_mac(31);
    lab.attach()
        .ok(&[
            "add",
            "nested-host",
            "--tap",
            "tap1",
            "--vlan",
            "100",
            "--parent",
            NODE_IF,
            "--mac",
            &mac,
        ])
        .unwrap();
    let before = vm_state(&vm1, &[&c]);
    let out = vm1
        .engine
        .run(&[
            "add",
            "nested",
            "--netns",
            c.name(),
            "--uplink",
            "eth0",
            "--vlan",
            "100",
            "--mac",
            &mac,
            "--dhcp",
        ])
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("address 10.77.0.100 is in use") && err.contains("on eth0 VLAN 100 "),
        "{err}"
    );
    assert_eq!(vm_state(&vm1, &[&c]), before);
    dnsmasq.wait_for(
        || {
            dnsmasq
                .log()
                .contains(&format!("DHCPDECLINE(wire0) 10.77.0.100 {mac}"))
                && !dnsmasq.leases().contains("10.77.0.100")
        },
        "the decline",
    );
}

#[test]
fn ports_of_an_ebpf_switch_lease_through_its_uplink() {
    require_root();
    let lab = Lab::new().unwrap();
    let dnsmasq = Dnsmasq::start(&lab).unwrap();
    let c1 = lab.container("c1").unwrap();
    let c2 = lab.container("c2").unwrap();
    // The first port names the uplink; the second finds it on the switch.
    for (c, extra) in [(&c1, vec!["--uplink", NODE_IF]), (&c2, vec![])] {
        let mut argv = vec![
            "-o",
            "json",
            "add",
            "bridge",
            "--bridge",
            "swd",
            "--netns",
            c.name(),
            "--dhcp",
        ];
        argv.extend(extra);
        let out = lab.attach().run(&argv).unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
        let addr = leased(&rec, c);
        assert!(dnsmasq.leases().contains(&format!(" {addr} ")));
    }
    for c in [&c1, &c2] {
        lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
    }
    dnsmasq.wait_for(|| dnsmasq.leases().trim().is_empty(), "both releases");
}

/// `attach reset` gives every lease back before it removes the endpoints.
#[test]
fn reset_releases_every_lease() {
    require_root();
    let lab = Lab::new().unwrap();
    let dnsmasq = Dnsmasq::start(&lab).unwrap();
    let c1 = lab.container("c1").unwrap();
    let (rec, _) = add(&lab, "macvlan", c1.name());
    let id = rec["dhcp"]["client_id"].as_str().unwrap().to_owned();
    assert!(dnsmasq.leases().contains(&id), "{}", dnsmasq.leases());
    lab.attach().ok(&["reset"]).unwrap();
    dnsmasq.wait_for(|| !dnsmasq.leases().contains(&id), "the release on reset");
}

/// Containers in a VM lease on their VLAN: the VM's engine speaks DHCP on
/// its uplink in frames tagged as the container's (VLAN 100; S-tag 10
/// around VLAN 100 for a second VM's), the host side takes the tags off
/// towards the wire; each gets its own lease, the VM's agent renews it
/// past T1, `check` is clean, `del` in the VM releases it.
#[test]
fn nested_endpoints_lease_on_their_vlan_renew_and_release() {
    require_root();
    let lab = Lab::new().unwrap();
    let dnsmasq = Dnsmasq::start(&lab).unwrap();
    let vm1 = vm(&lab, "vm1", "tap1").unwrap();
    let vm3 = vm(&lab, "vm3", "tap3").unwrap();
    let mut endpoints = Vec::new();
    for (vm, name, qinq, last) in [(&vm1, "vm1c", None, 31), (&vm3, "vm3c", Some("10"), 51)] {
        let c = lab.container(name).unwrap();
        let mac = nested_mac(last);
        // The host side first: its VLAN reaches the wire, for the MAC the
        // VM side will have. No addresses: the lease is not known yet.
        let mut host = vec![
            "add",
            "nested-host",
            "--tap",
            &vm.tap,
            "--vlan",
            "100",
            "--parent",
            NODE_IF,
            "--mac",
            &mac,
        ];
        let mut guest = vec![
            "-o",
            "json",
            "add",
            "nested",
            "--netns",
            c.name(),
            "--uplink",
            "eth0",
            "--vlan",
            "100",
            "--mac",
            &mac,
            "--dhcp",
        ];
        if let Some(q) = qinq {
            host.extend(["--qinq", q]);
            guest.extend(["--qinq", q]);
        }
        lab.attach().ok(&host).unwrap();
        let agent = qinq.is_none().then(|| Agent::start_in(&vm.ns));
        let out = vm.engine.run(&guest).unwrap();
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
        let addr = leased(&rec, &c);
        assert_eq!(rec["dhcp"]["chaddr"], json!(mac), "{rec}");
        let id = rec["dhcp"]["client_id"].as_str().unwrap().to_owned();
        assert!(
            dnsmasq
                .leases()
                .lines()
                .any(|l| l.contains(&format!(" {addr} ")) && l.ends_with(id.as_str())),
            "{addr} for {id} not in dnsmasq's leases:\n{}",
            dnsmasq.leases()
        );
        vm.engine.ok(&["check", "--netns", c.name()]).unwrap();
        endpoints.push((vm, c, rec, agent));
    }
    assert_ne!(endpoints[0].2["ips"], endpoints[1].2["ips"]);

    // The VM's agent renews its container's lease past T1 (15 s; it
    // reconciles every 2 s), from inside the container, through the VLAN.
    let (vm, c, first, _agent) = &endpoints[0];
    let at = |l: &Value, k: &str| l[k].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    let renewed = loop {
        let list = vm.engine.json(&["list"]).unwrap();
        let now = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["netns"] == c.name())
            .unwrap()["dhcp"]
            .clone();
        if at(&now, "renewed_at") > at(&first["dhcp"], "renewed_at") {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the VM's agent did not renew the lease within 40 s: {now}"
        );
        thread::sleep(Duration::from_millis(500));
    };
    assert!(at(&renewed, "expires_at") > at(&first["dhcp"], "expires_at"));
    assert_eq!(renewed["address"], first["dhcp"]["address"]);

    // del in the VM gives each lease back, from inside the container.
    for (vm, c, rec, _) in &endpoints {
        let out = vm.engine.run(&["del", "--netns", c.name()]).unwrap();
        let err = text(&out.stderr);
        assert!(out.status.success() && !err.contains("warning"), "{err}");
        let id = rec["dhcp"]["client_id"].as_str().unwrap();
        dnsmasq.wait_for(|| !dnsmasq.leases().contains(id), "the release");
    }
}
