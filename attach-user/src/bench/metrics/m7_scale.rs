//! M7's scale row: the time of one `attach add macvlan` (eBPF, tc, an
//! address, no probe: M7's `ours`) with few endpoints already on the
//! parent, then with many (10 and `--m7-scale`, 1000 by default). Each
//! round times [`PROBES`] adds of fresh endpoints one after another, and
//! their dels; the value is the mean add. The endpoints that fill the
//! parent are attached (and, at the end, detached) untimed. The ratio
//! many/few, paired by round, is the target's value: an add must not cost
//! more because the parent already has many endpoints. Beside the wall
//! clock, the same adds' CPU time ([`CPU_CASE`]: the attach processes'
//! user and system time, from `getrusage(RUSAGE_CHILDREN)`), which other
//! work on a shared machine moves far less.

use std::time::Instant;

use super::{Ctx, watched};
use crate::{
    bench::{
        cleanup::Cleanup,
        run::Ns,
        stats::{Better, Case, detail},
    },
    error::Result,
};

/// Adds timed in each round.
pub const PROBES: usize = 5;
/// The contenders of the row: ours with few, then many, endpoints on the
/// parent.
pub const FEW: &str = "ours-few";
pub const MANY: &str = "ours-many";

pub const CASE: Case = Case {
    metric: "M7",
    id: "add_at_scale",
    title: "Time of one add with few (10), then many (--m7-scale), endpoints on the parent",
    unit: "ms",
    better: Better::Lower,
    refs: &[FEW],
};

pub const CPU_CASE: Case = Case {
    metric: "M7",
    id: "add_at_scale_cpu",
    title: "CPU time of one add (the attach process's user + system time) with few (10), then many (--m7-scale), endpoints on the parent",
    unit: "ms",
    better: Better::Lower,
    refs: &[FEW],
};

/// User + system time of this process's waited-for children so far, in
/// ms (the kernel's precise run time, split between the two by samples).
fn children_cpu_ms() -> f64 {
    // SAFETY: plain data, valid when zero; getrusage fills it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid rusage to fill.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(u.ru_utime) + ms(u.ru_stime)
}

fn add(ctx: &Ctx, ns: &Ns, i: usize) -> Result<()> {
    let ip = format!("10.205.{}.{}/16", i / 200, i % 200 + 2);
    let parent = &ctx.lab.m7_parent;
    let args = [
        "add",
        "macvlan",
        "--parent",
        parent,
        "--netns",
        &ns.name,
        "--ip",
        &ip,
        "--no-probe",
    ];
    ctx.lab.attach(&args).map(drop)
}

fn del(ctx: &Ctx, ns: &Ns) -> Result<()> {
    ctx.lab.attach(&["del", "--netns", &ns.name]).map(drop)
}

/// Attaches the endpoints of `ns` (numbered from `first`), untimed.
fn fill(ctx: &Ctx, ns: &[Ns], first: usize) -> Result<()> {
    ctx.lab.node.run(|| {
        ns.iter()
            .enumerate()
            .try_for_each(|(i, n)| add(ctx, n, first + i))
    })?
}

/// (mean add ms, mean del ms, mean add CPU ms) of the probe endpoints,
/// attached one after another, then detached.
fn probe(ctx: &Ctx, probes: &[Ns], first: usize) -> Result<(f64, f64, f64)> {
    ctx.lab.node.run(|| -> Result<(f64, f64, f64)> {
        let mut adds = 0.0;
        let cpu = children_cpu_ms();
        for (i, ns) in probes.iter().enumerate() {
            let t = Instant::now();
            add(ctx, ns, first + i)?;
            adds += t.elapsed().as_secs_f64() * 1e3;
        }
        let cpu = children_cpu_ms() - cpu;
        let t = Instant::now();
        for ns in probes {
            del(ctx, ns)?;
        }
        let dels = t.elapsed().as_secs_f64() * 1e3;
        let n = probes.len() as f64;
        Ok((adds / n, dels / n, cpu / n))
    })?
}

/// Times the rounds at the endpoints now on the parent (`on`).
fn rounds(ctx: &mut Ctx, probes: &[Ns], on: usize, who: &str) -> Result<()> {
    for round in 0..ctx.cfg.rounds {
        let ((a, d, cpu), busy) = watched(|| probe(ctx, probes, on))?;
        let extra = detail(&[("endpoints_on_parent", on as f64), ("del_ms", d)]);
        ctx.record(&CASE, who, round, a, extra.clone(), busy.clone());
        ctx.record(&CPU_CASE, who, round, cpu, extra, busy);
    }
    Ok(())
}

pub fn run(ctx: &mut Ctx, cleanup: &Cleanup) -> Result<()> {
    let Some([few, many]) = ctx.cfg.m7_scale else {
        return Ok(());
    };
    (ctx.progress)(&format!(
        "M7 scale: creating {} container namespaces (not timed)",
        many + PROBES
    ));
    let mark = cleanup.mark();
    let mut ns = Vec::new();
    let result = (|| -> Result<()> {
        for i in 0..many + PROBES {
            ns.push(Ns::create(cleanup, &format!("{}-m7s-{i}", ctx.lab.tag))?);
        }
        let (base, probes) = ns.split_at(many);
        fill(ctx, &base[..few], 0)?;
        rounds(ctx, probes, few, FEW)?;
        (ctx.progress)(&format!(
            "M7 scale: attaching {} more endpoints (not timed)",
            many - few
        ));
        fill(ctx, &base[few..], few)?;
        rounds(ctx, probes, many, MANY)
    })();
    // Detached whatever happened (an endpoint never attached is refused).
    let _ = ctx.lab.node.run(|| {
        for n in ns.iter().take(many) {
            let _ = del(ctx, n);
        }
    });
    cleanup.release_netns_from(mark);
    result
}
