//! An engine killed mid-operation, and many operations at once.

use std::{process::Stdio, thread, time::Duration};

use attach_tests::{
    flow::{UdpFlow, rx_packets},
    lab::{EXT_V4, Lab, Netns, ping, require_root},
    reach::{Flavor, attach},
    report::reconcile,
};
use serde_json::Value;

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
