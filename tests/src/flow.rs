//! A UDP flow (iperf3) from the external host into an endpoint, for tests
//! that change the datapath under traffic and count what was lost.

use std::process::{Child, Stdio};

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
