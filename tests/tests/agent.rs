//! The node agent: serving the CLI and the CNI plugin, metrics, the
//! programs' logs, periodic reconcile, and being killed under traffic.

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use attach_tests::{
    burst,
    flow::{UdpFlow, rx_packets},
    kinds::add_macvlan,
    lab::{Attach, EXT_V4, Lab, ping, require_root},
    poll::until,
    reach::{Flavor, attach},
};

/// An agent running in the lab's node, logging to a file.
struct Agent {
    child: Option<Child>,
    log: PathBuf,
    socket: PathBuf,
}

impl Agent {
    fn start(lab: &Lab, interval: u32) -> Agent {
        Self::start_with(lab, interval, &[])
    }

    fn start_with(lab: &Lab, interval: u32, extra: &[&str]) -> Agent {
        let log = std::env::temp_dir().join(format!("attach-agent-{}.log", lab.tag()));
        let socket = PathBuf::from(format!(
            "/run/attach/{}.sock",
            lab.node_pin_dir().file_name().unwrap().to_string_lossy()
        ));
        let file = std::fs::File::create(&log).unwrap();
        let bin = Attach::bin().unwrap();
        let child = lab
            .node()
            .command(
                &[
                    bin.to_str().unwrap(),
                    "agent",
                    "--metrics-addr",
                    "127.0.0.1:9469",
                    "--reconcile-interval",
                    &interval.to_string(),
                ]
                .into_iter()
                .chain(extra.iter().copied())
                .collect::<Vec<_>>(),
            )
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        let agent = Agent {
            child: Some(child),
            log,
            socket,
        };
        // Connectable (a stale socket file may exist), and serving metrics.
        agent.wait_for(
            |a| std::os::unix::net::UnixStream::connect(&a.socket).is_ok(),
            "the agent's socket",
        );
        agent.wait_for(
            |_| {
                lab.node()
                    .ok(&["curl", "-sf", "http://127.0.0.1:9469/metrics"])
                    .is_ok()
            },
            "the agent's metrics",
        );
        agent
    }

