//! M2 — the XDP datapath's ceiling: M1's frames, redirected by
//! `attach_rx_xdp` into the container's veth and dropped there by an XDP
//! program (`bench_drop`), so no skb is ever built. Three runs:
//! - `ours-xdp`: the node's own `attach_rx_xdp` (its pinned maps) is itself
//!   run in live-frames mode on the ours-xdp parent, as a NIC driver would
//!   run it: the datapath's ceiling, without the bench's wire;
//! - `ours-xdp-wire`: the same frames from M1's generator, across the wire;
//! - `parent-drop`: M1's generator, frames dropped on a parent itself: the
//!   ceiling of the generator and the wire alone.
//!
//! A kernel that refuses live frames leaves `ours-xdp` out (nothing else
//! runs a program as a driver would); the other two then run on the
//! AF_PACKET generator.

use std::{path::Path, time::Duration};

use attach_common::PIN_ROOT;

use super::{Ctx, watched};
use crate::{
    bench::{
        generator::{generate, live_frames, udp_frame},
        stats::{Better, Case, detail},
        topology::{Contender, Site},
    },
    datapath::Datapath,
    error::{Error, Result},
};

pub const CASE: Case = Case {
    metric: "M2",
    id: "xdp_redirect_drop",
    title: "64-byte frames redirected by the XDP datapath into the container veth, dropped there by XDP (one vCPU)",
    unit: "Mpps",
    better: Better::Higher,
    refs: &[],
};

pub const DIRECT: &str = "ours-xdp";
pub const WIRE: &str = "ours-xdp-wire";
pub const PARENT_DROP: &str = "parent-drop";

/// How frames are made for one of M2's runs.
enum Drive {
    /// The node's `attach_rx_xdp`, live frames on the parent.
    Datapath(Box<Datapath>),
    /// The bench's generator, across the wire.
    Wire,
}

/// One run: frames sent, dropped, seconds, wall seconds; `None` if the
/// kernel refuses live frames to the datapath's run.
fn run_one(
    ctx: &mut Ctx,
    drive: &mut Drive,
    site: &Site,
    duration: Duration,
) -> Result<Option<(u64, u64, f64, f64)>> {
    let frame = udp_frame(site.rx.mac, site.gen_mac, site.gen_ip, site.rx.ip);
    let before = ctx.progs.dropped()?;
    let cpu = ctx.cfg.measured_cpu;
    let sent = match drive {
        Drive::Datapath(dp) => {
            match live_frames(
                dp.xdp_program()?,
                &ctx.lab.node,
                site.parent_ifindex,
                &frame,
                cpu,
                duration,
            )? {
                Some(sent) => sent,
                None => return Ok(None),
            }
        }
        Drive::Wire => generate(
            ctx.progs.generator(&frame)?,
            &ctx.lab.source,
            site.gen_ifindex,
            &frame,
            cpu,
            duration,
        )?,
    };
    std::thread::sleep(Duration::from_millis(50));
    let dropped = ctx.progs.dropped()? - before;
    Ok(Some((
        sent.frames,
        dropped,
        sent.seconds,
        sent.wall_seconds,
    )))
}

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let (Some(xdp), Some(host)) = (
        ctx.lab.site(Contender::OursXdp).cloned(),
        ctx.lab.site(Contender::Host).cloned(),
    ) else {
        return Err(Error::system("M2 needs the ours-xdp and host contenders"));
    };
    // Drop in the container (ours-xdp), and on the host contender's parent
    // (the reference); both stay for the whole metric.
    let in_container = xdp.rx.ns.ifindex(&xdp.rx.ifname)?;
    let drops = [
        (xdp.rx.ns.clone(), in_container),
        (ctx.lab.node.clone(), host.parent_ifindex),
    ];
    // The node's datapath, opened from its pins as the engine does.
    let cookie = ctx.lab.node.run(crate::netns::current_cookie)??;
    let pins = Path::new(PIN_ROOT).join(format!("node-{cookie}"));
    let dp = Datapath::open(&pins).map_err(|e| e.context("opening the node's datapath"))?;
    let mut runs = vec![
        (DIRECT, Drive::Datapath(Box::new(dp)), xdp.clone()),
        (WIRE, Drive::Wire, xdp.clone()),
        (PARENT_DROP, Drive::Wire, host.clone()),
    ];
    let mut links = Vec::new();
    let attached = (|| -> Result<()> {
        for (ns, ifindex) in &drops {
            links.push(ctx.progs.attach_drop(ns, *ifindex)?);
        }
        Ok(())
    })();
    let measured = attached.and_then(|()| measure(ctx, &mut runs));
    for id in links {
        if let Err(e) = ctx.progs.detach_drop(id) {
            (ctx.progress)(&format!("warning: {e}"));
        }
    }
    measured
}

fn measure(ctx: &mut Ctx, runs: &mut Vec<(&str, Drive, Site)>) -> Result<()> {
    (ctx.progress)("M2 warm-up (discarded)");
    let warm = ctx.cfg.duration.mul_f64(0.5);
    let mut refused = Vec::new();
    for (name, drive, site) in runs.iter_mut() {
        if run_one(ctx, drive, site, warm)?.is_none() {
            refused.push(*name);
        }
    }
    for name in refused {
        (ctx.progress)(&format!(
            "M2 {name} left out: the kernel refuses XDP live frames, on which it runs the datapath"
        ));
        runs.retain(|(n, _, _)| *n != name);
    }
    for round in 0..ctx.cfg.rounds {
        for (name, drive, site) in runs.iter_mut() {
            let duration = ctx.cfg.duration;
            let (run, busy) = watched(|| run_one(ctx, drive, site, duration))?;
            let Some((sent, dropped, secs, wall)) = run else {
                return Err(Error::system(format!(
                    "M2 {name}: XDP live frames refused after the warm-up"
                )));
            };
            let mpps = dropped as f64 / secs / 1e6;
            ctx.record(
                &CASE,
                name,
                round,
                mpps,
                detail(&[
                    ("sent", sent as f64),
                    ("dropped_by_xdp", dropped as f64),
                    ("seconds", secs),
                    ("wall_seconds", wall),
                    ("sent_mpps", sent as f64 / secs / 1e6),
                    (
                        "loss_pct",
                        100.0 * sent.saturating_sub(dropped) as f64 / sent.max(1) as f64,
                    ),
                ]),
                busy,
            );
        }
    }
    Ok(())
}
