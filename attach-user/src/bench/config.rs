//! What one benchmark run measures, and for how long.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use serde::Serialize;

use super::{BenchArgs, machine, topology::Contender};
use crate::error::{Error, Result};

/// Every metric, in the order they run.
pub const METRICS: [&str; 7] = ["m1", "m2", "m3", "m4", "m5", "m6", "m7"];
const QUICK: [&str; 3] = ["m1", "m2", "m6"];
/// M7's numbers of endpoints, attached one after another.
pub const M7_SIZES: [usize; 3] = [1, 10, 100];
/// M7's scale row: endpoints already on the parent for the first timing,
/// and by default for the second (`--m7-scale`).
pub const M7_SCALE: [usize; 2] = [10, 1000];
/// Most endpoints `--m7-scale` takes (under the node's 4096, with room for
/// the rest of M7's).
const M7_SCALE_MAX: usize = 4000;
/// The metrics that run the contenders.
const CONTENDED: [&str; 5] = ["m1", "m2", "m3", "m4", "m5"];

#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub quick: bool,
    pub rounds: u32,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    pub metrics: Vec<String>,
    /// The contenders of M1-M5, in the order of `Contender::ALL`.
    #[serde(serialize_with = "names")]
    pub contenders: Vec<Contender>,
    /// M7's numbers of endpoints, ascending.
    pub m7_endpoints: Vec<usize>,
    /// M7's scale row: endpoints on the parent at its two timings (none:
    /// the row is left out).
    pub m7_scale: Option<[usize; 2]>,
    pub measured_cpu: usize,
    pub receiver_cpu: usize,
    /// rx-gro-list on every parent (`--parent-gro-list`).
    pub parent_gro_list: bool,
    #[serde(skip)]
    pub svg: Option<PathBuf>,
    /// M6's path listings go here (see `--listing`).
    pub listing: Option<PathBuf>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn names<S: serde::Serializer>(c: &[Contender], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(c.iter().map(|c| c.name()))
}

/// The contenders named in `wanted` (all when it is empty).
fn contenders(wanted: &[String]) -> Result<Vec<Contender>> {
    if let Some(bad) = wanted
        .iter()
        .find(|w| !Contender::ALL.iter().any(|c| c.name() == w.as_str()))
    {
        let known: Vec<&str> = Contender::ALL.iter().map(|c| c.name()).collect();
        return Err(Error::invalid(format!(
            "--contenders: unknown contender {bad:?} (known: {})",
            known.join(", ")
        )));
    }
    Ok(Contender::ALL
        .into_iter()
        .filter(|c| wanted.is_empty() || wanted.iter().any(|w| w == c.name()))
        .collect())
}

/// M7's sizes named in `wanted` (all when it is empty).
fn m7_endpoints(wanted: &[usize]) -> Result<Vec<usize>> {
    if let Some(bad) = wanted.iter().find(|n| !M7_SIZES.contains(n)) {
        return Err(Error::invalid(format!(
            "--m7-endpoints: {bad} is not one of {:?}",
            M7_SIZES
        )));
    }
    Ok(M7_SIZES
        .into_iter()
        .filter(|n| wanted.is_empty() || wanted.contains(n))
        .collect())
}

