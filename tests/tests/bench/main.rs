//! `attach bench --quick -o json`, as CI runs it: it must finish within two
//! minutes with sane numbers and leave nothing behind. Speed is not judged.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use attach_tests::lab::{Attach, netns_list, require_root};
use serde_json::Value;

mod metrics;

fn series<'a>(doc: &'a Value, metric: &str) -> Vec<&'a Value> {
    doc["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|s| s["metric"] == metric)
        .collect()
}

fn num(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// Runs `attach bench` with `args` and `-o json`, checks it succeeded
/// within `limit` and left nothing behind, and returns its document.
fn bench(args: &[&str], limit: Duration) -> Value {
    let start = Instant::now();
    let child = Command::new(Attach::bin().unwrap())
        .arg("bench")
        .args(args)
        .args(["-o", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start attach bench");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for attach bench");
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "attach bench {args:?} failed: {}\nstdout: {}\nstderr: {stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(took < limit, "{args:?} took {took:?}, more than {limit:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");

    // Everything it made is gone.
    let prefix = format!("atb-{pid}-");
    let left: Vec<String> = netns_list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    for dir in [
        format!("/sys/fs/bpf/attach-bench-{pid}"),
        format!("/tmp/attach-bench-{pid}"),
    ] {
        assert!(!Path::new(&dir).exists(), "{dir} left behind");
    }
    let node_pins = doc["lab"]["node_pins"].as_str().expect("lab.node_pins");
    assert!(
        !Path::new(node_pins).exists(),
        "the node's pins {node_pins} were left behind"
    );
    doc
}

/// Whether the run's generator was the AF_PACKET fallback (the kernel
/// refuses XDP live frames) rather than live frames; the report must say
/// which, as their rates are not comparable.
fn af_packet(doc: &Value) -> bool {
    let g = &doc["generator"];
    match g["kind"].as_str() {
        Some("xdp_live_frames") => false,
        Some("af_packet") => {
            assert!(
                g["what"].as_str().is_some_and(|w| w.contains("AF_PACKET")),
                "generator: {g}"
            );
            true
        }
        _ => panic!("the report does not say which generator ran: {g}"),
    }
}

/// Every sample's timed seconds are positive and within its wall-clock
/// time (the generator's clock leaves preemption and teardown out, never
/// adds to them).
fn check_seconds(s: &Value) {
    for x in s["samples"].as_array().expect("samples") {
        let secs = num(&x["detail"]["seconds"], "seconds");
        let wall = num(&x["detail"]["wall_seconds"], "wall_seconds");
        assert!(
            secs > 0.0 && secs <= wall * 1.01,
            "{} {}: {secs} s timed in {wall} s of wall clock",
            s["metric"],
            s["contender"]
        );
    }
}

/// The median over a series' samples of a number in their details.
fn median_detail(s: &Value, key: &str) -> f64 {
    let mut v: Vec<f64> = s["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|x| num(&x["detail"][key], key))
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn quick_bench_completes_with_sane_numbers_and_cleans_up() {
    require_root();
    let listing = std::env::temp_dir().join(format!("atl-{}-m6-listing", std::process::id()));
    let doc = bench(
        &["--quick", "--listing", listing.to_str().unwrap()],
        Duration::from_secs(120),
    );
    // Read at once, so the directory goes even if an assertion fails.
    let listings: std::collections::HashMap<String, String> = std::fs::read_dir(&listing)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let id = e.path().file_stem()?.to_string_lossy().into_owned();
                    Some((id, std::fs::read_to_string(e.path()).ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&listing);
    let af_packet = af_packet(&doc);

    // M1: every contender delivered frames, never more than were sent, and
    // every ratio is a finite number.
    let m1 = series(&doc, "M1");
    let names: Vec<&str> = m1.iter().filter_map(|s| s["contender"].as_str()).collect();
    for c in [
        "host",
        "native",
        "redirect-peer",
        "ours-tc",
        "ours-xdp",
        "bridge",
    ] {
        assert!(names.contains(&c), "M1 has no {c}: {names:?}");
    }
    for s in &m1 {
        let who = s["contender"].as_str().unwrap();
        let samples = s["samples"].as_array().expect("samples");
        assert!(samples.len() >= 3, "M1 {who}: {} samples", samples.len());
        for x in samples {
            assert!(
                num(&x["value"], "M1 value") > 0.0,
                "M1 {who}: no frames delivered: {x}"
            );
            let sent = num(&x["detail"]["sent"], "sent");
            let delivered = num(&x["detail"]["delivered"], "delivered");
            assert!(
                sent >= delivered,
                "M1 {who}: delivered {delivered} > sent {sent}"
            );
        }
        // A contender's ratio to itself is 1 by definition: not checked.
        for r in ["host", "native"].into_iter().filter(|r| *r != who) {
            let v = num(&s["ratios"][r], &format!("M1 {who} ratio to {r}"));
            assert!(v.is_finite() && v > 0.0, "M1 {who} ratio to {r}: {v}");
        }
        check_seconds(s);
        // Only the xdp datapath's container side chains the flow's
        // datagrams (fraglist GRO): fewer passes through the IP layer. A
        // NAPI poll takes 64 frames, so chains are long unless something
        // ends them (frames sent again as a receiver left them: 2.0).
        // The AF_PACKET generator's frames arrive one at a time (each
        // system call's transmit runs the receive side's poll for its one
        // frame), so there nothing chains, for any contender.
        let median = median_detail(s, "datagrams_per_ip_pass");
        if who == "ours-xdp" && !af_packet {
            assert!(median >= 16.0, "M1 {who}: {median} datagrams per IP pass");
        } else {
            assert!(median < 1.05, "M1 {who}: {median} datagrams per IP pass");
        }
    }

    // M2: the XDP path dropped frames in the container. Its ours-xdp run
    // (the datapath itself on live frames) needs live frames.
    let m2 = series(&doc, "M2");
    let names: Vec<&str> = m2.iter().filter_map(|s| s["contender"].as_str()).collect();
    let want: &[&str] = if af_packet {
        &["ours-xdp-wire", "parent-drop"]
    } else {
        &["ours-xdp", "ours-xdp-wire", "parent-drop"]
    };
    assert_eq!(names, want, "M2 runs");
    for s in &m2 {
        check_seconds(s);
        for x in s["samples"].as_array().unwrap() {
            assert!(
                num(&x["value"], "M2 value") > 0.0,
                "M2 {}: {x}",
                s["contender"]
            );
            let sent = num(&x["detail"]["sent"], "sent");
            let dropped = num(&x["detail"]["dropped_by_xdp"], "dropped");
            assert!(sent >= dropped, "M2: dropped {dropped} > sent {sent}");
        }
    }

    // M6: every path measured at every size it applies to, hot paths have
    // an instruction count.
    let paths = doc["m6"]["paths"].as_array().expect("m6.paths");
    assert!(!paths.is_empty());
    for p in paths {
        let id = p["id"].as_str().unwrap();
        let at = p["at"].as_array().unwrap();
        assert!(!at.is_empty(), "M6 {id}: not measured");
        for a in at {
            let ns = num(&a["ns"]["median"], "ns");
            assert!(ns > 0.0 && ns.is_finite(), "M6 {id}: {ns} ns/packet");
        }
        if p["hot"] == true {
            let decision = num(&p["decision_insns"], "decision_insns");
            assert!(decision > 0.0, "M6 {id}: {decision} instructions");
            // --listing marks the path the count was found on. Whatever the
            // search did, the path it marks must be one a delivered frame
            // takes with tracing off: it starts at the program's first
            // instruction, reaches an exit, makes the redirect the path is
            // named for and never emits an event or a log line.
            let text = listings
                .get(id)
                .unwrap_or_else(|| panic!("M6 {id}: no listing in {}", listing.display()));
            let marked: Vec<&str> = text.lines().filter(|l| l.starts_with('>')).collect();
            assert!(
                marked
                    .first()
                    .is_some_and(|l| l[1..].trim_start().starts_with("0:")),
                "M6 {id}: the marked path does not start at instruction 0\n{text}"
            );
            assert!(
                marked.iter().any(|l| l.trim_end().ends_with("exit")),
                "M6 {id}: the marked path reaches no exit\n{text}"
            );
            let redirect = if id == "rx_unicast" {
                "bpf_redirect_peer"
            } else {
                "redirect"
            };
            assert!(
                marked
                    .iter()
                    .any(|l| l.contains("call") && l.contains(redirect)),
                "M6 {id}: the marked path makes no {redirect} call\n{text}"
            );
            for quiet in ["bpf_ringbuf_output", "bpf_perf_event_output"] {
                assert!(
                    !marked.iter().any(|l| l.contains(quiet)),
                    "M6 {id}: the marked path calls {quiet}, which tracing off never does\n{text}"
                );
            }
        }
    }

    // The bound against an execution: a path's frame stepped through the
    // program's translated instructions with the kernel's maps returned the
    // verdict BPF_PROG_TEST_RUN returned, in no more instructions than the
    // bound searched for it (tracing off). Both hot paths and the
    // references must have been executed; any other path executed must
    // keep within its bound too.
    let required = [
        "rx_unicast",
        "xdp_unicast",
        "xdp_uncached",
        "ref_redirect_peer",
        "ref_xdp_tx",
    ];
    for id in required {
        let p = paths
            .iter()
            .find(|p| p["id"] == id)
            .unwrap_or_else(|| panic!("M6 has no {id}"));
        assert!(
            p["executed_insns"].is_number(),
            "M6 {id}: no execution counted: {}",
            p["not_executed"].as_str().unwrap_or("(no reason given)")
        );
    }
    for p in paths {
        let id = p["id"].as_str().unwrap();
        let Some(ran) = p["executed_insns"].as_f64() else {
            continue;
        };
        let bound = num(&p["decision_insns"], "decision_insns");
        assert!(
            ran > 0.0 && ran <= bound,
            "M6 {id}: {ran} instructions executed, the bound says at most {bound}"
        );
    }

    // Targets: every one is listed; those of the metrics this run measured
    // (M1, M2, M6) have a value and a verdict, the others (M3, M4, M5, M7)
    // neither. M2's needs live frames.
    let targets = doc["targets"].as_array().expect("targets");
    let metrics: Vec<&str> = targets
        .iter()
        .map(|t| t["metric"].as_str().expect("target metric"))
        .collect();
    let mut want_metrics = vec!["M1", "M1", "M2"];
    want_metrics.extend(["M3"; 8]);
    want_metrics.extend(["M4"; 2]);
    want_metrics.extend(["M5"; 4]);
    want_metrics.extend(["M6"; 6]);
    want_metrics.extend(["M7"; 4]);
    assert_eq!(metrics, want_metrics, "targets: {targets:?}");
    for t in targets {
        let measured = match t["metric"].as_str().unwrap() {
            "M1" | "M6" => true,
            "M2" => !af_packet,
            _ => false,
        };
        if measured {
            let v = num(&t["value"], "target value");
            assert!(v.is_finite() && v > 0.0, "target {t}");
            assert!(t["holds"].is_boolean(), "target {t}: no verdict");
            assert!(
                ["holds", "misses", "within_noise"].contains(&t["verdict"].as_str().unwrap()),
                "target {t}: no verdict over the rounds"
            );
        } else {
            assert!(
                t["value"].is_null() && t["holds"].is_null(),
                "target {t}: a verdict on a metric this run did not measure"
            );
            assert_eq!(t["verdict"], "not_measured", "target {t}");
        }
    }
}

/// With fraglist GRO on the parents, every contender whose container's IP
/// layer gets the parent's skbs chains too: host, native, redirect-peer and
/// ours-tc pass it once per chain, like ours-xdp (which chains in the
/// container). The setting is recorded for every parent; besides them only
/// the xdp datapath's containers have it (the engine turns it on there).
///
/// Chains need frames that arrive together: live frames come in bulks of
/// 64, the AF_PACKET generator's one at a time (each is polled alone), so
/// under it no contender can chain and the IP layer must see every
/// datagram pass on its own.
#[test]
fn parent_gro_list_chains_every_contender_and_is_recorded() {
    require_root();
    let doc = bench(
        &[
            "--metrics",
            "m1",
            "--rounds",
            "3",
            "--duration",
            "0.3",
            "--parent-gro-list",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(doc["config"]["parent_gro_list"], true);
    let af_packet = af_packet(&doc);
    let m1 = series(&doc, "M1");
    for who in ["host", "native", "redirect-peer", "ours-tc", "ours-xdp"] {
        let s = m1
            .iter()
            .find(|s| s["contender"] == who)
            .unwrap_or_else(|| panic!("M1 has no {who}"));
        check_seconds(s);
        let median = median_detail(s, "datagrams_per_ip_pass");
        if af_packet {
            assert!(
                (1.0..1.05).contains(&median),
                "M1 {who}: {median} datagrams per IP pass from the AF_PACKET generator"
            );
        } else {
            assert!(median >= 16.0, "M1 {who}: {median} datagrams per IP pass");
        }
    }
    let offloads = doc["lab"]["offloads"].as_object().expect("lab.offloads");
    let mut parents = 0;
    for (iface, f) in offloads {
        let parent = iface.contains("node side (parent)");
        parents += usize::from(parent);
        let xdp_container = iface.starts_with("ours-xdp:") && iface.contains("container");
        let want = if parent || xdp_container { "on" } else { "off" };
        assert_eq!(f["rx-gro-list"], want, "rx-gro-list of {iface}");
    }
    assert_eq!(parents, 6, "parents recorded: {offloads:?}");
}
