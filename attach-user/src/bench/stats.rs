//! Samples, their median and range, and ratios to the reference contenders.
//!
//! Every measured number is a [`Sample`] of one [`Series`] (metric, case,
//! contender). Contenders are measured interleaved, round by round (A B C …,
//! A B C …), so a slow spell of the machine hits all of them alike; the
//! median over rounds is the result, min–max its spread.

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
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Summary {
            median,
            min: v[0],
            max: v[n - 1],
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
    /// median / the reference's median, by reference contender.
    pub ratios: Map<String, Value>,
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
        let medians: Vec<(&'static str, &'static str, String, f64)> = self
            .series
            .iter()
            .filter_map(|s| {
                s.summary
                    .map(|m| (s.metric, s.case, s.contender.clone(), m.median))
            })
            .collect();
        for s in &mut self.series {
            let Some(case) = cases
                .iter()
                .find(|c| c.metric == s.metric && c.id == s.case)
            else {
                continue;
            };
            let Some(mine) = s.summary.map(|m| m.median) else {
                continue;
            };
            for r in case.refs {
                if let Some((.., theirs)) = medians
                    .iter()
                    .find(|(m, c, who, _)| *m == s.metric && *c == s.case && who == r)
                    && *theirs > 0.0
                    && mine.is_finite()
                {
                    s.ratios
                        .insert((*r).to_owned(), round4(mine / theirs).into());
                }
            }
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

    #[test]
    fn ratios_go_to_the_references() {
        const CASE: Case = Case {
            metric: "M1",
            id: "x",
            title: "t",
            unit: "Mpps",
            better: Better::Higher,
            refs: &["host", "native"],
        };
        let mut r = Results::default();
        for (who, v) in [("host", 2.0), ("native", 1.0), ("ours", 1.5)] {
            r.push(
                &CASE,
                who,
                Sample {
                    round: 0,
                    value: v,
                    detail: Map::new(),
                    busy: vec![],
                },
            );
        }
        r.finish(&[CASE]);
        assert_eq!(r.ratio("M1", "x", "ours", "host"), Some(0.75));
        assert_eq!(r.ratio("M1", "x", "ours", "native"), Some(1.5));
        assert_eq!(r.ratio("M1", "x", "host", "host"), Some(1.0));
    }
}
