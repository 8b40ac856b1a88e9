//! Reachability probes. Each returns whether the destination answered (or
//! the frame arrived). A probe that cannot run at all (a tool missing, a
//! spawn error, a namespace or interface gone) panics with the reason: it
//! says nothing about reachability.

use std::{
    io::{BufRead, BufReader, Read},
    net::IpAddr,
    process::{Output, Stdio},
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

/// Runs `argv` in `ns`; panics if it could not run (spawn error, nsenter's
/// own failure: namespace gone, tool missing).
fn run(ns: &Netns, argv: &[&str]) -> Output {
    let out = ns
        .exec(argv)
        .unwrap_or_else(|e| panic!("probe {argv:?} in {}: {e:#}", ns.name()));
    ran(out, argv, ns.name())
}

/// `out` of probe `argv` in `place`; panics if the probe could not run.
fn ran(out: Output, argv: &[&str], place: &str) -> Output {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("nsenter:") || matches!(out.status.code(), Some(126 | 127) | None) {
        panic!(
            "probe {argv:?} in {place} could not run ({}): {}",
            out.status,
            stderr.trim()
        );
    }
    out
}

/// The answer of a probe command: exit 0 answered, 1 no answer; any other
/// exit is an error of the probe itself and panics, unless its stderr says
/// one of `unreachable` (the network's answer, e.g. no route).
fn answered(ns: &Netns, argv: &[&str], unreachable: &[&str]) -> bool {
    judge(&run(ns, argv), argv, ns.name(), unreachable)
}

/// [`answered`] for the output `out` of `argv` in `place`.
fn judge(out: &Output, argv: &[&str], place: &str, unreachable: &[&str]) -> bool {
    let stderr = String::from_utf8_lossy(&out.stderr);
    // arping says some of it on stdout.
    let said = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ if unreachable.iter().any(|u| said.contains(u)) => false,
        _ => panic!(
            "probe {argv:?} in {place} failed ({}): {}",
            out.status,
            stderr.trim()
        ),
    }
}

/// What ping says when the network, not the probe, is at fault: no route,
/// or the packet refused on its way out (a policy drop).
const PING_UNREACHABLE: [&str; 3] = [
    "Network is unreachable",
    "No route to host",
    "Operation not permitted",
];

/// One ICMP echo (v4 or v6, from the address form), waited for 1 s; not
/// retried. Neighbours on veths answer in microseconds, and the echo waits
/// in the neighbour queue while ARP/ND resolves.
pub fn ping(from: &Netns, dst: &str) -> bool {
    let dst = addr(dst);
    let family = if dst.contains(':') { "-6" } else { "-4" };
    answered(
        from,
        &["ping", family, "-c", "1", "-W", "1", "-q", dst],
        &PING_UNREACHABLE,
    )
}

/// [`ping`] from the namespace at `path` (one no [`Netns`] guards).
pub fn ping_at(path: &std::path::Path, dst: &str) -> bool {
    let dst = addr(dst);
    let family = if dst.contains(':') { "-6" } else { "-4" };
    let argv = ["ping", family, "-c", "1", "-W", "1", "-q", dst];
    let place = path.display().to_string();
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={place}"))
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("probe {argv:?} in {place}: {e}"));
    judge(&ran(out, &argv, &place), &argv, &place, &PING_UNREACHABLE)
}

/// [`ping`] until it answers or `within` has passed. For a path just
/// repaired: a neighbour entry the broken path left unresolved is retried on
/// the kernel's schedule (a probe a second), not at once, so the first
/// pings after a repair can wait for it.
pub fn ping_within(from: &Netns, dst: &str, within: std::time::Duration) -> bool {
    crate::poll::until(within, std::time::Duration::ZERO, || ping(from, dst))
}

/// [`ping`] until it goes unanswered or `within` has passed. For a path
/// just broken on purpose (a link's pin removed): the kernel detaches the
/// program when its last reference is released, in deferred work, so the
/// first pings may still be switched by it.
pub fn unreachable_within(from: &Netns, dst: &str, within: std::time::Duration) -> bool {
    crate::poll::until(within, std::time::Duration::ZERO, || !ping(from, dst))
}

/// What arping says of an interface that does no ARP (NOARP, e.g. an
/// ipvlan l3 endpoint): it resolves nothing, by the interface's nature.
const NOT_ARPABLE: &str = "is not ARPable";

