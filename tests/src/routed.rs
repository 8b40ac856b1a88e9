//! Router endpoints in a lab: attaching them, routing their prefixes from
//! the external host, TTLs of replies, and the node's FORWARD counter.

use std::sync::Arc;

use anyhow::{Context as _, Result};

use crate::{
    lab::{Lab, NODE_V4, NODE_V6},
    netns::Netns,
};

/// A router endpoint and its addresses.
pub struct Routed {
    pub ns: Arc<Netns>,
    pub v4: String,
    pub v6: String,
}

/// Container `c{i}`, routed: 10.88.0.{10+i} and fd88::{10+i}. Odd ones get
/// host prefixes, even ones the subnet's (the container must still send
/// everything through its gateway). `extra`: more `attach add router`
/// options.
pub fn attach_router(lab: &Lab, i: u8, extra: &[&str]) -> Result<Routed> {
    let ns = lab.container(&format!("c{i}"))?;
    let (p4, p6) = if i % 2 == 1 { (32, 128) } else { (24, 64) };
    let (v4, v6) = (format!("10.88.0.{}", 10 + i), format!("fd88::{}", 10 + i));
    let (ip4, ip6) = (format!("{v4}/{p4}"), format!("{v6}/{p6}"));
    let mut args = vec![
        "add",
        "router",
        "--netns",
        ns.name(),
        "--ip",
        &ip4,
        "--ip",
        &ip6,
    ];
    args.extend(extra);
    lab.attach()
        .ok(&args)
        .with_context(|| format!("attaching c{i} (router)"))?;
    Ok(Routed { ns, v4, v6 })
}

/// The external host routes the endpoints' prefixes (10.88.0.0/24,
/// fd88::/64) via the node.
pub fn ext_routes(lab: &Lab) -> Result<()> {
    lab.ext()
        .ok(&["ip", "route", "add", "10.88.0.0/24", "via", NODE_V4])?;
    lab.ext()
        .ok(&["ip", "-6", "route", "add", "fd88::/64", "via", NODE_V6])?;
    Ok(())
}

/// The TTL (hop limit) of the echo reply `from` gets from `to`, if any
/// (tried twice).
pub fn reply_ttl(from: &Netns, to: &str) -> Option<u8> {
    for _ in 0..2 {
        let out = from.exec(&["ping", "-c", "1", "-W", "1", to]).ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(t) = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("ttl="))
            .and_then(|t| t.parse().ok())
        {
            return Some(t);
        }
    }
    None
}

/// An nftables counter on the node's FORWARD hook (table `inet atkfwd`).
pub fn forward_counter_setup(node: &Netns) -> Result<()> {
    node.ok(&["nft", "add", "table", "inet", "atkfwd"])?;
    node.ok(&[
        "nft",
        "add",
        "chain",
        "inet",
        "atkfwd",
        "counting",
        "{ type filter hook forward priority 0 ; }",
    ])?;
    node.ok(&[
        "nft", "add", "rule", "inet", "atkfwd", "counting", "counter",
    ])?;
    Ok(())
}

/// Packets the FORWARD counter saw.
pub fn forward_counter(node: &Netns) -> Result<u64> {
    let out = node.ok(&["nft", "-j", "list", "table", "inet", "atkfwd"])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    Ok(v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("rule"))
        .flat_map(|r| r["expr"].as_array().into_iter().flatten())
        .find_map(|e| e["counter"]["packets"].as_u64())
        .unwrap_or(0))
}

pub fn forward_counter_remove(node: &Netns) -> Result<()> {
    node.ok(&["nft", "delete", "table", "inet", "atkfwd"])?;
    Ok(())
}
