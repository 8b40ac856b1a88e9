//! The datapath fuzzer: structured and random frames ([`Gen`]) through
//! `attach_rx`, `attach_tx` and `attach_rx_xdp` with BPF_PROG_TEST_RUN,
//! each against the reference model (the kernel's macvlan rules and the
//! anti-spoofing rules): return code, verdict counters and every
//! endpoint's counters must be as the model says, for every frame.
//!
//! `ATTACH_FUZZ_FRAMES` frames per mode (default 3000) from seed
//! `ATTACH_FUZZ_SEED` (default fixed); `cargo xtask fuzz` runs a million.

use std::{net::IpAddr, time::Instant};

use attach_common::{
    EP_F_DHCP_SERVER, EP_F_HOST_ACCESS, EP_F_IPCHK, EP_F_ROUTER, EP_F_SPOOFCHK, MODE_BRIDGE,
    MODE_PASSTHRU, MODE_PRIVATE, MODE_VEPA, MacAddr,
};

use attach::datapath::{PROG_RX, PROG_TX};

use super::*;
use crate::common::{
    fuzz::{Cast, Gen, hex},
    outcome::*,
    *,
};

const F: MacAddr = [0x02, 0, 0, 0, 0, 0x0f];

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let r = match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => v.parse(),
            };
            r.unwrap_or_else(|_| panic!("{name}={v}: not a number"))
        }
        Err(_) => default,
    }
}

fn frames() -> u64 {
    env_u64("ATTACH_FUZZ_FRAMES", 3000)
}

fn seed() -> u64 {
    env_u64("ATTACH_FUZZ_SEED", 0xf022_5eed)
}

/// Whether `f` is IPv4 or IPv6 by its Ethernet type with a header shorter
/// than the fixed one.
fn short_ip(f: &[u8]) -> bool {
    match u16::from_be_bytes([f[12], f[13]]) {
        0x0800 => f.len() < 14 + 20,
        0x86dd => f.len() < 14 + 40,
        _ => false,
    }
}

fn ips(s: &[&str]) -> Vec<IpAddr> {
    s.iter().map(|a| a.parse().unwrap()).collect()
}

/// Every mode and guard flag on one parent: A bridge (MAC and address
/// checks), B bridge (MAC check), C VEPA (address check), D private
/// (checks, but a router and DHCP server), E bridge with host access and no
/// checks, F VEPA and down.
fn mixed_lab() -> Lab {
    let mut lab = Scenario::new()
        .parent()
        .endpoint_with(MODE_BRIDGE, A, EP_F_SPOOFCHK | EP_F_IPCHK)
        .endpoint_with(MODE_BRIDGE, B, EP_F_SPOOFCHK)
        .endpoint_with(MODE_VEPA, C, EP_F_IPCHK)
        .endpoint_with(
            MODE_PRIVATE,
            D,
            EP_F_SPOOFCHK | EP_F_IPCHK | EP_F_ROUTER | EP_F_DHCP_SERVER,
        )
        .endpoint_with(MODE_BRIDGE, E, EP_F_HOST_ACCESS)
        .endpoint(MODE_VEPA, F)
        .down()
        .build();
    lab.set_ips(0, &ips(&["10.0.0.1", "fd00::1"]));
    lab.set_ips(2, &ips(&["10.0.0.3", "fd00::3"]));
    lab.set_ips(3, &ips(&["10.0.0.4", "fd00::4", "fd00::44"]));
    lab
}

fn cast(lab: &Lab) -> Cast {
    Cast {
        macs: lab.eps.iter().map(|e| e.mac).collect(),
        parent: lab.parents[0].mac,
        own4: vec![[10, 0, 0, 1], [10, 0, 0, 3], [10, 0, 0, 4]],
        own6: vec![v6(1), v6(3), v6(4), v6(0x44)],
    }
}

/// Frames run and disagreements with the model, the first one described.
struct Tally {
    mode: &'static str,
    frames: u64,
    bad: u64,
    skipped: u64,
    first: Option<String>,
    started: Instant,
}

impl Tally {
    fn new(mode: &'static str) -> Self {
        Tally {
            mode,
            frames: 0,
            bad: 0,
            skipped: 0,
            first: None,
            started: Instant::now(),
        }
    }

