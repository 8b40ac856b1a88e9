//! Debian's podman as the CNI runtime of `attach-cni`: a container started on
//! our network gets its address, reaches the wire and another container, and
//! is cleaned up (DEL, lease released) when it exits.

use attach_tests::{
    lab::{Lab, require_root},
    podman::Podman,
};
use serde_json::json;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn describe(o: &std::process::Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn podman_containers_on_an_attach_network() {
    require_root();
    let lab = Lab::new().unwrap();
    let leases = std::env::temp_dir().join(format!("attach-podman-leases-{}", lab.tag()));
    let pm = Podman::new(
        &lab,
        "attachnet",
        json!({
            "kind": "macvlan", "mode": "bridge", "parent": "eth1", "backend": "ebpf",
            "ipam": {
                "type": "host-local", "dataDir": leases,
                "ranges": [[{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.130",
                             "rangeEnd": "10.77.0.140", "gateway": "10.77.0.1"}]],
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        }),
    )
    .unwrap();
    let leased = || {
        std::fs::read_dir(leases.join("attachnet"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("10.77."))
                    .count()
            })
            .unwrap_or(0)
    };

    // One container: its address, and the wire.
    let out = pm
        .sh(&[], "ip -4 addr show eth0 && ping -c 1 -W 2 10.77.0.1")
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout(&out).contains("inet 10.77.0.13"),
        "{}",
        describe(&out)
    );
    // It exited (--rm): podman sent DEL.
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
    assert_eq!(leased(), 0, "lease not released");

    // podman --mac-address and --ip reach the plugin as CNI_ARGS MAC= and
    // IP= (the address host-local leases).
    let out = pm
        .sh(
            &["--mac-address", "02:aa:bb:cc:dd:31", "--ip", "10.77.0.137"],
            "ip link show eth0 && ip -4 addr show eth0 && ping -c 1 -W 2 10.77.0.1",
        )
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout(&out).contains("02:aa:bb:cc:dd:31") && stdout(&out).contains("inet 10.77.0.137/24"),
        "{}",
        describe(&out)
    );
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
    assert_eq!(leased(), 0, "lease not released");

    // A server, and a client reaching it on the same parent.
    let rootfs = pm.rootfs().display().to_string();
    let out = pm
        .run(&[
            "run",
            "-d",
            "--name",
            "srv",
            "--network",
            "attachnet",
            "--rootfs",
            &rootfs,
            "/bin/sleep",
            "120",
        ])
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let list = lab.attach().json(&["list"]).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["cni"]["network"], "attachnet");
    let srv_ip = list[0]["ips"][0]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let out = pm.sh(&[], &format!("ping -c 1 -W 2 {srv_ip}")).unwrap();
    assert!(out.status.success(), "client -> srv: {}", describe(&out));

    let out = pm.run(&["rm", "--force", "--time", "0", "srv"]).unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
    assert_eq!(leased(), 0);
    drop(pm);
    let _ = std::fs::remove_dir_all(&leases);
}