impl Config {
    pub fn from_args(a: &BenchArgs) -> Result<Config> {
        // Five: the quartiles of the paired ratios then leave out the two
        // extreme rounds, which is what keeps a verdict from flipping between
        // runs on a noisy machine.
        let rounds = a.rounds.unwrap_or(if a.quick { 3 } else { 5 });
        if rounds < 3 {
            return Err(Error::invalid(format!(
                "--rounds {rounds}: at least 3 rounds (a median of fewer says little)"
            )));
        }
        let duration = a.duration.unwrap_or(if a.quick { 1.0 } else { 5.0 });
        if !(0.2..=600.0).contains(&duration) {
            return Err(Error::invalid(format!(
                "--duration {duration}: between 0.2 and 600 seconds"
            )));
        }
        let wanted: BTreeSet<String> = a.metrics.iter().map(|m| m.to_lowercase()).collect();
        if let Some(bad) = wanted.iter().find(|m| !METRICS.contains(&m.as_str())) {
            return Err(Error::invalid(format!(
                "--metrics: unknown metric {bad:?} (known: {})",
                METRICS.join(", ")
            )));
        }
        let metrics: Vec<String> = METRICS
            .iter()
            .filter(|m| {
                if wanted.is_empty() {
                    !a.quick || QUICK.contains(m)
                } else {
                    wanted.contains(**m)
                }
            })
            .map(|m| (*m).to_owned())
            .collect();
        if a.listing.is_some() && !metrics.iter().any(|m| m == "m6") {
            return Err(Error::invalid(
                "--listing: the listings are M6's, and M6 is not among the metrics to run",
            ));
        }
        if !a.contenders.is_empty() && !metrics.iter().any(|m| CONTENDED.contains(&m.as_str())) {
            return Err(Error::invalid(
                "--contenders: they are M1-M5's, and none of those is among the metrics to run",
            ));
        }
        if !a.m7_endpoints.is_empty() && !metrics.iter().any(|m| m == "m7") {
            return Err(Error::invalid(
                "--m7-endpoints: M7 is not among the metrics to run",
            ));
        }
        if a.m7_scale.is_some() && !metrics.iter().any(|m| m == "m7") {
            return Err(Error::invalid(
                "--m7-scale: M7 is not among the metrics to run",
            ));
        }
        let m7_scale = match a.m7_scale.unwrap_or(M7_SCALE[1]) {
            0 => None,
            n if n > M7_SCALE[0] && n <= M7_SCALE_MAX => Some([M7_SCALE[0], n]),
            n => {
                return Err(Error::invalid(format!(
                    "--m7-scale {n}: more than {} and at most {M7_SCALE_MAX} (0: no scale row)",
                    M7_SCALE[0]
                )));
            }
        };
        let n = machine::nproc();
        Ok(Config {
            quick: a.quick,
            rounds,
            duration: Duration::from_secs_f64(duration),
            metrics,
            contenders: contenders(&a.contenders)?,
            m7_endpoints: m7_endpoints(&a.m7_endpoints)?,
            m7_scale,
            measured_cpu: n.saturating_sub(1),
            receiver_cpu: 0,
            parent_gro_list: a.parent_gro_list,
            svg: a.svg.clone(),
            listing: a.listing.clone(),
        })
    }

    pub fn wants(&self, m: &str) -> bool {
        self.metrics.iter().any(|x| x == m)
    }

    /// Metrics that need the contenders' wires and containers.
    pub fn needs_contenders(&self) -> bool {
        CONTENDED.iter().any(|m| self.wants(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(metrics: &[&str], contenders: &[&str], m7: &[usize]) -> BenchArgs {
        BenchArgs {
            quick: false,
            rounds: None,
            duration: None,
            svg: None,
            metrics: metrics.iter().map(|m| (*m).to_owned()).collect(),
            contenders: contenders.iter().map(|c| (*c).to_owned()).collect(),
            m7_endpoints: m7.to_vec(),
            m7_scale: None,
            parent_gro_list: false,
            listing: None,
        }
    }

    #[test]
    fn contenders_and_m7_sizes_narrow_a_run_in_their_own_order() {
        let c = Config::from_args(&args(&["m3", "m7"], &["ours-tc", "host"], &[10, 1])).unwrap();
        assert_eq!(c.contenders, [Contender::Host, Contender::OursTc]);
        assert_eq!(c.m7_endpoints, [1, 10]);
        let c = Config::from_args(&args(&["m3", "m7"], &[], &[])).unwrap();
        assert_eq!(c.contenders, Contender::ALL);
        assert_eq!(c.m7_endpoints, M7_SIZES);
        assert_eq!(c.m7_scale, Some(M7_SCALE));
        for (a, word) in [
            (args(&["m3"], &["macvtap"], &[]), "unknown contender"),
            (args(&["m7"], &[], &[50]), "not one of"),
            (args(&["m6"], &["host"], &[]), "--contenders"),
            (args(&["m3"], &[], &[10]), "--m7-endpoints"),
            (
                BenchArgs {
                    m7_scale: Some(5),
                    ..args(&["m7"], &[], &[])
                },
                "--m7-scale 5",
            ),
        ] {
            let e = Config::from_args(&a).unwrap_err().to_string();
            assert!(e.contains(word), "{e}");
        }
    }
}
