//! The datapath fuzzer: structured and random frames ([`Gen`]) through
//! `attach_rx`, `attach_tx` and `attach_rx_xdp` with BPF_PROG_TEST_RUN,
//! each against the reference model (the kernel's macvlan rules and the
//! anti-spoofing rules): return code, verdict counters and every
//! endpoint's counters must be as the model says, for every frame.
//!
//! `ATTACH_FUZZ_FRAMES` frames per mode (default 3000) from seed
//! `ATTACH_FUZZ_SEED` (default fixed); `cargo xtask fuzz` runs a million.

use std::net::IpAddr;

use attach_common::{
    EP_F_DHCP_SERVER, EP_F_HOST_ACCESS, EP_F_IPCHK, EP_F_ROUTER, EP_F_SPOOFCHK, MODE_BRIDGE,
    MODE_PASSTHRU, MODE_PRIVATE, MODE_VEPA, MacAddr,
};

use attach::datapath::{PROG_RX, PROG_TX};

use super::*;
use crate::common::{
    fuzz::{Cast, Gen},
    tally::{Tally, frames, seed},
    *,
};

const F: MacAddr = [0x02, 0, 0, 0, 0, 0x0f];

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
        net4: [10, 0, 0],
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
