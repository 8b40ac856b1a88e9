//! Samples, their median and range, and ratios to the reference contenders.
//!
//! Every measured number is a [`Sample`] of one [`Series`] (metric, case,
//! contender). Contenders are measured interleaved, round by round, in
//! alternating order (A B C, C B A, A B C, …: [`in_round_order`]), so a slow
//! spell of the machine hits all of them alike and a drift within a round
//! favours none; the median over rounds is the result, min–max its spread.
//!
//! A ratio to a reference is paired: the median over rounds of this
//! contender's sample divided by the reference's sample of the same round.
//! A small VM's speed moves by a quarter from one second to the next (the
//! hypervisor's neighbours); samples taken seconds apart share most of that,
//! medians taken over the whole run do not.

use serde::Serialize;
use serde_json::{Map, Value};

/// Which way is better for a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// What a case measures; `refs` are the contenders its ratios are taken to.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub metric: &'static str,
    pub id: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub refs: &'static [&'static str],
}

#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub round: u32,
    pub value: f64,
    /// Numbers behind the value (frames sent and delivered, loss, …).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub detail: Map<String, Value>,
    /// Other processes that took more than 10% of a CPU during the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub busy: Vec<String>,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// The quartiles: half of the values lie between them.
    pub q1: f64,
    pub q3: f64,
    pub n: usize,
}

