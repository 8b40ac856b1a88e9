//! What a run shows: one document ([`Doc`]) rendered as a table for people
//! or as JSON for machines, with the performance targets checked.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use super::{
    Config,
    generator::Generator,
    machine::Machine,
    metrics::{all_cases, fmt_value, m6::M6},
    stats::{Better, Results, Series, Summary},
    targets::{Target, targets},
    topology::{Contender, LabFacts},
};

#[derive(Serialize)]
pub struct ContenderInfo {
    pub name: &'static str,
    pub what: &'static str,
}

/// The generator M1 and M2 used; rates of one are not comparable with
/// rates of the other.
#[derive(Serialize)]
pub struct GeneratorInfo {
    pub kind: Generator,
    pub what: &'static str,
}

#[derive(Serialize)]
pub struct Doc<'a> {
    pub tool: &'static str,
    pub version: &'static str,
    pub config: &'a Config,
    pub machine: Machine,
    pub contenders: Vec<ContenderInfo>,
    pub lab: Option<&'a LabFacts>,
    /// `None`: no metric generated frames.
    pub generator: Option<GeneratorInfo>,
    pub method: Vec<&'static str>,
    /// Runs during which another process took more than 10% of a CPU.
    pub busy: Vec<String>,
    pub results: &'a [Series],
    pub m6: Option<&'a M6>,
    pub targets: Vec<Target>,
    /// Where the rounds disagree beyond their spread (the machine's speed
    /// moved during the run).
    pub warnings: Vec<String>,
}

const METHOD: [&str; 8] = [
    "One topology in namespaces of its own: a traffic source, a node, one veth wire per contender; the node side of a wire plays the NIC (parent).",
    "Wires: TSO, GSO and TX checksum offload off at both ends, GRO on, fraglist GRO (rx-gro-list) off unless --parent-gro-list (recorded per interface under lab.offloads).",
    "Generator (M1, M2): BPF_PROG_TEST_RUN live frames, XDP_TX out of the wire veth, 64-byte UDP frames of one flow; generator and receive path share the measured vCPU.",
    "Measured processes pinned to the measured CPU at nice -20; receivers of socket tests pinned to the other CPU.",
    "Neighbours are permanent entries on both sides; bridge FDB entries are static.",
    "One discarded warm-up run per contender, then contenders interleaved round by round; the result is the median over rounds, min-max its spread.",
    "Other processes taking more than 10% of a CPU during a run are noted (ksoftirqd left out: it mostly carries the bench's own traffic).",
    "A veth stands in for a NIC: XDP on a veth works on frames copied out of skbs (except XDP_TX'd generator frames) and disables TSO on its peer; on a real NIC XDP runs before any skb exists.",
];

/// The method's generator line when the kernel refused live frames.
const METHOD_AF_PACKET: &str = "Generator (M1, M2): the kernel refuses XDP live frames, so an AF_PACKET socket on the wire veth (PACKET_QDISC_BYPASS, sendmmsg of 256 frames), 64-byte UDP frames of one flow, timed by the sending thread's CPU time; generator and receive path share the measured vCPU; M2's ours-xdp (the datapath run on live frames) is left out. Not comparable with live-frames runs: every frame is an skb and is polled alone on the receive side.";

/// The method, its generator line for `generator`.
fn method(generator: Option<Generator>) -> Vec<&'static str> {
    METHOD
        .iter()
        .map(|m| match generator {
            Some(Generator::AfPacket) if m.starts_with("Generator (M1, M2)") => METHOD_AF_PACKET,
            _ => m,
        })
        .collect()
}

impl<'a> Doc<'a> {
    pub fn new(
        config: &'a Config,
        machine: Machine,
        lab: Option<&'a LabFacts>,
        results: &'a Results,
        m6: Option<&'a M6>,
        generator: Option<Generator>,
    ) -> Doc<'a> {
        let mut busy = Vec::new();
        for s in &results.series {
            for x in &s.samples {
                if !x.busy.is_empty() {
                    busy.push(format!(
                        "{} {} round {} {}: {}",
                        s.metric,
                        s.case,
                        x.round + 1,
                        s.contender,
                        x.busy.join(", ")
                    ));
                }
            }
        }
        busy.dedup();
        Doc {
            tool: "attach bench",
            version: env!("CARGO_PKG_VERSION"),
            config,
            machine,
            contenders: Contender::ALL
                .iter()
                .map(|c| ContenderInfo {
                    name: c.name(),
                    what: c.what(),
                })
                .collect(),
            lab,
            generator: generator.map(|kind| GeneratorInfo {
                kind,
                what: kind.what(),
            }),
            method: method(generator),
            busy,
            results: &results.series,
            m6,
            targets: targets(results, m6),
            warnings: disagreements(results),
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("serializable")
    }

