//! `attach bench` with every metric the quick run leaves out (M3, M4, M5,
//! M7), with the shortest runs: the harness, its targets, its JSON and its
//! chart, not the speed.

use std::{path::Path, time::Duration};

use attach_tests::lab::{Attach, require_root};
use serde_json::Value;

use super::{bench, num, series};

/// The median, as the bench takes it (between the two middle values of an
/// even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Every series' ratios are paired: recomputed here from its samples and
/// its reference's, round by round, they are the median of the per-round
/// quotients (not the quotient of the medians).
fn check_paired_ratios(doc: &Value) {
    let results = doc["results"].as_array().expect("results");
    for s in results {
        let who = s["contender"].as_str().unwrap();
        for (to, v) in s["ratios"].as_object().expect("ratios") {
            let reference = results
                .iter()
                .find(|r| {
                    r["metric"] == s["metric"]
                        && r["case"] == s["case"]
                        && r["contender"] == to.as_str()
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{} {} {who}: a ratio to {to}, which did not run",
                        s["metric"], s["case"]
                    )
                });
            let per_round: Vec<f64> = s["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    let b = reference["samples"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|b| b["round"] == a["round"])
                        .unwrap_or_else(|| panic!("{to} has no round {}", a["round"]));
                    num(&a["value"], "value") / num(&b["value"], "value")
                })
                .collect();
            let want = median(per_round);
            let got = num(v, "ratio");
            assert!(
                (got - want).abs() <= 1e-4 * want.max(1.0),
                "{} {} {who} / {to}: ratio {got}, the median of the rounds' ratios is {want}",
                s["metric"],
                s["case"]
            );
        }
    }
}

