//! The faults a node sees: things changed behind the engine's back, an
//! engine killed mid-operation, program upgrades under traffic, many
//! operations at once.

mod concurrency;
mod programs;
mod repair;

use attach_tests::lab::{Netns, ping};
use serde_json::Value;

fn action_for<'a>(repairs: &'a [Value], ifname_or_netns: &str) -> Option<&'a str> {
    repairs
        .iter()
        .find(|r| r["netns"] == ifname_or_netns || r["ifname"] == ifname_or_netns)
        .and_then(|r| r["action"].as_str())
}

/// A ping from `ns` after forgetting its neighbours. While the datapath was
/// broken, the ARP resolution of `dst` failed and stays pending for up to
/// three retransmits, one a second: a ping right after the repair would
/// wait for the next one (or fall between two) instead of probing afresh.
fn ping_afresh(ns: &Netns, dst: &str) -> bool {
    ns.ok(&["ip", "neigh", "flush", "all"]).unwrap();
    ping(ns, dst)
}

fn link_id(pin: &std::path::Path) -> u64 {
    bpftool_show("link", pin)["id"].as_u64().unwrap()
}

/// What `bpftool -j <what> show pinned <pin>` says.
fn bpftool_show(what: &str, pin: &std::path::Path) -> Value {
    let out = std::process::Command::new("bpftool")
        .args(["-j", what, "show", "pinned"])
        .arg(pin)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
}