    fn wait_for(&self, cond: impl Fn(&Agent) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn metrics(lab: &Lab) -> String {
        lab.node()
            .ok(&["curl", "-sf", "http://127.0.0.1:9469/metrics"])
            .unwrap()
    }

    fn metric(lab: &Lab, name: &str) -> u64 {
        Self::metrics(lab)
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the metrics"))
    }

    /// SIGKILL, by the pid we started.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the agent removes its socket.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
        // A killed agent cannot remove its socket file; the lab's node is gone.
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[test]
fn the_agent_serves_the_cli_the_cni_plugin_and_metrics() {
    require_root();
    let lab = Lab::new().unwrap();
    let mut agent = Agent::start(&lab, 0);
    assert_eq!(Agent::metric(&lab, "attach_api_requests_total"), 0);

    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    assert_eq!(
        Agent::metric(&lab, "attach_api_requests_total"),
        1,
        "the CLI did not go through the agent"
    );
    assert!(ping(&c1.ns, EXT_V4));
    let m = Agent::metrics(&lab);
    let rx = m
        .lines()
        .find(|l| l.starts_with("attach_rx_packets_total{") && l.contains(c1.ns.name()))
        .unwrap_or_else(|| panic!("no rx series for c1:\n{m}"));
    assert!(!rx.ends_with(" 0"), "{rx}");
    assert!(
        m.contains("attach_attachments{kind=\"macvlan\",backend=\"ebpf\"} 1"),
        "{m}"
    );

    // The CNI plugin goes through the agent too.
    let c2 = lab.container("c2").unwrap();
    let conf = r#"{"cniVersion":"1.1.0","name":"na","type":"attach-cni","parent":"eth1","runtimeConfig":{"ips":["10.77.0.42/24"]}}"#;
    let call = |cmd| attach_tests::cni::Call {
        node: lab.node(),
        command: cmd,
        container_id: "agent-c2",
        netns: Some(c2.path()),
        ifname: "eth0",
        env_extra: Vec::new(),
    };
    let before = Agent::metric(&lab, "attach_api_requests_total");
    let r = call("ADD").run(conf).unwrap();
    assert!(r.ok, "{} {}", r.stdout, r.stderr);
    assert!(ping(&c2, EXT_V4));
    assert!(call("DEL").run(conf).unwrap().ok);
    assert_eq!(Agent::metric(&lab, "attach_api_requests_total"), before + 2);

    // Stopped, it removes its socket; the CLI then works on its own.
    agent.stop();
    assert!(!agent.socket.exists());
    lab.attach().ok(&["del", "--netns", c1.ns.name()]).unwrap();
}

/// Events the ring had no room for (nobody reads it here) are exported as
/// `attach_events_lost_total`, the count `attach stats` gives.
#[test]
fn lost_events_show_in_the_metrics() {
    require_root();
    let lab = Lab::new().unwrap();
    let _agent = Agent::start(&lab, 0);
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    assert_eq!(Agent::metric(&lab, "attach_events_lost_total"), 0);
    // Twice what the ring holds, all dropped as spoofed.
    burst::spoofed(&c1, 12_000);
    let lost = lab.attach().json(&["stats"]).unwrap()["events_lost"]
        .as_u64()
        .unwrap();
    assert!(lost > 0, "nothing lost");
    assert_eq!(Agent::metric(&lab, "attach_events_lost_total"), lost);
}

#[test]
fn killing_the_agent_under_traffic_loses_nothing() {
    require_root();
    let lab = Lab::new().unwrap();
    let mut agent = Agent::start(&lab, 1);
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfXdp, &[]).unwrap();
    let flow = UdpFlow::start(&lab, &c1.ns, &c1.v4, 5202, 4).unwrap();
    // Killed while the flow passes.
    flow.wait_passing(&c1.ns, "eth0", rx_packets(&c1.ns, "eth0").unwrap(), 500)
        .unwrap();
    agent.kill();
    let (sent, lost) = flow.finish().unwrap();
    assert!(sent > 1000);
    assert_eq!(lost, 0, "{lost} of {sent} lost when the agent was killed");
    // Started again (over its stale socket), it re-adopts and finds nothing to fix.
    let agent = Agent::start(&lab, 0);
    assert_eq!(
        Agent::metric(&lab, "attach_reconcile_repairs_total"),
        0,
        "{}",
        agent.log()
    );
    lab.attach()
        .ok(&["check", "--netns", c1.ns.name()])
        .unwrap();
}

#[test]
fn the_agent_repairs_drift_periodically_and_bridges_program_logs() {
    require_root();
    let lab = Lab::new().unwrap();
    let agent = Agent::start(&lab, 1);
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let rec = &lab.attach().json(&["list"]).unwrap()[0];
    let parent = rec["parent_ifindex"].as_u64().unwrap() as u32;

    // The parent's entry vanishes: the transmit program logs it (aya-log),
    // and the next reconcile puts it back.
    let key: Vec<String> = parent.to_le_bytes().iter().map(|b| b.to_string()).collect();
    let map = lab.node_pin_dir().join("attach_parents");
    let mut args = vec![
        "map".to_owned(),
        "delete".into(),
        "pinned".into(),
        map.display().to_string(),
        "key".into(),
    ];
    args.extend(key);
    let out = std::process::Command::new("bpftool")
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = c1.ns.exec(&["ping", "-c", "1", "-W", "0.3", EXT_V4]);
    agent.wait_for(
        |a| a.log().contains("which the datapath does not know"),
        "the program's log line",
    );
    agent.wait_for(|a| a.log().contains("repaired"), "a periodic repair");
    lab.attach()
        .ok(&["check", "--netns", c1.ns.name()])
        .unwrap();
    assert!(ping(&c1.ns, EXT_V4));
}

/// With no periodic pass, a link change an attachment stands on is repaired
/// within a second or so of its netlink event: the parent deleted and made
/// again under its name (the endpoints move to it), a host-side veth
/// deleted behind the engine's back (made again).
#[test]
fn the_agent_repairs_on_link_events() {
    require_root();
    let lab = Lab::new().unwrap();
    let agent = Agent::start(&lab, 0);
    let node = lab.node();
    let make_parent = || lab.add_veth("eth2").unwrap();
    make_parent();
    let cs = lab.containers(2).unwrap();
    let (c1, c2) = (&cs[0], &cs[1]);
    for (c, ip) in [(c1, "10.78.0.2/24"), (c2, "10.78.0.3/24")] {
        lab.attach().ok(&add_macvlan("eth2", c, ip, &[])).unwrap();
    }
    assert!(ping(c1, "10.78.0.3"));
    let healthy = |_: &Agent| {
        lab.attach()
            .run(&["check", "--all"])
            .unwrap()
            .status
            .success()
    };

    node.ok(&["ip", "link", "del", "eth2"]).unwrap();
    make_parent();
    agent.wait_for(healthy, "the endpoints on the new eth2");
    assert!(
        agent.log().contains("action=recreated on the new eth2"),
        "{}",
        agent.log()
    );
    assert!(
        ping(c1, "10.78.0.3"),
        "not back on the new parent: {}\n{}",
        agent.log(),
        c1.ok(&["ip", "link"]).unwrap()
    );

    let host = lab.attach().json(&["list"]).unwrap()[0]["host_ifname"]
        .as_str()
        .unwrap()
        .to_owned();
    node.ok(&["ip", "link", "del", &host]).unwrap();
    agent.wait_for(healthy, "the host side made again");
    assert!(
        agent
            .log()
            .contains(&format!("host side of eth0 in {} deleted", c1.name())),
        "{}",
        agent.log()
    );
    assert!(!agent.log().contains("WARN api"), "{}", agent.log());
    for c in [c1, c2] {
        lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
    }
    node.ok(&["ip", "link", "del", "eth2"]).unwrap();
}

/// A MAC set inside a container is taken on by the agent at once (it
/// watches the container's links), with no periodic pass: the record, the
/// datapath and the wire's reach follow the new MAC.
#[test]
fn the_agent_takes_on_a_mac_set_in_the_container() {
    require_root();
    let lab = Lab::new().unwrap();
    let agent = Agent::start(&lab, 0);
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    assert!(ping(lab.ext(), &c1.v4));
    let watching = format!("watching the links of {} for MAC changes", c1.ns.name());
    agent.wait_for(|a| a.log().contains(&watching), "the watch of c1's links");
    let new = "02:a7:00:00:01:01";
    let mac = |_: &Agent| {
        lab.attach().json(&["list"]).unwrap()[0]["mac"] == new
            && lab
                .attach()
                .run(&["check", "--all"])
                .unwrap()
                .status
                .success()
    };
    c1.ns
        .ok(&["ip", "link", "set", "eth0", "address", new])
        .unwrap();
    let changed = Instant::now();
    agent.wait_for(mac, "the new MAC taken on");
    let took = changed.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "took {took:?}:\n{}",
        agent.log()
    );
    assert!(
        agent.log().contains(&format!(
            "eth0 in {} changed its MAC to {new}",
            c1.ns.name()
        )),
        "{}",
        agent.log()
    );
    lab.ext().ok(&["ip", "neigh", "flush", "all"]).unwrap();
    assert!(
        attach_tests::lab::ping_within(lab.ext(), &c1.v4, Duration::from_secs(5)),
        "the wire cannot reach c1 with its new MAC"
    );
    lab.attach().ok(&["del", "--netns", c1.ns.name()]).unwrap();
}

