//! M3 — TCP request/response latency: sockperf ping-pong (64-byte
//! messages) from the generator side to a sockperf server in the container.
//! sockperf reports half the round trip; p50 and p99 are read from its
//! percentiles. Client on the measured CPU, server on the other.

use super::{Ctx, client, server, watched};
use crate::{
    bench::{
        stats::{Better, Case, detail, in_round_order},
        topology::Site,
    },
    error::{Error, Result},
};

pub const CASES: [Case; 2] = [
    Case {
        metric: "M3",
        id: "tcp_rr_p50",
        title: "TCP request/response latency p50 (sockperf ping-pong, half round trip)",
        unit: "µs",
        better: Better::Lower,
        refs: &["host", "native", "redirect-peer"],
    },
    Case {
        metric: "M3",
        id: "tcp_rr_p99",
        title: "TCP request/response latency p99 (sockperf ping-pong, half round trip)",
        unit: "µs",
        better: Better::Lower,
        refs: &["host", "native", "redirect-peer"],
    },
];

const PORT_BASE: u16 = 11100;

/// (p50, p99, average, observations) from sockperf's report.
pub fn parse(out: &str) -> Result<(f64, f64, f64, f64)> {
    // Drop ANSI colours.
    let clean: String = {
        let mut s = String::with_capacity(out.len());
        let mut esc = false;
        for ch in out.chars() {
            match (esc, ch) {
                (false, '\u{1b}') => esc = true,
                (true, c) if c.is_ascii_alphabetic() => esc = false,
                (true, _) => {}
                (false, c) => s.push(c),
            }
        }
        s
    };
    let after = |key: &str| -> Option<f64> {
        clean.lines().find_map(|l| {
            let i = l.find(key)?;
            l[i + key.len()..]
                .trim_start_matches([' ', '='])
                .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .next()?
                .parse()
                .ok()
        })
    };
    match (
        after("percentile 50.000"),
        after("percentile 99.000"),
        after("avg-latency="),
        after("Total "),
    ) {
        (Some(p50), Some(p99), Some(avg), obs) => Ok((p50, p99, avg, obs.unwrap_or(0.0))),
        _ => Err(Error::system(format!(
            "cannot read sockperf's percentiles from: {}",
            clean.trim()
        ))),
    }
}

fn port(site: &Site) -> u16 {
    PORT_BASE + u16::from(site.contender.k())
}

/// sockperf leaves the first 0.4 s and the last 0.05 s of a run out of its
/// statistics; in a run of 1 s a stall of the busy machine can leave it no
/// observation at all, so a measured run takes at least this long.
const MIN_SECS: u64 = 2;

fn ping_pong(ctx: &Ctx, site: &Site, secs: u64) -> Result<(f64, f64, f64, f64)> {
    parse(&sockperf(ctx, site, secs)?)
}

/// One sockperf ping-pong run's output.
fn sockperf(ctx: &Ctx, site: &Site, secs: u64) -> Result<String> {
    client(
        ctx,
        &ctx.lab.source,
        &[
            "sockperf",
            "ping-pong",
            "--tcp",
            "-i",
            &site.rx.ip.to_string(),
            "-p",
            &port(site).to_string(),
            "-t",
            &secs.to_string(),
            "-m",
            "64",
        ],
        &format!("m3-{}", site.contender.name()),
    )
}

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let sites = ctx.sites();
    let mut servers = Vec::new();
    for s in &sites {
        servers.push(server(
            ctx,
            &s.rx.ns,
            &[
                "sockperf",
                "server",
                "--tcp",
                "-i",
                &s.rx.ip.to_string(),
                "-p",
                &port(s).to_string(),
            ],
            port(s),
        )?);
    }
    (ctx.progress)("M3 warm-up (discarded)");
    for s in &sites {
        // Discarded, its statistics too (sockperf may have none to give).
        sockperf(ctx, s, 1)?;
    }
    let secs = ctx.whole_secs().max(MIN_SECS);
    for round in 0..ctx.cfg.rounds {
        for s in in_round_order(&sites, round) {
            let ((p50, p99, avg, obs), busy) = watched(|| ping_pong(ctx, s, secs))?;
            let d = detail(&[("avg_us", avg), ("observations", obs)]);
            ctx.record(
                &CASES[0],
                s.contender.name(),
                round,
                p50,
                d.clone(),
                busy.clone(),
            );
            ctx.record(&CASES[1], s.contender.name(), round, p99, d, busy);
        }
    }
    drop(servers); // killed by PID
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_sockperf() {
        let out = "sockperf: \u{1b}[2;35m====> avg-latency=5.320 (std-dev=14.151)\u{1b}[0m\n\
                   sockperf: \u{1b}[2;35mTotal 144650 observations\u{1b}[0m; each percentile contains 1446.50 observations\n\
                   sockperf: ---> percentile 99.000 =   11.015\n\
                   sockperf: ---> percentile 50.000 =    5.069\n";
        let (p50, p99, avg, obs) = super::parse(out).unwrap();
        assert_eq!((p50, p99, avg, obs), (5.069, 11.015, 5.32, 144650.0));
    }
}
