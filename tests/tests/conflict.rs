//! Address conflict detection: an address another host on the wire answers
//! for is refused (exit 4, naming the address and the MAC that answered)
//! before anything is made; a free one attaches; --no-probe skips the check.
//! A container in a VM (nested) is probed on its VLAN of the VM's uplink.

use attach_tests::{
    lab::{EXT_IF, EXT_V4, EXT_V6, Lab, NODE_IF, require_root},
    refusal::text,
    snapshot::snapshot,
    vm::{nested_mac, vm, vm_state},
};

fn ext_mac(lab: &Lab) -> String {
    let line = lab
        .ext()
        .ok(&["ip", "-br", "link", "show", EXT_IF])
        .unwrap();
    line.split_whitespace().nth(2).unwrap().to_owned()
}

/// `attach add KIND --parent NODE_IF --netns C --ip IP [extra]`.
fn add(lab: &Lab, kind: &str, netns: &str, ip: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "add", kind, "--parent", NODE_IF, "--netns", netns, "--ip", ip,
    ];
    args.extend_from_slice(extra);
    lab.attach().run(&args).unwrap()
}

#[test]
fn an_address_of_another_host_is_refused_before_anything_is_made() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = lab.container("c1").unwrap();
    let empty = snapshot(&lab, &[&c]);
    let mac = ext_mac(&lab);
    for (kind, ip, addr) in [
        ("macvlan", format!("{EXT_V4}/24"), EXT_V4),
        ("macvlan", format!("{EXT_V6}/64"), EXT_V6),
        ("ipvlan", format!("{EXT_V4}/24"), EXT_V4),
    ] {
        let out = add(&lab, kind, c.name(), &ip, &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{kind} {ip}: {err}");
        assert!(
            err.contains(&format!("address {addr} is in use")) && err.contains(&mac),
            "{kind} {ip}: {err}"
        );
        assert_eq!(snapshot(&lab, &[&c]), empty, "{kind} {ip} left something");
    }
}

#[test]
fn a_free_address_attaches_and_no_probe_skips_the_check() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = lab.container("c1").unwrap();
    let empty = snapshot(&lab, &[&c]);
    let out = add(&lab, "macvlan", c.name(), "10.77.0.61/24", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
    // Skipped on request: the duplicate is the user's to own.
    let out = add(
        &lab,
        "macvlan",
        c.name(),
        &format!("{EXT_V4}/24"),
        &["--no-probe"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
    assert_eq!(snapshot(&lab, &[&c]), empty);
}

/// A VM's container is probed on its VLAN: the probe leaves the VM's
/// uplink tagged as the container's frames will be (VLAN 100; S-tag 10
/// around VLAN 100 for a second VM), the host side switches it to the
/// wire, and the external host's answer comes back tagged (past the
/// uplink's receive program, there for another container). Its address is
/// refused with exit 4 and nothing is made in the VM nor on the host; a
/// free address attaches; --no-probe skips the check.
#[test]
fn a_nested_address_in_use_on_its_vlan_is_refused() {
    require_root();
    let lab = Lab::new().unwrap();
    let vm1 = vm(&lab, "vm1", "tap1").unwrap();
    let vm3 = vm(&lab, "vm3", "tap3").unwrap();
    let ext = ext_mac(&lab);
    for (vm, name, qinq, last, on) in [
        (&vm1, "vm1c", None, 31, "eth0 VLAN 100"),
        (&vm3, "vm3c", Some("10"), 51, "eth0 VLAN 100 in S-tag 10"),
    ] {
        let c = lab.container(name).unwrap();
        let mac = nested_mac(last);
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
        if let Some(q) = qinq {
            host.extend(["--qinq", q]);
        }
        lab.attach().ok(&host).unwrap();
        // Another container of the VM (VLAN 300) puts the uplink's
        // receive program in place: the answers are read before it runs.
        let other = lab.container(&format!("{name}-300")).unwrap();
        vm.engine
            .ok(&[
                "add",
                "nested",
                "--netns",
                other.name(),
                "--uplink",
                "eth0",
                "--vlan",
                "300",
                "--ip",
                "10.77.3.1/24",
            ])
            .unwrap();
        let add = |ip: &str, extra: &[&str]| {
            let mut argv = vec![
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
                "--ip",
                ip,
            ];
            if let Some(q) = qinq {
                argv.extend(["--qinq", q]);
            }
            argv.extend_from_slice(extra);
            vm.engine.run(&argv).unwrap()
        };
        let (vm_before, host_before) = (vm_state(vm, &[&c]), snapshot(&lab, &[]));
        for (ip, addr) in [
            (format!("{EXT_V4}/24"), EXT_V4),
            (format!("{EXT_V6}/64"), EXT_V6),
        ] {
            let out = add(&ip, &[]);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(4), "{name} {ip}: {err}");
            assert!(
                err.contains(&format!("address {addr} is in use"))
                    && err.contains(&ext)
                    && err.contains(&format!("on {on} ")),
                "{name} {ip}: {err}"
            );
            assert_eq!(
                vm_state(vm, &[&c]),
                vm_before,
                "{name} {ip} left something in the VM"
            );
            assert_eq!(
                snapshot(&lab, &[]),
                host_before,
                "{name} {ip} changed the host"
            );
        }
        // A free address attaches; --no-probe takes the external host's.
        for (ip, extra) in [
            ("10.77.0.62/24", vec![]),
            ("10.77.0.1/24", vec!["--no-probe"]),
        ] {
            let out = add(ip, &extra);
            assert!(out.status.success(), "{name} {ip}: {}", text(&out.stderr));
            vm.engine.ok(&["del", "--netns", c.name()]).unwrap();
        }
        assert_eq!(vm_state(vm, &[&c]), vm_before);
    }
}