/// `/metrics` and `/healthz` are served as an HTTP server should: HEAD as
/// GET without a body, other paths 404, other methods 405, a request split
/// across writes read whole.
#[test]
fn the_agent_speaks_http_as_a_server_should() {
    require_root();
    let lab = Lab::new().unwrap();
    let _agent = Agent::start(&lab, 0);
    let code = |args: &[&str]| -> String {
        let mut argv = vec!["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"];
        argv.extend_from_slice(args);
        lab.node().ok(&argv).unwrap()
    };
    let url = "http://127.0.0.1:9469";
    assert_eq!(code(&[&format!("{url}/metrics")]), "200");
    assert_eq!(code(&["-I", &format!("{url}/metrics")]), "200");
    assert_eq!(code(&["-X", "POST", &format!("{url}/metrics")]), "405");
    assert_eq!(code(&[&format!("{url}/metricsfoo")]), "404");
    assert_eq!(code(&[&format!("{url}/")]), "404");
    let head = lab
        .node()
        .ok(&["curl", "-sI", &format!("{url}/metrics")])
        .unwrap();
    assert!(head.contains("text/plain"), "{head}");
    let health = lab
        .node()
        .ok(&["curl", "-sf", &format!("{url}/healthz")])
        .unwrap();
    assert!(health.starts_with("ok: 0 attachment"), "{health}");
    let split = lab
        .node()
        .ok(&[
            "bash",
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/9469; printf 'GET /metr' >&3; sleep 0.3; \
             printf 'ics HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' >&3; \
             head -1 <&3",
        ])
        .unwrap();
    assert!(split.starts_with("HTTP/1.1 200"), "{split:?}");
}

