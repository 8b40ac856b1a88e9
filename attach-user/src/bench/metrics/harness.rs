//! What every metric runs with: the context (lab, programs, machine), the
//! servers and clients it starts, and how their output is read.

use std::{path::PathBuf, time::Duration};

use serde_json::{Map, Value};

use super::super::{
    Config, cleanup,
    generator::Programs,
    machine::Watch,
    run::{Ns, Place, Proc},
    stats::{Case, Results, Sample},
    topology::{Lab, Site},
};
use crate::error::{Error, Result};

/// What a metric works with.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub lab: &'a Lab,
    pub progs: &'a mut Programs,
    pub results: &'a mut Results,
    /// Scratch files (tool output, CNI state).
    pub tmp: PathBuf,
    /// bpffs directory of the bench's own pins.
    pub pin_dir: PathBuf,
    pub progress: &'a dyn Fn(&str),
}

impl Ctx<'_> {
    pub fn measured(&self) -> Place {
        Place::Pinned(self.cfg.measured_cpu)
    }

    pub fn receiver(&self) -> Place {
        Place::Pinned(self.cfg.receiver_cpu)
    }

    /// Seconds for tools that take whole seconds.
    pub fn whole_secs(&self) -> u64 {
        (self.cfg.duration.as_secs_f64().round() as u64).max(1)
    }

    /// Records a sample and prints it.
    pub fn record(
        &mut self,
        case: &Case,
        contender: &str,
        round: u32,
        value: f64,
        detail: Map<String, Value>,
        busy: Vec<String>,
    ) {
        let extra = if busy.is_empty() {
            String::new()
        } else {
            format!("  [busy: {}]", busy.join(", "))
        };
        (self.progress)(&format!(
            "{} {} round {}/{}: {contender} {} {}{extra}",
            case.metric,
            case.id,
            round + 1,
            self.cfg.rounds,
            fmt_value(value),
            case.unit
        ));
        self.results.push(
            case,
            contender,
            Sample {
                round,
                value,
                detail,
                busy,
            },
        );
    }

    /// The contenders' sites, in the interleaving order.
    pub fn sites(&self) -> Vec<Site> {
        self.lab.sites.clone()
    }
}

/// Runs `f` as one measured run, noting other busy processes.
pub fn watched<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Vec<String>)> {
    cleanup::check()?;
    let w = Watch::start();
    let t = f()?;
    Ok((t, w.finish()))
}

pub fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A server (iperf3 or sockperf) in `ns`, up and listening on `port`.
pub fn server(ctx: &Ctx, ns: &Ns, argv: &[&str], port: u16) -> Result<Proc> {
    let log = ctx.tmp.join(format!("server-{}-{port}.log", ns.name));
    let mut p = Proc::spawn(ns, ctx.receiver(), argv, Some(&log))?;
    p.wait_listening(port)?;
    Ok(p)
}

/// Runs a client in `ns` on the measured CPU and returns its output.
pub fn client(ctx: &Ctx, ns: &Ns, argv: &[&str], tag: &str) -> Result<String> {
    let log = ctx.tmp.join(format!("client-{tag}.log"));
    let p = Proc::spawn(ns, ctx.measured(), argv, Some(&log))?;
    p.wait(Duration::from_secs(ctx.whole_secs() + 30))
}

/// iperf3's JSON report, or its error.
pub fn iperf_json(out: &str) -> Result<Value> {
    let start = out.find('{').unwrap_or(0);
    let v: Value = serde_json::from_str(&out[start..])
        .map_err(|e| Error::system(format!("iperf3 output is not JSON ({e}): {out}")))?;
    if let Some(err) = v["error"].as_str() {
        return Err(Error::system(format!("iperf3: {err}")));
    }
    Ok(v)
}