impl Summary {
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        // Linearly between the closest ranks (the common "type 7").
        let at = |q: f64| {
            let pos = q * (n - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
        };
        Some(Summary {
            median: at(0.5),
            min: v[0],
            max: v[n - 1],
            q1: at(0.25),
            q3: at(0.75),
            n,
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Series {
    pub metric: &'static str,
    pub case: &'static str,
    pub title: &'static str,
    pub contender: String,
    pub unit: &'static str,
    pub better: Better,
    pub samples: Vec<Sample>,
    pub summary: Option<Summary>,
    /// The paired ratio to each reference contender (the median over
    /// rounds of this round's sample over the reference's).
    pub ratios: Map<String, Value>,
    /// How the paired ratios spread over the rounds, by reference.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub ratio_spread: Map<String, Value>,
    /// The paired ratios round by round, by reference (for the report's
    /// check that the rounds agree).
    #[serde(skip)]
    pub ratio_rounds: Vec<(String, Vec<f64>)>,
}

#[derive(Default, Debug, Serialize)]
pub struct Results {
    pub series: Vec<Series>,
}

impl Results {
    pub fn push(&mut self, case: &Case, contender: &str, sample: Sample) {
        let i =
            match self.series.iter().position(|s| {
                s.metric == case.metric && s.case == case.id && s.contender == contender
            }) {
                Some(i) => i,
                None => {
                    self.series.push(Series {
                        metric: case.metric,
                        case: case.id,
                        title: case.title,
                        contender: contender.to_owned(),
                        unit: case.unit,
                        better: case.better,
                        samples: Vec::new(),
                        summary: None,
                        ratios: Map::new(),
                        ratio_spread: Map::new(),
                        ratio_rounds: Vec::new(),
                    });
                    self.series.len() - 1
                }
            };
        self.series[i].samples.push(sample);
    }

    /// Computes every summary, then the ratios to each case's references.
    pub fn finish(&mut self, cases: &[Case]) {
        for s in &mut self.series {
            let v: Vec<f64> = s.samples.iter().map(|x| x.value).collect();
            s.summary = Summary::of(&v);
        }
        let mut ratios = Vec::new();
        for (i, s) in self.series.iter().enumerate() {
            let Some(case) = cases
                .iter()
                .find(|c| c.metric == s.metric && c.id == s.case)
            else {
                continue;
            };
            for r in case.refs {
                let reference = self
                    .series
                    .iter()
                    .find(|x| x.metric == s.metric && x.case == s.case && x.contender == *r);
                if let Some(ratio) = reference.and_then(|x| paired_ratio(s, x)) {
                    ratios.push((i, *r, ratio));
                }
            }
        }
        for (i, r, (summary, rounds)) in ratios {
            let s = &mut self.series[i];
            s.ratios.insert(r.to_owned(), round4(summary.median).into());
            if summary.n > 1 {
                let spread = serde_json::json!({
                    "min": round4(summary.min), "q1": round4(summary.q1),
                    "q3": round4(summary.q3), "max": round4(summary.max), "n": summary.n,
                });
                s.ratio_spread.insert(r.to_owned(), spread);
            }
            s.ratio_rounds.push((r.to_owned(), rounds));
        }
    }

    pub fn get(&self, metric: &str, case: &str, contender: &str) -> Option<&Series> {
        self.series
            .iter()
            .find(|s| s.metric == metric && s.case == case && s.contender == contender)
    }

    pub fn median(&self, metric: &str, case: &str, contender: &str) -> Option<f64> {
        self.get(metric, case, contender)
            .and_then(|s| s.summary)
            .map(|m| m.median)
    }

    pub fn ratio(&self, metric: &str, case: &str, contender: &str, to: &str) -> Option<f64> {
        self.get(metric, case, contender)
            .and_then(|s| s.ratios.get(to))
            .and_then(Value::as_f64)
    }

    /// Where the middle half of the paired ratios to `to` lie (first to
    /// third quartile over the rounds), when there were several rounds.
    pub fn ratio_spread(
        &self,
        metric: &str,
        case: &str,
        contender: &str,
        to: &str,
    ) -> Option<(f64, f64)> {
        let s = self.get(metric, case, contender)?.ratio_spread.get(to)?;
        Some((s["q1"].as_f64()?, s["q3"].as_f64()?))
    }

    /// Where the middle half of a series' samples lie.
    pub fn spread(&self, metric: &str, case: &str, contender: &str) -> Option<(f64, f64)> {
        let s = self.get(metric, case, contender)?.summary?;
        (s.n > 1).then_some((s.q1, s.q3))
    }
}

/// The summary over rounds of `mine`'s sample over `theirs`' of the same
/// round, and those ratios in round order; the ratio of their medians when
/// no round has both (a series measured once, outside the rounds).
fn paired_ratio(mine: &Series, theirs: &Series) -> Option<(Summary, Vec<f64>)> {
    let per_round: Vec<f64> = mine
        .samples
        .iter()
        .filter_map(|a| {
            let b = theirs.samples.iter().find(|b| b.round == a.round)?;
            (b.value > 0.0 && a.value.is_finite()).then(|| a.value / b.value)
        })
        .collect();
    if let Some(s) = Summary::of(&per_round) {
        return Some((s, per_round));
    }
    let (a, b) = (mine.summary?.median, theirs.summary?.median);
    (b > 0.0 && a.is_finite()).then(|| (Summary::of(&[a / b]).expect("one value"), Vec::new()))
}

/// `items` in the order of round `round`: as given on even rounds, reversed
/// on odd ones, so that a drift of the machine during a round favours no
/// position.
pub fn in_round_order<T>(items: &[T], round: u32) -> Box<dyn Iterator<Item = &T> + '_> {
    if round.is_multiple_of(2) {
        Box::new(items.iter())
    } else {
        Box::new(items.iter().rev())
    }
}

pub fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// A sample's detail from (key, number) pairs.
pub fn detail(pairs: &[(&str, f64)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(round4(*v))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = Summary::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(Summary::of(&[]).is_none());
    }

    const CASE: Case = Case {
        metric: "M1",
        id: "x",
        title: "t",
        unit: "Mpps",
        better: Better::Higher,
        refs: &["host", "native"],
    };

    #[test]
    fn ratios_go_to_the_references() {
        let mut r = Results::default();
        for (who, v) in [("host", 2.0), ("native", 1.0), ("ours", 1.5)] {
            r.push(&CASE, who, sample(0, v));
        }
        r.finish(&[CASE]);
        assert_eq!(r.ratio("M1", "x", "ours", "host"), Some(0.75));
        assert_eq!(r.ratio("M1", "x", "ours", "native"), Some(1.5));
        assert_eq!(r.ratio("M1", "x", "host", "host"), Some(1.0));
    }

    fn sample(round: u32, value: f64) -> Sample {
        Sample {
            round,
            value,
            detail: Map::new(),
            busy: vec![],
        }
    }

    /// Each round's samples are divided, then the median taken: here the
    /// per-round ratios are 3, 1/2 and 2/3 (median 2/3), where the ratio of
    /// the medians would be 1.
    #[test]
    fn ratios_pair_the_samples_of_a_round() {
        let mut r = Results::default();
        for (round, native, ours) in [(0, 1.0, 3.0), (1, 2.0, 1.0), (2, 3.0, 2.0)] {
            r.push(&CASE, "native", sample(round, native));
            r.push(&CASE, "ours", sample(round, ours));
        }
        r.finish(&[CASE]);
        assert_eq!(r.ratio("M1", "x", "ours", "native"), Some(0.6667));
        // No round in common: the ratio of the medians.
        let mut r = Results::default();
        r.push(&CASE, "native", sample(7, 2.0));
        r.push(&CASE, "ours", sample(0, 3.0));
        r.finish(&[CASE]);
        assert_eq!(r.ratio("M1", "x", "ours", "native"), Some(1.5));
    }

    #[test]
    fn rounds_alternate_their_order() {
        let v = [1, 2, 3];
        let order = |round| in_round_order(&v, round).copied().collect::<Vec<_>>();
        assert_eq!(order(0), [1, 2, 3]);
        assert_eq!(order(1), [3, 2, 1]);
        assert_eq!(order(2), [1, 2, 3]);
    }
}