/// ARP resolution alone: one request on `ifname`, answered within 1 s.
/// From a NOARP interface: false (it resolves nothing).
pub fn arping(from: &Netns, ifname: &str, dst: &str) -> bool {
    answered(
        from,
        &["arping", "-c", "1", "-w", "1", "-I", ifname, addr(dst)],
        &[NOT_ARPABLE],
    )
}

/// IPv6 neighbour discovery alone: forget `dst`, ping it once (the reply
/// does not matter), then look for a resolved neighbour entry.
pub fn ndisc(from: &Netns, ifname: &str, dst: &str) -> bool {
    let want: IpAddr = addr(dst)
        .parse()
        .unwrap_or_else(|e| panic!("ndisc probe of {dst:?}: not an address: {e}"));
    let dst = addr(dst);
    // Nothing to delete is fine; a namespace gone is not (run panics).
    run(from, &["ip", "-6", "neigh", "del", dst, "dev", ifname]);
    answered(
        from,
        &[
            "ping", "-6", "-c", "1", "-W", "0.5", "-q", "-I", ifname, dst,
        ],
        &PING_UNREACHABLE,
    );
    let out = run(from, &["ip", "-6", "-j", "neigh", "show", "dev", ifname]);
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ndisc probe in {}: ip -j neigh show dev {ifname}: {e}: {}{}",
            from.name(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let entries = entries.as_array().unwrap_or_else(|| {
        panic!(
            "ndisc probe in {}: ip -j neigh show dev {ifname}: not a list: {entries}",
            from.name()
        )
    });
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
    let mut cap = to
        .command(&argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("capture on {to_if} in {}: {e}", to.name()));
    // Send only once the capture is running: tcpdump says "listening on".
    let mut stderr = BufReader::new(cap.stderr.take().expect("tcpdump's stderr"));
    let mut line = String::new();
    let mut said = String::new();
    loop {
        line.clear();
        match stderr.read_line(&mut line) {
            Ok(n) if n > 0 => {
                if line.contains("listening on") {
                    break;
                }
                said.push_str(&line);
            }
            _ => {
                let _ = cap.wait();
                panic!(
                    "capture on {to_if} in {} did not start: {}",
                    to.name(),
                    said.trim()
                );
            }
        }
    }
    // Wait for the capture (or 700 ms), not for the sender's deadline.
    let mut sender = from
        .command(send)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("sending {send:?} from {}: {e}", from.name()));
    let deadline = Instant::now() + Duration::from_millis(700);
    while Instant::now() < deadline && matches!(cap.try_wait(), Ok(None)) {
        thread::sleep(Duration::from_millis(10));
    }
    // A sender that ended on its own must have sent: exit 0 or 1 (no
    // answer); anything else (a device missing, nsenter failing) means no
    // frame left, which says nothing about where frames go.
    let ended = sender.try_wait().expect("the sender's status");
    if ended.is_none() {
        let _ = sender.kill();
    }
    let status = sender.wait().expect("reaping the sender");
    let mut sender_err = String::new();
    // (arping says some of it on stdout.)
    if let Some(mut e) = sender.stderr.take() {
        let _ = e.read_to_string(&mut sender_err);
    }
    if let Some(mut o) = sender.stdout.take() {
        let _ = o.read_to_string(&mut sender_err);
    }
    // An interface that does no ARP sends no ARP broadcast: nothing to see.
    let noarp = sender_err.contains(NOT_ARPABLE);
    if ended.is_some() && !matches!(status.code(), Some(0 | 1)) && !noarp
        || sender_err.contains("nsenter:")
    {
        if matches!(cap.try_wait(), Ok(None)) {
            // SAFETY: plain kill(2) on our own child's pid, which is not reaped yet.
            unsafe { libc::kill(cap.id() as libc::pid_t, libc::SIGTERM) };
        }
        let _ = cap.wait();
        panic!(
            "sending {send:?} from {} failed ({status}): {}",
            from.name(),
            sender_err.trim()
        );
    }
    if matches!(cap.try_wait(), Ok(None)) {
        // SAFETY: plain kill(2) on our own child's pid, which is not reaped yet.
        unsafe { libc::kill(cap.id() as libc::pid_t, libc::SIGTERM) };
    }
    // stderr stays open until tcpdump exits, so its exit summary cannot SIGPIPE it.
    let out = cap
        .wait_with_output()
        .unwrap_or_else(|e| panic!("capture on {to_if} in {}: {e}", to.name()));
    drop(stderr);
    // Judge by the printed packet: tcpdump also exits 0 on SIGTERM.
    String::from_utf8_lossy(&out.stdout).contains(needle)
}
