//! `attach monitor`: drop events with their reason, and traces on demand.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, ChildStderr, Stdio},
};

use attach_tests::{
    burst,
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
    monitor_as(lab, "json", extra)
}

/// [`monitor`] with output `format` (`text` or `json`).
fn monitor_as(lab: &Lab, format: &str, extra: &[&str]) -> Monitor {
    let bin = Attach::bin().unwrap();
    let mut argv = vec![bin.to_str().unwrap(), "-o", format, "monitor"];
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

/// The monitor's stdout, and its stderr after the first line.
fn output(m: Monitor) -> (String, String) {
    let Monitor { child, mut stderr } = m;
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(out.status.success(), "monitor: {rest}");
    (String::from_utf8(out.stdout).unwrap(), rest)
}

/// Every record the monitor printed: its header, events, reports, summary.
fn records(m: Monitor) -> Vec<Value> {
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

fn of_type<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == kind).collect()
}

/// The events the monitor printed.
fn events(m: Monitor) -> Vec<Value> {
    of_type(&records(m), "event").into_iter().cloned().collect()
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

/// The node's verdict counters and lost events, from `attach stats`.
fn drops_and_lost(lab: &Lab) -> (u64, u64) {
    let s = lab.attach().json(&["stats"]).unwrap();
    let drops = s["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["drop"] == true)
        .map(|v| v["packets"].as_u64().unwrap())
        .sum();
    (drops, s["events_lost"].as_u64().unwrap())
}

/// A summary's counts: printed, lost, suppressed, earlier.
fn summary(records: &[Value]) -> [u64; 4] {
    let s = of_type(records, "summary");
    assert_eq!(s.len(), 1, "{records:?}");
    ["printed", "lost", "suppressed", "earlier"].map(|k| s[0][k].as_u64().unwrap())
}

/// A flood of drops overflows the ring while the monitor is held up (its
/// output is read only at the end): the events it lost are counted, by
/// the programs and by it, and what it printed and lost is what happened.
#[test]
fn lost_events_are_counted_and_add_up() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let (drops_before, lost_before) = drops_and_lost(&lab);
    let m = monitor(&lab, &["--timeout", "3"]);
    burst::spoofed(&c1, 30_000);
    let r = records(m);
    let (drops_after, lost_after) = drops_and_lost(&lab);
    let [printed, lost, suppressed, earlier] = summary(&r);
    let generated = drops_after - drops_before;
    assert!(generated >= 10_000, "only {generated} drops");
    assert_eq!(of_type(&r, "event").len() as u64, printed);
    assert_eq!(suppressed, 0);
    assert!(
        lost > 0,
        "a held-up monitor lost nothing: {:?}",
        summary(&r)
    );
    assert_eq!(printed + lost + earlier, generated, "{:?}", summary(&r));
    // `attach stats` counts them too, and the reports while it ran add up
    // to the summary's.
    assert_eq!(lost_after - lost_before, lost);
    let reported: u64 = of_type(&r, "report")
        .iter()
        .map(|x| x["lost"].as_u64().unwrap())
        .sum();
    assert_eq!(reported, lost);
    let text = lab.attach().ok(&["stats"]).unwrap();
    assert!(
        text.contains(&format!("events lost (event buffer full): {lost_after}")),
        "{text}"
    );
}

/// Events a ring nobody read kept from before are not shown as live.
#[test]
fn a_new_monitor_shows_nothing_from_before_it() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let (before, _) = drops_and_lost(&lab);
    burst::spoofed(&c1, 1000);
    let (after, _) = drops_and_lost(&lab);
    assert!(after - before >= 500, "only {} drops", after - before);
    let m = monitor(&lab, &["--timeout", "1"]);
    let r = records(m);
    let [printed, lost, _, earlier] = summary(&r);
    assert_eq!(of_type(&r, "event").len(), 0, "{r:?}");
    assert_eq!((printed, lost), (0, 0));
    assert!(earlier >= after - before, "{earlier} of {}", after - before);
}

/// `--sample` and `--rate` hold, are stated, and count what they leave out.
#[test]
fn sampling_and_rate_are_stated_and_hold() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let (before, _) = drops_and_lost(&lab);
    let m = monitor(&lab, &["--sample", "4", "--rate", "50", "--timeout", "2"]);
    burst::spoofed(&c1, 1000);
    let r = records(m);
    let (after, _) = drops_and_lost(&lab);
    let header = of_type(&r, "header");
    assert_eq!(header.len(), 1, "{r:?}");
    assert_eq!(header[0]["sample"], 4);
    assert_eq!(header[0]["rate"], 50);
    assert!(
        header[0]["limits"].as_str().unwrap().contains("--rate 50"),
        "{header:?}"
    );
    let [printed, lost, suppressed, earlier] = summary(&r);
    assert_eq!(printed + lost + suppressed + earlier, after - before);
    assert!(suppressed > 0);
    // At most 50 printed in each second from the first printed on, and no
    // more than one in four of those seen.
    let times: Vec<f64> = of_type(&r, "event")
        .iter()
        .map(|e| e["time"].as_f64().unwrap())
        .collect();
    assert_eq!(times.len() as u64, printed);
    let mut window = (f64::MIN, 0);
    for t in times {
        if t - window.0 >= 1.0 - 1e-6 {
            window = (t, 0);
        }
        window.1 += 1;
        assert!(window.1 <= 50, "more than 50 events in a second");
    }
    assert!(printed <= (printed + suppressed).div_ceil(4));
}

/// In text mode the limits come first, as a comment line, and the totals
/// last; the line on stderr states the limits too.
#[test]
fn text_mode_states_limits_and_totals() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let m = monitor_as(&lab, "text", &["--sample", "3", "--timeout", "2"]);
    burst::spoofed(&c1, 30);
    let (out, _) = output(m);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 3, "{out}");
    assert!(lines[0].starts_with("# drops from "), "{out}");
    assert!(
        lines[0].contains("one event in 3 printed (--sample 3)"),
        "{out}"
    );
    let events = lines.iter().filter(|l| !l.starts_with('#')).count();
    assert!(events >= 10, "{out}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with('#') || l.contains("spoofed_source"))
    );
    let last = lines.last().unwrap();
    assert!(
        last.starts_with(&format!(
            "# {events} events printed, 0 lost (event buffer full), "
        )),
        "{out}"
    );
}
