//! `attach monitor`: drop events with their reason, and traces on demand.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, ChildStderr, Stdio},
};

use attach_tests::{
    cgroup::Cgroup,
    lab::{Attach, EXT_V4, Lab, require_root},
    reach::{Flavor, attach},
};
use serde_json::Value;

/// A running `attach monitor` and its stderr.
struct Monitor {
    child: Child,
    stderr: BufReader<ChildStderr>,
}

/// Starts `attach -o json monitor` in the node and returns once it listens
/// (its first stderr line), so no event of the test can precede it.
fn monitor(lab: &Lab, extra: &[&str]) -> Monitor {
    let bin = Attach::bin().unwrap();
    let mut argv = vec![bin.to_str().unwrap(), "-o", "json", "monitor"];
    if !extra.contains(&"--timeout") {
        argv.extend(["--timeout", "10"]);
    }
    argv.extend(extra);
    let mut child = lab
        .node()
        .command(&argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(
        first.starts_with("attach monitor: listening"),
        "the monitor did not start: {first}"
    );
    Monitor { child, stderr }
}

fn events(m: Monitor) -> Vec<Value> {
    let Monitor { child, mut stderr } = m;
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(out.status.success(), "monitor: {rest}");
    BufReader::new(&out.stdout[..])
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
}

#[test]
fn drops_are_reported_with_their_reason() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let m = monitor(&lab, &["--count", "1"]);
    c1.ns
        .ok(&["ip", "addr", "add", "10.77.0.98/24", "dev", "eth0"])
        .unwrap();
    let _ = c1
        .ns
        .exec(&["ping", "-c", "1", "-W", "0.5", "-I", "10.77.0.98", EXT_V4]);
    let ev = events(m);
    assert_eq!(ev.len(), 1, "{ev:?}");
    let e = &ev[0];
    assert_eq!(e["verdict"], "spoofed_source");
    assert_eq!(e["direction"], "tx");
    assert_eq!(e["drop"], true);
    assert_eq!(e["endpoint"], format!("{}/eth0", c1.ns.name()));
    assert_eq!(e["src"], "02:a7:00:00:00:01");
}

#[test]
fn trace_reports_every_decision_and_switches_off_after() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    // Everything traced while the pings run (background IPv6 multicast
    // included), until the timeout.
    let m = monitor(&lab, &["--trace", "--timeout", "2"]);
    let _ = c1
        .ns
        .exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", EXT_V4]);
    let ev = events(m);
    assert!(ev.len() >= 4, "{ev:?}");
    let verdicts: Vec<_> = ev
        .iter()
        .map(|e| e["verdict"].as_str().unwrap().to_owned())
        .collect();
    assert!(verdicts.iter().any(|v| v == "to_parent"), "{verdicts:?}");
    assert!(verdicts.iter().all(|v| !v.is_empty() && v != "?"));
    // Tracing is off again: the config map's switch is clear.
    assert_eq!(config_word(&lab), ["0x00", "0x00", "0x00", "0x00"]);
}

/// The pinned `attach_config` word, as bpftool's raw bytes (the map carries
/// no BTF: it is the programs' data section).
fn config_word(lab: &Lab) -> Vec<String> {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(lab.node_pin_dir().join("attach_config"))
        .output()
        .unwrap();
    let cfg: Value = serde_json::from_slice(&out.stdout).unwrap();
    serde_json::from_value(cfg[0]["value"].clone()).unwrap()
}

/// The trace switch's byte of the `attach_config` word.
fn config_switches(lab: &Lab) -> String {
    config_word(lab)[0].clone()
}

/// Loading the object writes the config section's initial value into its
/// pinned map (each `host` attachment loads its own programs): that value
/// must be the switches as they are, or a trace in progress would stop.
#[test]
fn tracing_survives_a_load_of_the_object() {
    require_root();
    let lab = Lab::new().unwrap();
    let _c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let m = monitor(&lab, &["--trace", "--timeout", "3"]);
    assert_eq!(config_switches(&lab), "0x01");
    let cg = Cgroup::new(lab.tag(), "web").unwrap();
    let node = lab.node().name().to_owned();
    let cgroup = cg.path().display().to_string();
    lab.attach()
        .json(&["add", "host", "--netns", &node, "--cgroup", &cgroup])
        .unwrap();
    assert_eq!(config_switches(&lab), "0x01", "the load cleared tracing");
    lab.attach().json(&["del", "--netns", &node]).unwrap();
    let _ = events(m);
    assert_eq!(config_switches(&lab), "0x00");
}

#[test]
fn stats_count_per_endpoint() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    // Neighbours of c1 on its parent, one in its own mode (bridge: it could
    // reach c1 directly) and one in another.
    let c2 = attach(&lab, 2, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let c3 = attach(&lab, 3, "vepa", Flavor::EbpfTc, &[]).unwrap();
    let stats = |ep: &attach_tests::reach::Endpoint| {
        lab.attach()
            .json(&["stats", "--netns", ep.ns.name()])
            .unwrap()
    };
    let before = [stats(&c2), stats(&c3)];
    c1.ns
        .ok(&["ping", "-c", "5", "-i", "0.05", "-s", "200", EXT_V4])
        .unwrap();
    let s = lab
        .attach()
        .json(&["stats", "--netns", c1.ns.name()])
        .unwrap();
    let a = s["attachments"].as_array().unwrap();
    assert_eq!(a.len(), 1, "{s}");
    let c = &a[0]["counters"];
    assert!(c["tx_packets"].as_u64().unwrap() >= 5, "{c}");
    assert!(c["rx_packets"].as_u64().unwrap() >= 5, "{c}");
    assert!(c["tx_bytes"].as_u64().unwrap() >= 5 * 242, "{c}");
    // c2 and c3 saw none of it (broadcast ARP aside, which ping's cache may
    // skip).
    let after = [stats(&c2), stats(&c3)];
    let unicast = |v: &Value| {
        let c = &v["attachments"][0]["counters"];
        c["rx_packets"].as_u64().unwrap()
            - c["rx_broadcast"].as_u64().unwrap()
            - c["rx_multicast"].as_u64().unwrap()
    };
    for ((b, a), who) in before.iter().zip(&after).zip(["c2", "c3"]) {
        assert_eq!(unicast(a), unicast(b), "{who} received c1's unicast");
    }
    assert!(
        s["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["verdict"] == "to_endpoint")
    );
}
