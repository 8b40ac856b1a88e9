//! M4 — UDP socket packet rate: iperf3 -u, unpaced, 18-byte payloads
//! (64-byte frames), from the generator side into an iperf3 server in the
//! container; the rate is what the server received. Client on the measured
//! CPU, server on the other.

use super::{Ctx, client, iperf_json, server, watched};
use crate::{
    bench::{
        stats::{Better, Case, detail, in_round_order},
        topology::Site,
    },
    error::{Error, Result},
};

pub const CASE: Case = Case {
    metric: "M4",
    id: "udp_socket_rate",
    title: "UDP socket packet rate into the container (iperf3 -u, 18-byte payload, received)",
    unit: "Mpps",
    better: Better::Higher,
    refs: &["host", "native"],
};

const PORT_BASE: u16 = 5210;

fn port(site: &Site) -> u16 {
    PORT_BASE + u16::from(site.contender.k())
}

/// (received Mpps, sent Mpps, loss %).
fn blast(ctx: &Ctx, site: &Site, secs: u64) -> Result<(f64, f64, f64)> {
    let out = client(
        ctx,
        &ctx.lab.source,
        &[
            "iperf3",
            "-c",
            &site.rx.ip.to_string(),
            "-p",
            &port(site).to_string(),
            "-u",
            "-b",
            "0",
            "-l",
            "18",
            "-t",
            &secs.to_string(),
            "-J",
        ],
        &format!("m4-{}", site.contender.name()),
    )?;
    let v = iperf_json(&out)?;
    let sum = &v["end"]["sum"];
    let (Some(packets), Some(lost), Some(seconds)) = (
        sum["packets"].as_f64(),
        sum["lost_packets"].as_f64(),
        sum["seconds"].as_f64(),
    ) else {
        return Err(Error::system(format!(
            "iperf3 -u: no packet counts in {sum}"
        )));
    };
    let received = (packets - lost).max(0.0);
    Ok((
        received / seconds / 1e6,
        packets / seconds / 1e6,
        100.0 * lost / packets.max(1.0),
    ))
}

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let sites = ctx.sites();
    let mut servers = Vec::new();
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
    (ctx.progress)("M4 warm-up (discarded)");
    for s in &sites {
        blast(ctx, s, 1)?;
    }
    let secs = ctx.whole_secs();
    for round in 0..ctx.cfg.rounds {
        for s in in_round_order(&sites, round) {
            let ((rx, tx, loss), busy) = watched(|| blast(ctx, s, secs))?;
            ctx.record(
                &CASE,
                s.contender.name(),
                round,
                rx,
                detail(&[("sent_mpps", tx), ("loss_pct", loss)]),
                busy,
            );
        }
    }
    drop(servers);
    Ok(())
}