/// Every metric the quick run leaves out (M3, M4, M5, M7), with the
/// shortest runs the bench takes, two contenders (host and ours-tc: the
/// harness, not the comparison), M7's 1- and 10-endpoint cases and its
/// scale row with 10 and 200 endpoints on the parent: every
/// case has the rows expected with finite positive samples in every round,
/// ratios paired per round, the targets of what ran get a value and the
/// others say "not measured", and the chart has a panel for each.
#[test]
fn every_other_metric_runs_with_targets_json_and_chart() {
    require_root();
    let cni_plugin = Path::new("/usr/lib/cni/macvlan");
    assert!(
        cni_plugin.exists(),
        "{} is missing (Debian: containernetworking-plugins): M7's reference cannot run",
        cni_plugin.display()
    );
    let our_plugin = Attach::bin().unwrap().with_file_name("attach-cni");
    assert!(
        our_plugin.exists(),
        "{} is missing (cargo build -p attach-user): M7's ours-cni cannot run",
        our_plugin.display()
    );
    let svg = std::env::temp_dir().join(format!("atl-{}-bench.svg", std::process::id()));
    let doc = bench(
        &[
            "--metrics",
            "m3,m4,m5,m7",
            "--contenders",
            "host,ours-tc",
            "--m7-endpoints",
            "1,10",
            "--m7-scale",
            "200",
            "--rounds",
            "3",
            "--duration",
            "0.2",
            "--svg",
            svg.to_str().unwrap(),
        ],
        Duration::from_secs(240),
    );
    let chart = std::fs::read_to_string(&svg);
    let _ = std::fs::remove_file(&svg);
    let chart = chart.expect("the chart was written");

    assert_eq!(
        doc["config"]["metrics"],
        serde_json::json!(["m3", "m4", "m5", "m7"])
    );
    assert_eq!(
        doc["config"]["contenders"],
        serde_json::json!(["host", "ours-tc"])
    );
    assert_eq!(doc["config"]["m7_endpoints"], serde_json::json!([1, 10]));
    assert_eq!(doc["config"]["m7_scale"], serde_json::json!([10, 200]));
    assert!(
        doc["generator"].is_null(),
        "no metric here generates frames: {}",
        doc["generator"]
    );

    // The rows: (metric, case) -> contenders, in the order they ran.
    let m7 = ["ours", "ours-cni", "native", "cni", "ours-probed"];
    let want: Vec<(&str, &str, Vec<&str>)> = vec![
        ("M3", "tcp_rr_p50", vec!["host", "ours-tc"]),
        ("M3", "tcp_rr_p99", vec!["host", "ours-tc"]),
        ("M4", "udp_socket_rate", vec!["host", "ours-tc"]),
        ("M5", "tcp_wire_to_container", vec!["host", "ours-tc"]),
        ("M5", "tcp_container_to_wire", vec!["host", "ours-tc"]),
        // Only a contender with a second container on the parent.
        ("M5", "tcp_container_to_container", vec!["ours-tc"]),
        ("M7", "attach_1", m7.to_vec()),
        ("M7", "attach_10", m7.to_vec()),
        ("M7", "detach_1", m7.to_vec()),
        ("M7", "detach_10", m7.to_vec()),
        ("M7", "add_at_scale", vec!["ours-few", "ours-many"]),
        ("M7", "add_at_scale_cpu", vec!["ours-few", "ours-many"]),
    ];
    let results = doc["results"].as_array().expect("results");
    let mut got: Vec<(String, String, String)> = results
        .iter()
        .map(|s| {
            (
                s["metric"].as_str().unwrap().to_owned(),
                s["case"].as_str().unwrap().to_owned(),
                s["contender"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut expected: Vec<(String, String, String)> = want
        .iter()
        .flat_map(|(m, c, who)| {
            who.iter()
                .map(|w| (m.to_string(), c.to_string(), w.to_string()))
        })
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "the rows of the results");

    for s in results {
        let what = format!("{} {} {}", s["metric"], s["case"], s["contender"]);
        let samples = s["samples"].as_array().expect("samples");
        let rounds: Vec<u64> = samples
            .iter()
            .map(|x| x["round"].as_u64().unwrap())
            .collect();
        assert_eq!(rounds, [0, 1, 2], "{what}: one sample per round");
        for x in samples {
            let v = num(&x["value"], "value");
            assert!(v.is_finite() && v > 0.0, "{what}: {x}");
        }
        let sum = &s["summary"];
        let (lo, mid, hi) = (
            num(&sum["min"], "min"),
            num(&sum["median"], "median"),
            num(&sum["max"], "max"),
        );
        assert!(lo <= mid && mid <= hi && lo > 0.0, "{what}: summary {sum}");
        // A contender has a ratio to every reference that ran, and only to those.
        let refs: &[&str] = match s["metric"].as_str().unwrap() {
            "M3" | "M4" => &["host"],
            "M5" if s["case"] == "tcp_container_to_container" => &[],
            "M5" => &["host"],
            _ if scale_row(s) => &["ours-few"],
            _ => &["cni", "native"],
        };
        let mut have: Vec<&str> = s["ratios"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        have.sort();
        assert_eq!(have, refs, "{what}: ratios {}", s["ratios"]);
    }
    check_paired_ratios(&doc);

    // What each number is made of.
    for s in results {
        let what = format!("{} {} {}", s["metric"], s["case"], s["contender"]);
        for x in s["samples"].as_array().unwrap() {
            let v = num(&x["value"], "value");
            let d = &x["detail"];
            match s["metric"].as_str().unwrap() {
                "M3" => {
                    assert!(num(&d["observations"], "observations") > 0.0, "{what}: {x}");
                    assert!(num(&d["avg_us"], "avg_us") > 0.0, "{what}: {x}");
                }
                "M4" => {
                    let sent = num(&d["sent_mpps"], "sent_mpps");
                    assert!(
                        sent >= v * 0.999,
                        "{what}: received {v} of {sent} Mpps sent"
                    );
                    let loss = num(&d["loss_pct"], "loss_pct");
                    assert!((0.0..=100.0).contains(&loss), "{what}: loss {loss}%");
                }
                "M5" => assert!(num(&d["retransmits"], "retransmits") >= 0.0, "{what}: {x}"),
                _ if scale_row(s) => {
                    let on = num(&d["endpoints_on_parent"], "endpoints_on_parent");
                    let want = if s["contender"] == "ours-few" {
                        10.0
                    } else {
                        200.0
                    };
                    assert_eq!(on, want, "{what}: {x}");
                    assert!(num(&d["del_ms"], "del_ms") > 0.0, "{what}: {x}");
                }
                _ => {
                    let n = num(&d["endpoints"], "endpoints");
                    let c = s["case"].as_str().unwrap();
                    assert_eq!(
                        c.rsplit('_').next(),
                        Some(n.to_string().as_str()),
                        "{what}: {x}"
                    );
                    let per = num(&d["ms_per_endpoint"], "ms_per_endpoint");
                    assert!(
                        (per * n - v).abs() <= 1e-3 * v.max(1.0),
                        "{what}: {per} ms × {n} ≠ {v} ms"
                    );
                }
            }
        }
    }
    // A round's p99 is never below its p50.
    let m3 = series(&doc, "M3");
    for who in ["host", "ours-tc"] {
        let at = |case: &str| -> Vec<f64> {
            m3.iter()
                .find(|s| s["case"] == case && s["contender"] == who)
                .unwrap()["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| num(&x["value"], "value"))
                .collect()
        };
        for (p50, p99) in at("tcp_rr_p50").into_iter().zip(at("tcp_rr_p99")) {
            assert!(p99 >= p50, "M3 {who}: p99 {p99} µs < p50 {p50} µs");
        }
    }

    // Targets: every one listed; ours-tc's against host and M7's scale row
    // have a value and a verdict, every other (a contender or reference that did not run, a
    // metric that did not run, M7's 100 endpoints) says not measured.
    let targets = doc["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 27, "targets: {targets:?}");
    let measured = [
        "ours-tc: p50 latency vs host",
        "ours-tc: p99 latency vs host",
        "ours-tc: UDP socket rate vs host",
        "ours-tc: TCP wire→container vs host",
        "ours-tc: TCP container→wire vs host",
        "ours (CLI): one add with many endpoints on the parent vs few (1000 vs 10 by default)",
        "ours (CLI): one add's CPU time, many vs few endpoints on its parent",
    ];
    for t in targets {
        let what = t["what"].as_str().unwrap();
        if measured.contains(&what) {
            let v = num(&t["value"], "target value");
            assert!(v.is_finite() && v > 0.0, "target {t}");
            assert!(t["holds"].is_boolean(), "target {t}");
            assert!(
                ["holds", "misses", "within_noise"].contains(&t["verdict"].as_str().unwrap()),
                "target {t}"
            );
            let spread = t["spread"].as_array().expect("a spread over 3 rounds");
            assert!(num(&spread[0], "q1") <= num(&spread[1], "q3"), "target {t}");
        } else {
            assert_eq!(t["verdict"], "not_measured", "target {t}");
            assert!(t["value"].is_null() && t["holds"].is_null(), "target {t}");
        }
    }
    let verdicts = targets
        .iter()
        .filter(|t| t["verdict"] != "not_measured")
        .count();
    assert_eq!(verdicts, measured.len(), "targets: {targets:?}");

    // The chart: a panel for the ratios to host (M3-M5) and one for M7,
    // with every contender that ran in a legend and no M7 100-endpoint group.
    assert!(
        chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"),
        "{chart}"
    );
    for text in [
        ">Datapath performance relative to host",
        ">M3 TCP RR p50<",
        ">M3 TCP RR p99<",
        ">M4 UDP socket<",
        ">M5 wire→ctr<",
        ">M5 ctr→wire<",
        ">M7 — control plane",
        ">attach 1<",
        ">attach 10<",
        ">detach 1<",
        ">detach 10<",
        ">host<",
        ">ours-tc<",
        ">ours<",
        ">ours-cni<",
        ">native<",
        ">cni<",
        ">ours-probed<",
    ] {
        assert!(chart.contains(text), "the chart has no {text}:\n{chart}");
    }
    for text in [">attach 100<", ">detach 100<", ">ours-xdp<", ">bridge<"] {
        assert!(
            !chart.contains(text),
            "the chart has {text}, which did not run:\n{chart}"
        );
    }
}

/// A row of M7's scale: the wall clock's or the CPU time's.
fn scale_row(s: &serde_json::Value) -> bool {
    matches!(
        s["case"].as_str(),
        Some("add_at_scale" | "add_at_scale_cpu")
    )
}
