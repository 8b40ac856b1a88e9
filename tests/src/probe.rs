//! Reachability probes. Each returns a bool and never panics: a command that
//! cannot even run counts as "not reachable".

use std::{
    io::{BufRead, BufReader},
    net::IpAddr,
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use crate::netns::Netns;

/// An address of the lab subnet that nobody owns: ARP requests for it are
/// broadcasts that no one answers.
pub const UNUSED_V4: &str = "10.77.0.199";

/// `dst` may carry a prefix length ("10.77.0.11/24"); probes want the address.
fn addr(dst: &str) -> &str {
    dst.split('/').next().unwrap_or(dst)
}

fn success(ns: &Netns, argv: &[&str]) -> bool {
    ns.exec(argv).is_ok_and(|o| o.status.success())
}

/// One ICMP echo (v4 or v6, from the address form), retried once: the first
/// may be lost while ARP/ND resolves. A failing probe costs about 2 s.
pub fn ping(from: &Netns, dst: &str) -> bool {
    let dst = addr(dst);
    let family = if dst.contains(':') { "-6" } else { "-4" };
    // Neighbours on veths answer in microseconds: half a second is plenty,
    // and keeps an unreachable probe (the common case in a matrix) cheap.
    let argv = ["ping", family, "-c", "1", "-W", "0.5", "-q", dst];
    success(from, &argv) || success(from, &argv)
}

/// [`ping`] until it answers or `within` has passed. For a path just
/// repaired: a neighbour entry the broken path left unresolved is retried on
/// the kernel's schedule (a probe a second), not at once, so the first
/// pings after a repair can wait for it.
pub fn ping_within(from: &Netns, dst: &str, within: std::time::Duration) -> bool {
    crate::poll::until(within, std::time::Duration::ZERO, || ping(from, dst))
}

/// ARP resolution alone: one request on `ifname`, answered within 1 s.
pub fn arping(from: &Netns, ifname: &str, dst: &str) -> bool {
    success(
        from,
        &["arping", "-c", "1", "-w", "1", "-I", ifname, addr(dst)],
    )
}

/// IPv6 neighbour discovery alone: forget `dst`, ping it once (the reply
/// does not matter), then look for a resolved neighbour entry.
pub fn ndisc(from: &Netns, ifname: &str, dst: &str) -> bool {
    let Ok(want) = addr(dst).parse::<IpAddr>() else {
        return false;
    };
    let dst = addr(dst);
    let _ = from.exec(&["ip", "-6", "neigh", "del", dst, "dev", ifname]);
    let _ = from.exec(&[
        "ping", "-6", "-c", "1", "-W", "0.5", "-q", "-I", ifname, dst,
    ]);
    let Ok(out) = from.exec(&["ip", "-6", "-j", "neigh", "show", "dev", ifname]) else {
        return false;
    };
    let Ok(serde_json::Value::Array(entries)) = serde_json::from_slice(&out.stdout) else {
        return false;
    };
    entries.iter().any(|e| {
        let is_dst = e["dst"].as_str().and_then(|d| d.parse::<IpAddr>().ok()) == Some(want);
        let resolved = e["state"].as_array().is_some_and(|states| {
            states
                .iter()
                .any(|s| matches!(s.as_str(), Some("REACHABLE" | "STALE" | "DELAY")))
        });
        is_dst && resolved
    })
}

/// Whether a broadcast sent on `from_if` arrives on `to_if`: an ARP request
/// for [`UNUSED_V4`] must be captured (inbound) on `to_if` by tcpdump.
/// `from`/`from_if` need an IPv4 address for arping to pick a source.
pub fn broadcast_reaches(from: &Netns, from_if: &str, to: &Netns, to_if: &str) -> bool {
    let filter = format!("arp and host {UNUSED_V4}");
    // Nobody answers for the unused address: arping's deadline does not
    // matter, only the capture's.
    let send = ["arping", "-c", "1", "-w", "1", "-I", from_if, UNUSED_V4];
    captures(to, to_if, &filter, UNUSED_V4, from, &send)
}

/// Whether a frame matching tcpdump `filter` arrives (inbound) on `to_if`
/// while `send` runs in `from`: tcpdump's printed line must contain
/// `needle` (`-e` prints link-level headers, VLAN tags included).
pub fn captures(
    to: &Netns,
    to_if: &str,
    filter: &str,
    needle: &str,
    from: &Netns,
    send: &[&str],
) -> bool {
    // `timeout` bounds the capture even if we die; SIGTERM to it stops tcpdump too.
    let argv = [
        "timeout",
        "5",
        "tcpdump",
        "-i",
        to_if,
        "-p", // not promiscuous: the probe must not change what the NIC accepts
        "-Q",
        "in",
        "--immediate-mode",
        "-e",
        "-n",
        "-l",
        "-c",
        "1",
        filter,
    ];
    let Ok(mut cap) = to
        .command(&argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        return false;
    };
    // Send only once the capture is running: tcpdump says "listening on".
    let mut stderr = cap.stderr.take().map(BufReader::new);
    let mut line = String::new();
    let listening = loop {
        line.clear();
        match stderr.as_mut().map(|r| r.read_line(&mut line)) {
            Some(Ok(n)) if n > 0 => {
                if line.contains("listening on") {
                    break true;
                }
            }
            _ => break false,
        }
    };
    if listening {
        // Wait for the capture (or 700 ms), not for the sender's deadline.
        let sender = from
            .command(send)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let deadline = Instant::now() + Duration::from_millis(700);
        while Instant::now() < deadline && matches!(cap.try_wait(), Ok(None)) {
            thread::sleep(Duration::from_millis(10));
        }
        if let Ok(mut sender) = sender {
            let _ = sender.kill();
            let _ = sender.wait();
        }
    }
    if matches!(cap.try_wait(), Ok(None)) {
        // SAFETY: plain kill(2) on our own child's pid, which is not reaped yet.
        unsafe { libc::kill(cap.id() as libc::pid_t, libc::SIGTERM) };
    }
    // stderr stays open until tcpdump exits, so its exit summary cannot SIGPIPE it.
    let out = cap.wait_with_output();
    drop(stderr);
    // Judge by the printed packet: tcpdump also exits 0 on SIGTERM.
    listening && out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(needle))
}
