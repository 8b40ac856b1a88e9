//! M1 — 64-byte UDP frames per second delivered into the container's stack.
//!
//! The generator sends one flow of 64-byte UDP frames to the contender's
//! MAC and address out of the contender's wire; what arrives is counted as
//! the IPv4 datagrams the container's IP layer took in (the node's, for
//! `host`): the per-datagram ECN counters, since `InReceives` counts a GRO
//! chain of datagrams once (its count is kept as the IP layer's passes).
//! The frames go to UDP port 9, where the bench holds a socket that is never
//! read: once its small buffer is full every frame ends at the socket. (To a
//! closed port, each frame would cost an ICMP port-unreachable attempt whose
//! route lookups come before the rate limit: half of the CPU time in a
//! profile, the same for every contender, hiding their differences.)
//! The generator and the whole receive path share one vCPU, so the rate is
//! that vCPU's cost per frame; sent vs delivered shows loss.
//!
//! A round's sample of a contender is made of slices taken in turn with
//! the others' (A B C …, … C B A, …), so that every contender's sample
//! spans the same seconds of the round: this VM's speed moves from one
//! second to the next, and a paired ratio is only as good as that overlap.

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

/// What a namespace's IPv4 layer took in.
#[derive(Clone, Copy, Default)]
pub struct IpIn {
    /// Datagrams (`IpExt In{NoECT,ECT1,ECT0,CE}Pkts`: each datagram of a
    /// GRO chain).
    pub datagrams: u64,
    /// Passes through the layer (`Ip InReceives`: a chain once).
    pub passes: u64,
}

/// The named counters of the `prefix` rows (a names row, then a values
/// row) of a `/proc/net` table, summed.
fn counters(table: &str, prefix: &str, names: &[&str]) -> Result<u64> {
    let mut rows = table.lines().filter(|l| l.starts_with(prefix));
    let (Some(head), Some(values)) = (rows.next(), rows.next()) else {
        return Err(Error::system(format!("no {prefix} rows")));
    };
    let found: Vec<u64> = head
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(n, _)| names.contains(n))
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    if found.len() != names.len() {
        return Err(Error::system(format!("{prefix} lacks one of {names:?}")));
    }
    Ok(found.iter().sum())
}

/// IPv4 input counters of `ns` (`/proc/net/{snmp,netstat}` as a thread
/// inside it sees them).
pub fn ip_in(ns: &Ns) -> Result<IpIn> {
    ns.run(|| {
        let read = |f: &str| {
            std::fs::read_to_string(format!("/proc/thread-self/net/{f}"))
                .map_err(|e| Error::system(format!("reading /proc/net/{f}: {e}")))
        };
        Ok(IpIn {
            datagrams: counters(
                &read("netstat")?,
                "IpExt:",
                &["InNoECTPkts", "InECT1Pkts", "InECT0Pkts", "InCEPkts"],
            )?,
            passes: counters(&read("snmp")?, "Ip:", &["InReceives"])?,
        })
    })?
}

#[derive(Default)]
pub struct Delivery {
    pub sent: u64,
    pub delivered: u64,
    /// Passes through the IP layer that carried `delivered`.
    pub passes: u64,
    pub seconds: f64,
    pub wall_seconds: f64,
}

impl Delivery {
    fn add(&mut self, d: &Delivery) {
        self.sent += d.sent;
        self.delivered += d.delivered;
        self.passes += d.passes;
        self.seconds += d.seconds;
        self.wall_seconds += d.wall_seconds;
    }
}

/// One generator run at `site` for `duration`.
pub fn deliver(ctx: &mut Ctx, site: &Site, duration: Duration) -> Result<Delivery> {
    let frame = udp_frame(site.rx.mac, site.gen_mac, site.gen_ip, site.rx.ip);
    let before = ip_in(&site.rx.ns)?;
    let cpu = ctx.cfg.measured_cpu;
    let sent = generate(
        ctx.progs.generator(&frame)?,
        &ctx.lab.source,
        site.gen_ifindex,
        &frame,
        cpu,
        duration,
    )?;
    // Frames still queued on the receive side land within microseconds.
    std::thread::sleep(Duration::from_millis(50));
    let after = ip_in(&site.rx.ns)?;
    Ok(Delivery {
        sent: sent.frames,
        delivered: after.datagrams.saturating_sub(before.datagrams),
        passes: after.passes.saturating_sub(before.passes),
        seconds: sent.seconds,
        wall_seconds: sent.wall_seconds,
    })
}

/// Slices of a round's sample: a quarter of a second at least, ten at most.
fn slices(duration: Duration) -> u32 {
    ((duration.as_secs_f64() / 0.25) as u32).clamp(1, 10)
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
    let k = slices(ctx.cfg.duration);
    let slice = ctx.cfg.duration / k;
    let indexes: Vec<usize> = (0..sites.len()).collect();
    for round in 0..ctx.cfg.rounds {
        let mut sums: Vec<(Delivery, Vec<String>)> =
            sites.iter().map(|_| Default::default()).collect();
        for part in 0..k {
            for &i in in_round_order(&indexes, round * k + part) {
                let (d, busy) = watched(|| deliver(ctx, &sites[i], slice))?;
                let (sum, noted) = &mut sums[i];
                sum.add(&d);
                for b in busy {
                    if !noted.contains(&b) {
                        noted.push(b);
                    }
                }
            }
        }
        for (s, (d, busy)) in sites.iter().zip(sums) {
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
                    ("ip_passes", d.passes as f64),
                    (
                        "datagrams_per_ip_pass",
                        d.delivered as f64 / d.passes.max(1) as f64,
                    ),
                    ("slices", f64::from(k)),
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
