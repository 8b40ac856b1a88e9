//! Reading what the tests assert on: `attach stats` (verdict and
//! per-attachment counters), `attach reconcile`'s repairs, and a device's
//! MAC as `ip -j link` reports it. One reading each, shared by the suites
//! that had their own copies.

use serde_json::Value;

use crate::lab::{Lab, Netns};

/// Packets `attach stats` counts for verdict `name` in direction `dir`
/// (`rx`, `tx`, ...); 0 when never seen.
pub fn verdict(stats: &Value, dir: &str, name: &str) -> u64 {
    stats["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["direction"] == dir && v["verdict"] == name)
        .and_then(|v| v["packets"].as_u64())
        .unwrap_or(0)
}

/// The counters of the first attachment in `stats` that `pick` takes.
pub fn counters_where(stats: &Value, pick: impl Fn(&Value) -> bool) -> &Value {
    stats["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| pick(a))
        .map(|a| &a["counters"])
        .unwrap_or_else(|| panic!("no such attachment in {stats}"))
}

/// The counters of the attachment in network namespace `netns`.
pub fn counters<'a>(stats: &'a Value, netns: &str) -> &'a Value {
    counters_where(stats, |a| a["netns"] == netns)
}

/// Runs `attach reconcile`: the repairs it made.
pub fn reconcile(lab: &Lab) -> Vec<Value> {
    lab.attach()
        .json(&["reconcile"])
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The MAC of device `dev` in `ns`.
pub fn link_mac(ns: &Netns, dev: &str) -> String {
    let v: Value =
        serde_json::from_str(&ns.ok(&["ip", "-j", "link", "show", dev]).unwrap()).unwrap();
    v[0]["address"].as_str().unwrap().to_owned()
}
