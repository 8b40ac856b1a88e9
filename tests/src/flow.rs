//! A UDP flow (iperf3) from the external host into an endpoint, for tests
//! that change the datapath under traffic and count what was lost.

use std::{
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::lab::{Lab, Netns};

/// 20 Mbit/s of 1000-byte datagrams from `ext` to a one-shot server.
pub struct UdpFlow {
    server: Child,
    client: Option<Child>,
}

impl UdpFlow {
    /// Starts the server in `to` (TCP control port `port`), waits until it
    /// listens, then the client on the external host for `secs` seconds.
    pub fn start(lab: &Lab, to: &Netns, ip: &str, port: u16, secs: u32) -> Result<UdpFlow> {
        let p = port.to_string();
        let server = to
            .command(&["iperf3", "-s", "-1", "-p", &p])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("iperf3 server")?;
        let mut flow = UdpFlow {
            server,
            client: None,
        };
        to.wait_listening(port)?;
        let t = secs.to_string();
        flow.client = Some(
            lab.ext()
                .command(&[
                    "iperf3", "-c", ip, "-p", &p, "-u", "-b", "20M", "-l", "1000", "-t", &t, "-J",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("iperf3 client")?,
        );
        Ok(flow)
    }

    /// Waits (up to 5 s) until `n` more packets than `since` (a count of
    /// [`rx_packets`]) have arrived on `ifname` in `to`, the flow's
    /// receiver: the flow is under way, or still passes. Returns the count.
    pub fn wait_passing(&self, to: &Netns, ifname: &str, since: u64, n: u64) -> Result<u64> {
        let mut now = since;
        let passed = crate::poll::until(Duration::from_secs(5), Duration::from_millis(10), || {
            now = rx_packets(to, ifname).unwrap_or_else(|e| panic!("{e:#}"));
            now >= since + n
        });
        if !passed {
            anyhow::bail!(
                "{ifname} in {} received {} packets in 5 s, not {n}",
                to.name(),
                now - since
            );
        }
        Ok(now)
    }

    /// Waits for the client; (sent, lost) datagrams, as the receiver saw them.
    pub fn finish(mut self) -> Result<(u64, u64)> {
        let out = self
            .client
            .take()
            .context("the flow has no client")?
            .wait_with_output()?;
        let v: Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "iperf3 client: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        let sum = &v["end"]["sum"];
        Ok((
            sum["packets"].as_u64().unwrap_or(0),
            sum["lost_packets"].as_u64().unwrap_or(u64::MAX),
        ))
    }
}

/// The packets `ifname` in `ns` has received (its `rx_packets` counter).
pub fn rx_packets(ns: &Netns, ifname: &str) -> Result<u64> {
    let out = ns.ok(&["ip", "-j", "-s", "link", "show", "dev", ifname])?;
    let v: Value = serde_json::from_str(&out).with_context(|| format!("ip -j -s link: {out}"))?;
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .with_context(|| format!("no rx packets counter in {out}"))
}

impl Drop for UdpFlow {
    fn drop(&mut self) {
        // Our own children, by their handles.
        for c in [Some(&mut self.server), self.client.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
