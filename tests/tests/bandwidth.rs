//! Per-endpoint rate limits (`--ingress-rate`, `--egress-rate` and their
//! bursts; in CNI, `runtimeConfig.bandwidth`), enforced by our programs on
//! every eBPF kind: a UDP stream offered at twice the limit arrives at the
//! limit, within 20%, into the container and out of it, and so does a TCP
//! flow with the default burst; the limits are recorded, listed, checked,
//! repaired and gone with the endpoint.

use std::{
    net::UdpSocket,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use attach_tests::{
    cni::Call,
    lab::{EXT_V4, Lab, Netns, require_root},
    reach::{Flavor, attach, attach_bridge, attach_ipvlan},
    routed::{attach_router, ext_routes},
    vm::{attach_nested, vm},
};
use serde_json::{Value, json};

/// The limit every test sets, bits per second, and its burst.
const LIMIT: u64 = 40_000_000;
const BURST: &str = "1M";
/// UDP payload of the test stream; a frame is 42 bytes more (Ethernet,
/// IPv4, UDP), which is what the limit counts.
const PAYLOAD: usize = 1200;
const FRAME: u64 = PAYLOAD as u64 + 42;
const SECS: f64 = 2.0;
const PORT: u16 = 5301;

/// The options limiting both directions to [`LIMIT`].
fn limits() -> Vec<String> {
    let rate = LIMIT.to_string();
    [
        "--ingress-rate",
        &rate,
        "--ingress-burst",
        BURST,
        "--egress-rate",
        &rate,
        "--egress-burst",
        BURST,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Sends from `from` to `to_ip` (received in `to`) a UDP stream at twice
/// [`LIMIT`] for [`SECS`]; the rates (bits/s, frames as the limit counts
/// them) offered and received.
fn stream(from: &Netns, to: &Netns, to_ip: &str) -> (f64, f64) {
    let rx = to
        .run(|| {
            let s = UdpSocket::bind(("0.0.0.0", PORT))?;
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            Ok(s)
        })
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicU64::new(0));
    let reader = {
        let (done, got) = (done.clone(), got.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            loop {
                match rx.recv(&mut buf) {
                    Ok(_) => {
                        got.fetch_add(1, Ordering::Relaxed);
                    }
                    // Quiet after the sender finished: all is in.
                    Err(_) if done.load(Ordering::Relaxed) => break,
                    Err(_) => {}
                }
            }
        })
    };
    let dst = format!("{to_ip}:{PORT}");
    let sent = from
        .run(move || {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.connect(&dst)?;
            let payload = [0x5au8; PAYLOAD];
            let per_sec = 2.0 * LIMIT as f64 / (8.0 * FRAME as f64);
            let start = Instant::now();
            let mut sent = 0u64;
            loop {
                let t = start.elapsed().as_secs_f64();
                if t >= SECS {
                    break;
                }
                // Paced: what is due by now, then a short pause (a
                // generator's pace, not a wait for a condition).
                while (sent as f64) < per_sec * t {
                    if s.send(&payload).is_ok() {
                        sent += 1;
                    }
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            Ok(sent)
        })
        .unwrap();
    done.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let bits = |frames: u64| (frames * FRAME * 8) as f64 / SECS;
    (bits(sent), bits(got.load(Ordering::Relaxed)))
}

/// Both directions between `c` (at `c_ip`) and the external host hold the
/// limit within 20%, offered at twice it.
fn holds(what: &str, lab: &Lab, c: &Netns, c_ip: &str) {
    for (way, from, to, ip) in [
        ("ingress", lab.ext(), c, c_ip),
        ("egress", c, lab.ext(), EXT_V4),
    ] {
        let (offered, got) = stream(from, to, ip);
        eprintln!(
            "{what} {way}: offered {:.1} Mbit/s, received {:.1} Mbit/s",
            offered / 1e6,
            got / 1e6
        );
        assert!(
            offered > 1.5 * LIMIT as f64,
            "{what} {way}: the generator offered only {offered:.0} bits/s"
        );
        let ratio = got / LIMIT as f64;
        assert!(
            (0.8..=1.2).contains(&ratio),
            "{what} {way}: {got:.0} bits/s received, limit {LIMIT}"
        );
    }
}

/// The record's limits, as `list -o json` shows them.
fn listed(lab: &Lab) -> Value {
    lab.attach().json(&["list"]).unwrap()[0]["bandwidth"].clone()
}

#[test]
fn limits_hold_on_every_ebpf_kind() {
    require_root();
    let lab = Lab::new().unwrap();
    let opts = limits();
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    let want = json!({"ingress_rate": LIMIT, "ingress_burst": 1_000_000,
                      "egress_rate": LIMIT, "egress_burst": 1_000_000});

    for flavor in [Flavor::EbpfTc, Flavor::EbpfXdp] {
        let c = attach(&lab, 1, "bridge", flavor, &opts).unwrap();
        assert_eq!(listed(&lab), want);
        holds(&format!("macvlan {}", flavor.name()), &lab, &c.ns, &c.v4);
        lab.attach().ok(&["del", "--netns", c.ns.name()]).unwrap();
    }

    let c = attach_ipvlan(&lab, 2, "l2", "bridge", &opts).unwrap();
    holds("ipvlan l2", &lab, &c.ns, &c.v4);
    lab.attach().ok(&["del", "--netns", c.ns.name()]).unwrap();

    // Before the switch's second NIC: the node would answer the external
    // host's ARP there too, and what arrives there is routed by the
    // node's stack, not by our uplink's program.
    ext_routes(&lab).unwrap();
    let mut args = vec!["--uplink", "eth1"];
    args.extend(&opts);
    let c = attach_router(&lab, 4, &args).unwrap();
    holds("router", &lab, &c.ns, &c.v4);
    lab.attach().ok(&["del", "--netns", c.ns.name()]).unwrap();
    lab.add_nic("eth2").unwrap();
    let mut args = vec!["--uplink", "eth2"];
    args.extend(&opts);
    let c = attach_bridge(&lab, 3, "brt", "ebpf", &args).unwrap();
    holds("bridge (eBPF switch)", &lab, &c.ns, &c.v4);
    lab.attach().ok(&["del", "--netns", c.ns.name()]).unwrap();

    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
    assert!(!lab.node_pin_dir().exists(), "pins left");
}

/// A container in a VM (`nested`), limited by the VM's engine.
#[test]
fn limits_hold_in_a_vm() {
    require_root();
    let lab = Lab::new().unwrap();
    let vm1 = vm(&lab, "vm1", "tap1").unwrap();
    let c = attach_nested(&lab, &vm1, "vm1c", 100, None, 31, &[]).unwrap();
    // The VM's engine gives the container its limits: attached again
    // with them.
    vm1.engine.ok(&["del", "--netns", c.ns.name()]).unwrap();
    let opts = limits();
    let mut args = vec![
        "add",
        "nested",
        "--netns",
        c.ns.name(),
        "--uplink",
        "eth0",
        "--vlan",
        "100",
        "--mac",
        "02:a7:01:00:00:1f",
        "--ip",
        "10.77.0.31/24",
    ];
    args.extend(opts.iter().map(String::as_str));
    vm1.engine.ok(&args).unwrap();
    holds("nested", &lab, &c.ns, &c.v4);
    vm1.engine.ok(&["del", "--netns", c.ns.name()]).unwrap();
    lab.attach()
        .ok(&["del", "--tap", "tap1", "--vlan", "100"])
        .unwrap();
}

/// TCP (iperf3) through a policer: with the default burst a flow reaches
/// the limit, within 20%, both ways.
#[test]
fn tcp_reaches_the_limit_with_the_default_burst() {
    require_root();
    let lab = Lab::new().unwrap();
    let rate = LIMIT.to_string();
    let opts = ["--ingress-rate", &rate, "--egress-rate", &rate];
    let c = attach(&lab, 1, "bridge", Flavor::EbpfTc, &opts).unwrap();
    for (way, reverse) in [("ingress", false), ("egress", true)] {
        let mut server = c.ns.command(&["iperf3", "-s", "-1"]).spawn().unwrap();
        c.ns.wait_listening(5201).unwrap();
        let mut argv = vec!["iperf3", "-c", &c.v4, "-t", "4", "-J"];
        if reverse {
            argv.push("-R");
        }
        let out = lab.ext().ok(&argv);
        let _ = server.kill();
        let _ = server.wait();
        let report: Value = serde_json::from_str(&out.unwrap()).unwrap();
        let got = report["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap();
        eprintln!("TCP {way}: {:.1} Mbit/s", got / 1e6);
        let ratio = got / LIMIT as f64;
        assert!(
            (0.8..=1.2).contains(&ratio),
            "TCP {way}: {got:.0} bits/s, limit {LIMIT}"
        );
    }
    lab.attach().ok(&["del", "--netns", c.ns.name()]).unwrap();
}

/// Without limits the same stream arrives whole: what holds it back above
/// is the limit.
#[test]
fn an_unlimited_endpoint_takes_the_whole_stream() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    assert_eq!(listed(&lab), Value::Null);
    let (offered, got) = stream(lab.ext(), &c.ns, &c.v4);
    assert!(
        got > 0.9 * offered,
        "offered {offered:.0} bits/s, received {got:.0}"
    );
    lab.attach().ok(&["del", "--netns", c.ns.name()]).unwrap();
}

/// The limits in the datapath are checked against the record and put back
/// by reconcile; bad limits are refused naming the value, and where our
/// programs do not carry the frames (a native backend) refused too.
#[test]
fn limits_are_checked_repaired_and_refused_when_bad() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = attach(
        &lab,
        1,
        "bridge",
        Flavor::EbpfTc,
        &["--ingress-rate", "10M"],
    )
    .unwrap();
    let rec = lab.attach().json(&["list"]).unwrap()[0].clone();
    assert_eq!(
        rec["bandwidth"],
        json!({"ingress_rate": 10_000_000, "ingress_burst": 5_000_000})
    );
    lab.attach().ok(&["check", "--all"]).unwrap();
    // The entry cleared behind the engine's back.
    let id = rec["endpoint_id"].as_u64().unwrap() as u32;
    lab.in_node(|| {
        let mut dp = attach::datapath::Datapath::open(&lab.node_pin_dir()).unwrap();
        dp.put_bandwidth(id, None).unwrap();
    });
    let out = lab.attach().run(&["check", "--all"]).unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rate limits"),
        "{out:?}"
    );
    lab.attach().ok(&["reconcile"]).unwrap();
    lab.attach().ok(&["check", "--all"]).unwrap();
    lab.attach().ok(&["del", "--netns", c.ns.name()]).unwrap();

    let c2 = lab.container("c2").unwrap();
    for (args, says) in [
        (vec!["--ingress-rate", "0"], "--ingress-rate 0"),
        (vec!["--egress-burst", "1M"], "without --egress-rate"),
        (vec!["--egress-rate", "fast"], "fast"),
        (
            vec!["--ingress-rate", "10M", "--backend", "native"],
            "eBPF datapath",
        ),
    ] {
        let mut argv = vec![
            "add",
            "macvlan",
            "--netns",
            c2.name(),
            "--parent",
            "eth1",
            "--ip",
            "10.77.0.12/24",
        ];
        argv.extend(&args);
        let out = lab.attach().run(&argv).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
}

/// A runtime's `runtimeConfig.bandwidth` (the `bandwidth` capability,
/// bits/s and bits) sent to attach-cni itself: our programs enforce it.
#[test]
fn the_cni_bandwidth_capability_is_enforced() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = lab.container("c1").unwrap();
    let conf = json!({
        "cniVersion": "1.0.0", "name": "bw", "type": "attach-cni",
        "kind": "macvlan", "parent": "eth1", "ip": "10.77.0.21/24",
        "capabilities": {"bandwidth": true},
        "runtimeConfig": {"bandwidth": {
            "ingressRate": LIMIT, "ingressBurst": 1_000_000,
            "egressRate": LIMIT, "egressBurst": 1_000_000,
        }},
    })
    .to_string();
    let call = |command| Call {
        node: lab.node(),
        command,
        container_id: "bw1",
        netns: Some(c.path()),
        ifname: "eth0",
        env_extra: Vec::new(),
    };
    let r = call("ADD").run(&conf).unwrap();
    assert!(r.ok, "{} {}", r.stdout, r.stderr);
    assert_eq!(
        listed(&lab),
        json!({"ingress_rate": LIMIT, "ingress_burst": 1_000_000,
               "egress_rate": LIMIT, "egress_burst": 1_000_000})
    );
    holds("attach-cni macvlan", &lab, &c, "10.77.0.21");
    let r = call("DEL").run(&conf).unwrap();
    assert!(r.ok, "{}", r.stdout);
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
}