/// The agent's socket serves root and the group it is given, checked by the
/// caller's credentials, not only by the socket file's mode.
#[test]
fn the_agent_serves_root_and_its_group_only() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    require_root();
    let lab = Lab::new().unwrap();
    let agent = Agent::start_with(&lab, 0, &["--socket-group", "65534"]);
    let meta = std::fs::metadata(&agent.socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!((meta.uid(), meta.gid()), (0, 65534));
    // Open to everyone: what is refused now is refused by the credentials.
    std::fs::set_permissions(&agent.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let net = format!("--net={}", lab.node().path().display());
    let bin = Attach::bin().unwrap();
    let list_as = |gid: &str| {
        std::process::Command::new("nsenter")
            .args([
                net.as_str(),
                "setpriv",
                "--reuid=65534",
                &format!("--regid={gid}"),
                "--clear-groups",
            ])
            .arg(&bin)
            .args(["list", "-o", "json"])
            .output()
            .unwrap()
    };
    let served = list_as("65534");
    assert!(
        served.status.success(),
        "{}",
        String::from_utf8_lossy(&served.stderr)
    );
    assert_eq!(Agent::metric(&lab, "attach_api_requests_total"), 1);
    let refused = list_as("1");
    let out = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{out}");
    assert!(
        out.contains("uid 65534 (gid 1) is refused"),
        "{out} {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(Agent::metric(&lab, "attach_api_requests_total"), 1);
}

/// The agent's systemd unit is rated OK (at most 3.0) by systemd's own
/// exposure analysis.
#[test]
fn the_agent_unit_is_rated_ok_by_systemd() {
    let unit = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/attach-agent.service"
    );
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", unit])
        .output()
        .expect("systemd-analyze (the systemd package)");
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| l.split("attach-agent.service: ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(level <= 3.0, "exposure {level} > 3.0:\n{text}");
}

/// Whether `eth0` in `ns` has carrier (`LOWER_UP`).
fn has_carrier(ns: &attach_tests::lab::Netns) -> bool {
    let out = ns.ok(&["ip", "-j", "link", "show", "eth0"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "LOWER_UP")
}

/// eBPF macvlan and ipvlan endpoints follow their parent's state as the
/// kernel's macvlan does (beside them, on a parent of its own): NO-CARRIER in the
/// container while the parent has no carrier or is down, within about a
/// second with the agent; without it, `check` names the difference and
/// `reconcile` mends it.
#[test]
fn endpoints_follow_their_parents_carrier_as_the_kernels_macvlan() {
    require_root();
    let lab = Lab::new().unwrap();
    for dev in ["pa", "pb", "pc"] {
        lab.add_veth(dev).unwrap();
    }
    let [ours, native, ipvl] = ["c1", "c2", "c3"].map(|c| lab.container(c).unwrap());
    for (ns, kind, parent, backend) in [
        (&ours, "macvlan", "pa", "ebpf"),
        (&native, "macvlan", "pb", "native"),
        (&ipvl, "ipvlan", "pc", "ebpf"),
    ] {
        let add = [
            "add",
            kind,
            "--parent",
            parent,
            "--backend",
            backend,
            "--netns",
            ns.name(),
            "--ip",
            "10.99.0.1/24",
            "--no-probe",
        ];
        lab.attach().ok(&add).unwrap();
        assert!(has_carrier(ns), "{kind} {backend}: no carrier at first");
    }
    let set = |what: &str| {
        for cmd in ["a", "b", "c"].map(|p| what.replace('X', p)) {
            let argv: Vec<&str> = cmd.split(' ').collect();
            lab.node().ok(&argv).unwrap();
        }
    };
    let both = |want: bool| {
        until(Duration::from_secs(5), Duration::from_millis(20), || {
            has_carrier(&native) == want
        })
        .then_some(())
        .expect("the kernel's macvlan did not follow");
        let since = Instant::now();
        let followed = until(Duration::from_secs(5), Duration::from_millis(20), || {
            has_carrier(&ours) == want && has_carrier(&ipvl) == want
        });
        (followed, since.elapsed())
    };

    let mut agent = Agent::start(&lab, 0);
    // The wire side cut (no carrier), then the parent set down.
    for (cut, mend) in [
        ("ip link set pXp down", "ip link set pXp up"),
        ("ip link set pX down", "ip link set pX up"),
    ] {
        set(cut);
        let (followed, took) = both(false);
        assert!(
            followed,
            "after `{cut}` ours kept carrier:\n{}",
            agent.log()
        );
        assert!(
            took < Duration::from_secs(2),
            "took {took:?}:\n{}",
            agent.log()
        );
        lab.attach().ok(&["check", "--all"]).unwrap();
        set(mend);
        let (followed, took) = both(true);
        assert!(
            followed,
            "after `{mend}` ours has no carrier:\n{}",
            agent.log()
        );
        assert!(
            took < Duration::from_secs(2),
            "took {took:?}:\n{}",
            agent.log()
        );
    }
    agent.stop();

    // Without the agent: found by check, mended by reconcile.
    set("ip link set pXp down");
    let out = lab.attach().run(&["check", "--all"]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("while parent pa is down or has no carrier"),
        "{err}"
    );
    assert!(has_carrier(&ours) && has_carrier(&ipvl));
    lab.attach().ok(&["reconcile"]).unwrap();
    assert!(!has_carrier(&ours) && !has_carrier(&ipvl));
    lab.attach().ok(&["check", "--all"]).unwrap();
    set("ip link set pXp up");
    lab.attach().ok(&["reconcile"]).unwrap();
    assert!(has_carrier(&ours) && has_carrier(&ipvl));
    // The ipvlan host routes came back with the host side.
    lab.attach().ok(&["check", "--all"]).unwrap();
    for ns in [&ours, &native, &ipvl] {
        lab.attach().ok(&["del", "--netns", ns.name()]).unwrap();
    }
}
