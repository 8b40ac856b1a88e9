//! M5 — TCP stream throughput (one iperf3 stream): wire→container,
//! container→wire, and container↔container on one parent (contenders with
//! two containers). The sender runs on the measured CPU, the receiver on
//! the other; the rate is what the receiver got.

use super::{Ctx, client, iperf_json, server, watched};
use crate::{
    bench::{
        run::Ns,
        stats::{Better, Case, detail, in_round_order},
        topology::Site,
    },
    error::{Error, Result},
};

pub const CASES: [Case; 3] = [
    Case {
        metric: "M5",
        id: "tcp_wire_to_container",
        title: "TCP stream throughput, wire → container (iperf3, one stream)",
        unit: "Gbit/s",
        better: Better::Higher,
        refs: &["host", "native"],
    },
    Case {
        metric: "M5",
        id: "tcp_container_to_wire",
        title: "TCP stream throughput, container → wire (iperf3, one stream)",
        unit: "Gbit/s",
        better: Better::Higher,
        refs: &["host", "native"],
    },
    Case {
        metric: "M5",
        id: "tcp_container_to_container",
        title: "TCP stream throughput, container → container on one parent (iperf3, one stream)",
        unit: "Gbit/s",
        better: Better::Higher,
        refs: &["native"],
    },
];

const PORT_BASE: u16 = 5310;
/// The generator side's server (container → wire), bound to every address.
const GEN_PORT: u16 = 5300;

fn port(site: &Site) -> u16 {
    PORT_BASE + u16::from(site.contender.k())
}

/// (Gbit/s received, retransmits) of one stream from `from` to `to:port`.
fn stream(
    ctx: &Ctx,
    from: &Ns,
    to: std::net::Ipv4Addr,
    port: u16,
    secs: u64,
    tag: &str,
) -> Result<(f64, f64)> {
    let out = client(
        ctx,
        from,
        &[
            "iperf3",
            "-c",
            &to.to_string(),
            "-p",
            &port.to_string(),
            "-t",
            &secs.to_string(),
            "-J",
        ],
        tag,
    )?;
    let v = iperf_json(&out)?;
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| Error::system(format!("iperf3: no received rate in {}", v["end"])))?;
    let retr = v["end"]["sum_sent"]["retransmits"].as_f64().unwrap_or(0.0);
    Ok((bps / 1e9, retr))
}

/// (sender namespace, destination, port) of case `i` at `site`, if it applies.
fn endpoints(ctx: &Ctx, i: usize, s: &Site) -> Option<(Ns, std::net::Ipv4Addr, u16)> {
    match i {
        0 => Some((ctx.lab.source.clone(), s.rx.ip, port(s))),
        1 => Some((s.rx.ns.clone(), s.gen_ip, GEN_PORT)),
        _ => s.pair.as_ref().map(|p| (p.ns.clone(), s.rx.ip, port(s))),
    }
}

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let sites = ctx.sites();
    let mut servers = Vec::new();
    let gen_port = GEN_PORT.to_string();
    servers.push(server(
        ctx,
        &ctx.lab.source,
        &["iperf3", "-s", "-p", &gen_port],
        GEN_PORT,
    )?);
    for s in &sites {
        let p = port(s).to_string();
        let ip = s.rx.ip.to_string();
        servers.push(server(
            ctx,
            &s.rx.ns,
            &["iperf3", "-s", "-B", &ip, "-p", &p],
            port(s),
        )?);
    }
    (ctx.progress)("M5 warm-up (discarded)");
    for (i, case) in CASES.iter().enumerate() {
        for s in &sites {
            if let Some((from, to, port)) = endpoints(ctx, i, s) {
                stream(
                    ctx,
                    &from,
                    to,
                    port,
                    1,
                    &format!("m5-{}-{}", case.id, s.contender.name()),
                )?;
            }
        }
    }
    let secs = ctx.whole_secs();
    for round in 0..ctx.cfg.rounds {
        for (i, case) in CASES.iter().enumerate() {
            for s in in_round_order(&sites, round) {
                let Some((from, to, port)) = endpoints(ctx, i, s) else {
                    continue;
                };
                let tag = format!("m5-{}-{}", case.id, s.contender.name());
                let ((gbps, retr), busy) = watched(|| stream(ctx, &from, to, port, secs, &tag))?;
                ctx.record(
                    case,
                    s.contender.name(),
                    round,
                    gbps,
                    detail(&[("retransmits", retr)]),
                    busy,
                );
            }
        }
    }
    drop(servers);
    Ok(())
}