    /// Runs tc program `prog` on `frame` from `ifindex`. None if the
    /// kernel refuses the run because the frame's IP header is cut short
    /// (it checks that before running an skb program): counted as skipped.
    fn run(&mut self, lab: &mut Lab, prog: &str, ifindex: u32, frame: &[u8]) -> Option<Outcome> {
        match lab.try_tc(prog, ifindex, 0, frame, 1) {
            Ok((o, _)) => Some(o),
            Err(e) if errno(&e) == EINVAL && short_ip(frame) => {
                self.skipped += 1;
                None
            }
            Err(e) => panic!(
                "test run of {prog} refused: {e:?}\n    frame: {}",
                hex(frame)
            ),
        }
    }

    /// Judges one run: it must match one of the model's answers.
    fn judge(&mut self, k: u64, frame: &[u8], got: &Outcome, want: &[Expect]) {
        self.frames += 1;
        if want.iter().any(|w| got.diff(w).is_empty()) {
            return;
        }
        self.bad += 1;
        if self.first.is_none() || std::env::var_os("ATTACH_FUZZ_ALL").is_some() {
            let first = self.first.take().map(|f| f + "\n").unwrap_or_default();
            self.first = Some(
                first
                    + &format!(
                        "frame {k}: {}\n    frame: {}\n    model: {:?}\n    program: return {}, verdicts {}, {}",
                        got.what,
                        hex(frame),
                        want,
                        ret_name(got.ret),
                        fmt_verdicts(&got.verdicts),
                        got.diff(&want[0]).join("; ")
                    ),
            );
        }
    }

    fn finish(self) {
        let secs = self.started.elapsed().as_secs_f64();
        println!(
            "fuzz {}: {} frames (seed {:#x}), {} disagreements, {} refused by the kernel (IP header cut short), {:.1} s ({:.0} frames/s)",
            self.mode,
            self.frames,
            seed(),
            self.bad,
            self.skipped,
            secs,
            self.frames as f64 / secs
        );
        assert_eq!(
            self.bad,
            0,
            "fuzz {}: {} of {} frames disagree with the model; first:\n{}",
            self.mode,
            self.bad,
            self.frames,
            self.first.unwrap_or_default()
        );
    }
}

/// `attach_rx` on `lab`'s parent against the model, for frames from the wire.
fn fuzz_rx(mut lab: Lab, seed: u64, mode: &'static str) {
    lab.chain_runs();
    let cast = cast(&lab);
    let mut g = Gen::new(seed, &cast);
    let mut t = Tally::new(mode);
    for k in 0..frames() {
        let f = g.frame(None);
        let want = lab.model_rx(&f);
        let p = lab.parent();
        let Some(got) = t.run(&mut lab, PROG_RX, p, &f) else {
            continue;
        };
        t.judge(k, &f, &got, &[want]);
    }
    t.finish();
}

#[test]
fn fuzz_rx_from_the_wire() {
    in_netns(|| fuzz_rx(mixed_lab(), seed(), "rx"));
}

#[test]
fn fuzz_rx_passthru() {
    in_netns(|| {
        let lab = Scenario::new()
            .passthru_parent()
            .endpoint_with(MODE_PASSTHRU, A, EP_F_SPOOFCHK)
            .build();
        fuzz_rx(lab, seed() ^ 0x9a55, "rx-passthru");
    });
}

#[test]
fn fuzz_tx_from_each_endpoint() {
    in_netns(|| {
        let mut lab = mixed_lab();
        lab.chain_runs();
        let cast = cast(&lab);
        let mut g = Gen::new(seed() ^ 0x7a7a, &cast);
        let mut t = Tally::new("tx");
        // The down endpoint sends nothing.
        let senders = lab.eps.len() as u64 - 2;
        for k in 0..frames() {
            let i = g.rng.range(0, senders) as usize;
            let f = g.frame(Some(lab.eps[i].mac));
            let want = lab.model_tx_any(i, &f);
            let h = lab.eps[i].host_ifindex;
            let Some(got) = t.run(&mut lab, PROG_TX, h, &f) else {
                continue;
            };
            t.judge(k, &f, &got, &want);
        }
        t.finish();
    });
}

#[test]
fn fuzz_xdp_from_the_wire() {
    in_netns(|| {
        let mut lab = mixed_lab();
        lab.chain_runs();
        let cast = cast(&lab);
        let mut g = Gen::new(seed() ^ 0x0d0d, &cast);
        let mut t = Tally::new("xdp");
        for k in 0..frames() {
            let f = g.frame(None);
            let want = lab.model_xdp(&f);
            let got = lab.xdp(&f);
            t.judge(k, &f, &got, &[want]);
        }
        t.finish();
    });
}
