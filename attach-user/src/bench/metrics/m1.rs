//! M1 — 64-byte UDP frames per second delivered into the container's stack.
//!
//! The generator sends one flow of 64-byte UDP frames to the contender's
//! MAC and address out of the contender's wire; what arrives is counted as
//! IP `InReceives` in the container's namespace (the node's, for `host`).
//! The frames go to UDP port 9, where the bench holds a socket that is never
//! read: once its small buffer is full every frame ends at the socket. (To a
//! closed port, each frame would cost an ICMP port-unreachable attempt whose
//! route lookups come before the rate limit: half of the CPU time in a
//! profile, the same for every contender, hiding their differences.)
//! The generator and the whole receive path share one vCPU, so the rate is
//! that vCPU's cost per frame; sent vs delivered shows loss.

use std::time::Duration;

use super::{Ctx, watched};
use crate::{
    bench::{
        generator::{generate, udp_frame},
        run::Ns,
        stats::{Better, Case, detail, in_round_order},
        topology::Site,
    },
    error::{Error, Result},
};

pub const CASE: Case = Case {
    metric: "M1",
    id: "udp64_delivered",
    title: "64-byte UDP frames delivered into the container's stack (generator and receiver on one vCPU)",
    unit: "Mpps",
    better: Better::Higher,
    refs: &["host", "native"],
};

/// IP InReceives of a namespace (`/proc/net/snmp` as a thread inside it sees it).
pub fn in_receives(ns: &Ns) -> Result<u64> {
    ns.run(|| {
        let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp")
            .map_err(|e| Error::system(format!("reading /proc/net/snmp: {e}")))?;
        let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
        let (Some(names), Some(values)) = (ip.next(), ip.next()) else {
            return Err(Error::system("no Ip: lines in /proc/net/snmp"));
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == "InReceives")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| Error::system("no Ip InReceives in /proc/net/snmp"))
    })?
}

pub struct Delivery {
    pub sent: u64,
    pub delivered: u64,
    pub seconds: f64,
    pub wall_seconds: f64,
}

/// One generator run at `site` for `duration`.
pub fn deliver(ctx: &mut Ctx, site: &Site, duration: Duration) -> Result<Delivery> {
    let frame = udp_frame(site.rx.mac, site.gen_mac, site.gen_ip, site.rx.ip);
    let before = in_receives(&site.rx.ns)?;
    let cpu = ctx.cfg.measured_cpu;
    let sent = generate(
        ctx.progs.generator()?,
        &ctx.lab.source,
        site.gen_ifindex,
        &frame,
        cpu,
        duration,
    )?;
    // Frames still queued on the receive side land within microseconds.
    std::thread::sleep(Duration::from_millis(50));
    let after = in_receives(&site.rx.ns)?;
    Ok(Delivery {
        sent: sent.frames,
        delivered: after.saturating_sub(before),
        seconds: sent.seconds,
        wall_seconds: sent.wall_seconds,
    })
}

/// A UDP socket on `ip`:9 in `ns` that is never read, with the smallest
/// receive buffer.
pub fn sink(ns: &Ns, ip: std::net::Ipv4Addr) -> Result<std::net::UdpSocket> {
    ns.run(move || -> Result<std::net::UdpSocket> {
        let s = std::net::UdpSocket::bind((ip, 9))
            .map_err(|e| Error::system(format!("binding a UDP sink on {ip}:9: {e}")))?;
        let size: libc::c_int = 0; // the kernel's minimum
        // SAFETY: valid socket and option value.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        Ok(s)
    })?
}

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let sites = ctx.sites();
    let _sinks = sites
        .iter()
        .map(|s| sink(&s.rx.ns, s.rx.ip))
        .collect::<Result<Vec<_>>>()?;
    let warm = ctx.cfg.duration.mul_f64(0.5);
    (ctx.progress)("M1 warm-up (discarded): one short run per contender");
    for s in &sites {
        deliver(ctx, s, warm)?;
    }
    for round in 0..ctx.cfg.rounds {
        for s in in_round_order(&sites, round) {
            let duration = ctx.cfg.duration;
            let (d, busy) = watched(|| deliver(ctx, s, duration))?;
            let mpps = d.delivered as f64 / d.seconds / 1e6;
            let sent_mpps = d.sent as f64 / d.seconds / 1e6;
            let loss = 100.0 * (d.sent.saturating_sub(d.delivered)) as f64 / d.sent.max(1) as f64;
            ctx.record(
                &CASE,
                s.contender.name(),
                round,
                mpps,
                detail(&[
                    ("sent", d.sent as f64),
                    ("delivered", d.delivered as f64),
                    ("seconds", d.seconds),
                    ("wall_seconds", d.wall_seconds),
                    ("sent_mpps", sent_mpps),
                    ("loss_pct", loss),
                ]),
                busy,
            );
        }
    }
    Ok(())
}