    pub fn text(&self) -> String {
        let mut o = String::new();
        let m = &self.machine;
        let _ = writeln!(
            o,
            "attach bench — kernel {}, {} ({} vCPU, {} MiB); measured CPU {}, receivers CPU {}",
            m.kernel, m.cpu_model, m.nproc, m.memory_mib, m.measured_cpu, m.receiver_cpu
        );
        let _ = writeln!(
            o,
            "{} round(s) × {:.1} s{}; load average {} at start, {} at end; {:.0} s in all",
            self.config.rounds,
            self.config.duration.as_secs_f64(),
            if self.config.quick { " (--quick)" } else { "" },
            first3(&m.loadavg_at_start),
            first3(&m.loadavg_at_end),
            m.elapsed_s
        );
        if let Some(lab) = self.lab {
            if let Some(mode) = &lab.xdp_mode {
                let _ = writeln!(o, "ours-xdp: XDP attached in {mode} mode on its parent");
            }
            if !lab.br_netfilter.is_empty() {
                let bnf: Vec<String> = lab
                    .br_netfilter
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let _ = writeln!(o, "bridge contender: {}", bnf.join(", "));
            }
            let _ = writeln!(o, "wires: {}", wire_offloads(lab));
        }
        if let Some(g) = &self.generator {
            let _ = writeln!(
                o,
                "generator (M1, M2): {}{}",
                g.what,
                match g.kind {
                    Generator::XdpLiveFrames => "",
                    Generator::AfPacket if self.config.metrics.iter().any(|m| m == "m2") =>
                        "; rates not comparable with runs on XDP live frames; M2's ours-xdp left out",
                    Generator::AfPacket => "; rates not comparable with runs on XDP live frames",
                }
            );
        }
        if self.busy.is_empty() {
            let _ = writeln!(
                o,
                "no other process took more than 10% of a CPU during any run"
            );
        } else {
            let _ = writeln!(
                o,
                "{} run(s) had another process above 10% of a CPU (marked *; details in -o json):",
                self.busy.len()
            );
            for b in self.busy.iter().take(8) {
                let _ = writeln!(o, "  {b}");
            }
            if self.busy.len() > 8 {
                let _ = writeln!(o, "  …");
            }
        }
        let cases = all_cases();
        for case in &cases {
            let rows: Vec<&Series> = self
                .results
                .iter()
                .filter(|s| s.metric == case.metric && s.case == case.id)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let better = match case.better {
                Better::Higher => "higher is better",
                Better::Lower => "lower is better",
            };
            let _ = writeln!(
                o,
                "\n{}  {}  [{}, {better}]",
                case.metric, case.title, case.unit
            );
            let mut head = format!("  {:<15} {:>9}  {:<19}", "", "median", "min–max");
            for r in case.refs {
                let _ = write!(head, " {:>8}", format!("×{}", short(r)));
            }
            let _ = writeln!(o, "{head}  notes");
            for s in rows {
                let Some(sum) = s.summary else { continue };
                let busy = if s.samples.iter().any(|x| !x.busy.is_empty()) {
                    "*"
                } else {
                    " "
                };
                let mut line = format!(
                    "  {:<15} {:>9}{busy} {:<19}",
                    s.contender,
                    fmt_value(sum.median),
                    format!("{}–{}", fmt_value(sum.min), fmt_value(sum.max))
                );
                for r in case.refs {
                    let v = s
                        .ratios
                        .get(*r)
                        .and_then(serde_json::Value::as_f64)
                        .map_or("—".to_owned(), |x| format!("{x:.3}"));
                    let _ = write!(line, " {v:>8}");
                }
                let _ = writeln!(o, "{line}  {}", notes(s));
            }
        }
        if let Some(m6) = self.m6 {
            let _ = writeln!(
                o,
                "\nM6  Per-program cost: BPF_PROG_TEST_RUN ns/packet (median), by endpoints in the tables; most translated instructions on the path"
            );
            let mut head = format!("  {:<18} {:<14}", "path", "program");
            for n in &m6.endpoints {
                let _ = write!(head, " {:>9}", format!("{n} ep"));
            }
            let _ = writeln!(o, "{head} {:>10}", "insns");
            for p in &m6.paths {
                let mut line = format!(
                    "  {:<18} {:<14}",
                    format!("{}{}", p.id, if p.hot { " (hot)" } else { "" }),
                    p.program
                );
                for n in &m6.endpoints {
                    let v =
                        p.at.iter()
                            .find(|a| a.endpoints == *n)
                            .map_or("—".to_owned(), |a| match a.fanout {
                                Some(f) => format!("{:.0}/{f}", a.ns.median),
                                None => format!("{:.1}", a.ns.median),
                            });
                    let _ = write!(line, " {v:>9}");
                }
                let insns = match (p.decision_insns, p.max_insns) {
                    (Some(d), Some(m)) => format!("{d}/{m}"),
                    _ => "loop".to_owned(),
                };
                let _ = writeln!(o, "{line} {insns:>10}");
            }
            let sizes: Vec<String> = m6
                .programs
                .iter()
                .map(|p| {
                    format!(
                        "{} {} insns ({} B JIT)",
                        p.program, p.xlated_insns, p.jited_bytes
                    )
                })
                .collect();
            let ran: Vec<String> = m6
                .paths
                .iter()
                .map(|p| match (p.executed_insns, &p.not_executed) {
                    (Some(n), _) => format!("{} {n}", p.id),
                    (None, Some(why)) => format!("{} not executed ({why})", p.id),
                    (None, None) => String::new(),
                })
                .filter(|s| !s.is_empty())
                .collect();
            if !ran.is_empty() {
                let _ = writeln!(
                    o,
                    "  insns executed by the path's frame (the translated program stepped with the kernel's maps): {}",
                    ran.join(", ")
                );
            }
            let _ = writeln!(o, "  program sizes: {}", sizes.join(", "));
            let _ = writeln!(
                o,
                "  (rx_broadcast: ns per broadcast/clones made; insns: upper bound over the path's branches, tracing off / all)"
            );
        }
        if !self.targets.is_empty() {
            let _ = writeln!(o, "\nTargets");
            let _ = writeln!(
                o,
                "  (verdict over the middle half of the rounds: holds, MISSES, or within noise \
                 when the goal lies inside that spread)"
            );
            for t in &self.targets {
                let v = t.value.map_or("—".to_owned(), |v| format!("{v:.3}"));
                let spread = t
                    .spread
                    .map_or(String::new(), |[lo, hi]| format!("{lo:.3}–{hi:.3}"));
                let _ = writeln!(
                    o,
                    "  {:<12} {:<3} {:<52} {:>9} {:>13}  goal {}",
                    t.verdict.word(),
                    t.metric,
                    t.what,
                    v,
                    spread,
                    t.goal
                );
            }
        }
        for w in &self.warnings {
            let _ = writeln!(o, "\nwarning: {w}");
        }
        o
    }
}

fn first3(loadavg: &str) -> String {
    loadavg
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn short(r: &str) -> &str {
    match r {
        "redirect-peer" => "rpeer",
        "parent-drop" => "pdrop",
        r => r,
    }
}

/// The wire settings in one line (every interface is in -o json).
fn wire_offloads(lab: &LabFacts) -> String {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (name, f) in &lab.offloads {
        if name.contains(": wire") {
            let line: Vec<String> = [
                "tx-checksumming",
                "tcp-segmentation-offload",
                "generic-segmentation-offload",
                "generic-receive-offload",
                "rx-gro-list",
            ]
            .iter()
            .map(|k| format!("{} {}", abbrev(k), f.get(*k).map_or("?", String::as_str)))
            .collect();
            *seen.entry(line.join(", ")).or_default() += 1;
        }
    }
    seen.into_iter()
        .map(|(l, n)| format!("{l} ({n} interfaces)"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn abbrev(k: &str) -> &str {
    match k {
        "tx-checksumming" => "tx-csum",
        "tcp-segmentation-offload" => "tso",
        "generic-segmentation-offload" => "gso",
        "generic-receive-offload" => "gro",
        k => k,
    }
}

fn median_of(s: &Series, key: &str) -> Option<f64> {
    let v: Vec<f64> = s
        .samples
        .iter()
        .filter_map(|x| x.detail.get(key).and_then(serde_json::Value::as_f64))
        .collect();
    Summary::of(&v).map(|m| m.median)
}

fn notes(s: &Series) -> String {
    let mut n = Vec::new();
    if let Some(v) = median_of(s, "sent_mpps") {
        n.push(format!("sent {}", fmt_value(v)));
    }
    if let Some(v) = median_of(s, "loss_pct") {
        n.push(format!("loss {v:.1}%"));
    }
    // GRO chains: fewer passes through the IP layer than datagrams.
    if let Some(v) = median_of(s, "datagrams_per_ip_pass").filter(|v| *v >= 1.05) {
        n.push(format!("{v:.1} datagrams/IP pass"));
    }
    if let Some(v) = median_of(s, "retransmits") {
        n.push(format!("retr {v:.0}"));
    }
    if let Some(v) = median_of(s, "ms_per_endpoint") {
        n.push(format!("{} ms/endpoint", fmt_value(v)));
    }
    n.join(", ")
}

/// Paired ratios whose first and second half of rounds differ by more than
/// the ratios' interquartile range: something changed during the run.
fn disagreements(results: &Results) -> Vec<String> {
    let mut out = Vec::new();
    for s in &results.series {
        for (to, rounds) in &s.ratio_rounds {
            if rounds.len() < 4 {
                continue;
            }
            let half = rounds.len() / 2;
            let (Some(a), Some(b), Some(all)) = (
                Summary::of(&rounds[..half]),
                Summary::of(&rounds[half..]),
                Summary::of(rounds),
            ) else {
                continue;
            };
            let gap = (a.median - b.median).abs();
            if gap > all.q3 - all.q1 {
                out.push(format!(
                    "{} {} {} / {to}: the first rounds give {:.3}, the last {:.3}, more apart \
                     than the rounds' spread ({:.3}–{:.3}); the machine's speed moved during \
                     the run: run it again, or with more --rounds",
                    s.metric, s.case, s.contender, a.median, b.median, all.q1, all.q3
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{
        stats::{Case, Sample},
        targets::Verdict,
    };

    fn series(rounds: &[(f64, f64)]) -> Results {
        const CASE: Case = Case {
            metric: "M3",
            id: "tcp_rr_p50",
            title: "t",
            unit: "us",
            better: Better::Lower,
            refs: &["host"],
        };
        let mut r = Results::default();
        for (i, (ours, host)) in rounds.iter().enumerate() {
            for (who, v) in [("ours-tc", ours), ("host", host)] {
                let sample = Sample {
                    round: i as u32,
                    value: *v,
                    detail: Default::default(),
                    busy: Vec::new(),
                };
                r.push(&CASE, who, sample);
            }
        }
        r.finish(&[CASE]);
        r
    }

    #[test]
    fn a_goal_inside_the_rounds_spread_is_within_noise() {
        let verdict = |rounds: &[(f64, f64)]| {
            let r = series(rounds);
            targets(&r, None)
                .into_iter()
                .find(|t| t.what == "ours-tc: p50 latency vs host")
                .map(|t| t.verdict)
        };
        // Ratios 1.00, 1.01, 1.02, 1.02, 1.01: all under 1.03.
        let clean = [
            (100.0, 100.0),
            (101.0, 100.0),
            (102.0, 100.0),
            (102.0, 100.0),
            (101.0, 100.0),
        ];
        assert_eq!(verdict(&clean), Some(Verdict::Holds));
        // 0.98 .. 1.10 around a median of 1.02: the goal is inside.
        let noisy = [
            (98.0, 100.0),
            (102.0, 100.0),
            (110.0, 100.0),
            (100.0, 100.0),
            (106.0, 100.0),
        ];
        assert_eq!(verdict(&noisy), Some(Verdict::WithinNoise));
        let slow = [
            (110.0, 100.0),
            (111.0, 100.0),
            (112.0, 100.0),
            (109.0, 100.0),
            (110.0, 100.0),
        ];
        assert_eq!(verdict(&slow), Some(Verdict::Misses));
        // Unmeasured targets stay in the list, said so.
        let r = series(&clean);
        let t = targets(&r, None);
        assert!(
            t.iter()
                .any(|t| t.metric == "M4" && t.verdict == Verdict::NotMeasured)
        );
    }

    #[test]
    fn rounds_that_drift_apart_are_warned_of() {
        let steady = [
            (101.0, 100.0),
            (102.0, 100.0),
            (101.0, 100.0),
            (102.0, 100.0),
            (101.0, 100.0),
            (102.0, 100.0),
        ];
        assert!(disagreements(&series(&steady)).is_empty());
        let drift = [
            (100.0, 100.0),
            (101.0, 100.0),
            (100.0, 100.0),
            (120.0, 100.0),
            (121.0, 100.0),
            (120.0, 100.0),
        ];
        let w = disagreements(&series(&drift));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("ours-tc / host"), "{w:?}");
    }

    /// A target whose metric did not run stays in the text's table, said
    /// so, beside the measured ones: one line per target, none vanishes.
    #[test]
    fn the_text_report_lists_every_target_measured_or_not() {
        let config = Config {
            quick: false,
            rounds: 5,
            duration: std::time::Duration::from_secs(1),
            metrics: vec!["m3".into()],
            contenders: Contender::ALL.to_vec(),
            m7_endpoints: vec![1, 10, 100],
            m7_scale: None,
            measured_cpu: 0,
            receiver_cpu: 0,
            parent_gro_list: false,
            svg: None,
            listing: None,
        };
        let results = series(&[
            (100.0, 100.0),
            (101.0, 100.0),
            (102.0, 100.0),
            (102.0, 100.0),
            (101.0, 100.0),
        ]);
        let doc = Doc::new(&config, Machine::now(0, 0), None, &results, None, None);
        let text = doc.text();
        let table = &text[text.find("\nTargets\n").expect("a targets table")..];
        // Up to the warnings that follow it.
        let lines: Vec<&str> = table
            .lines()
            .skip(3)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), doc.targets.len(), "{table}");
        assert_eq!(doc.targets.len(), 27);
        for t in &doc.targets {
            let line = lines
                .iter()
                .find(|l| l.contains(t.what.as_str()))
                .unwrap_or_else(|| panic!("no line for {}:\n{table}", t.what));
            let measured = t.what == "ours-tc: p50 latency vs host";
            assert_eq!(
                line.trim_start().starts_with("not measured"),
                !measured,
                "{line}"
            );
            if measured {
                assert!(line.trim_start().starts_with("holds"), "{line}");
                assert!(line.contains("1.010"), "{line}");
            }
        }
    }

    #[test]
    fn the_text_report_speaks_of_the_product_only() {
        let config = Config {
            quick: true,
            rounds: 3,
            duration: std::time::Duration::from_secs(1),
            metrics: vec!["m1".into()],
            contenders: Contender::ALL.to_vec(),
            m7_endpoints: vec![1, 10, 100],
            m7_scale: None,
            measured_cpu: 0,
            receiver_cpu: 0,
            parent_gro_list: false,
            svg: None,
            listing: None,
        };
        let results = Results::default();
        let mut doc = Doc::new(&config, Machine::now(0, 0), None, &results, None, None);
        doc.targets = vec![Target {
            metric: "M1",
            what: "ours-tc: delivered rate vs native".into(),
            goal: "≥ 0.98× native".into(),
            value: Some(1.01),
            holds: Some(true),
            spread: Some([0.99, 1.02]),
            verdict: Verdict::WithinNoise,
        }];
        let text = doc.text();
        assert!(text.contains("\nTargets\n"), "{text}");
        assert!(text.contains("ours-tc: delivered rate vs native"), "{text}");
        for word in ["issue", "tracker", "ticket"] {
            assert!(!text.to_lowercase().contains(word), "{word} in:\n{text}");
            assert!(
                !doc.json().to_lowercase().contains(word),
                "{word} in the JSON"
            );
        }
    }
}
