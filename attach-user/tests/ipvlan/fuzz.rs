//! The datapath fuzzer for ipvlan: structured and random frames ([`Gen`])
//! through `attach_ipvl_rx` (from the wire, on the parent) and
//! `attach_ipvl_tx` (from each endpoint) for every mode and flag, each
//! against the reference model of the kernel's ipvlan rules
//! (common/ipvlan_model.rs): return code, verdict counters and every
//! endpoint's counters must be one of the model's answers, for every frame.
//!
//! `ATTACH_FUZZ_FRAMES` frames per mode (default 3000) from seed
//! `ATTACH_FUZZ_SEED`; `cargo xtask fuzz` runs a million.

use std::collections::BTreeSet;

use attach::datapath::{PROG_IPVL_RX, PROG_IPVL_TX};
use attach_common::{
    IPVL_F_PRIVATE, IPVL_F_VEPA, IPVL_MODE_L2, IPVL_MODE_L3, IPVL_MODE_L3S,
    Verdict::{self, *},
};

use super::{v4, v6};
use crate::common::{
    fuzz::{Cast, Gen},
    ipvlan::*,
    ipvlan_model::Port,
    lab::Lab,
    outcome::Outcome,
    tally::{Tally, frames, seed},
    *,
};

/// Three endpoints, the last one down: 10.77.0.11 and fd77::11;
/// 10.77.0.12, fd77::12 and fd77::1:12; 10.77.0.13 and fd77::13.
fn lab(port: Port) -> Lab {
    IpvlanScenario::new(port.mode, port.flags)
        .endpoint(&["10.77.0.11", "fd77::11"])
        .endpoint(&["10.77.0.12", "fd77::12", "fd77::1:12"])
        .endpoint(&["10.77.0.13", "fd77::13"])
        .down()
        .build()
}

/// Addresses: the endpoints', the node's, a wire host's, a blackholed one.
fn cast(lab: &Lab) -> Cast {
    let pm = lab.parent_mac();
    let mut own4 = vec![v4(11), v4(12), v4(13), v4(254), EXT_V4, BLACKHOLE_V4];
    own4.extend([v4(11), v4(12)]);
    let p6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let mut own6 = vec![
        v6(11),
        v6(12),
        p6("fd77::1:12"),
        v6(13),
        p6(NODE_V6),
        p6(EXT_V6),
    ];
    own6.extend([v6(11), v6(12)]);
    Cast {
        macs: vec![pm],
        parent: pm,
        own4,
        own6,
        net4: [10, 77, 0],
    }
}

/// The verdicts seen, to check the frames reach every rule of a mode.
#[derive(Default)]
struct Seen(BTreeSet<&'static str>);

impl Seen {
    fn add(&mut self, o: &Outcome) {
        self.0.extend(o.verdicts.iter().map(|(_, v, _)| v.name()));
    }

    /// Every verdict of `want` was seen (in a run of the default size or
    /// more: a smaller one may miss some).
    fn check(&self, mode: &str, want: &[Verdict]) {
        if frames() < 3000 {
            return;
        }
        let missed: Vec<_> = want
            .iter()
            .map(|v| v.name())
            .filter(|v| !self.0.contains(v))
            .collect();
        assert!(
            missed.is_empty(),
            "fuzz {mode}: no frame reached {missed:?} (seen {:?})",
            self.0
        );
    }
}

fn fuzz_rx(port: Port, salt: u64, mode: &'static str, want: &'static [Verdict]) {
    in_netns(move || {
        let mut seen = Seen::default();
        let mut lab = lab(port);
        lab.chain_runs();
        let cast = cast(&lab);
        let mut g = Gen::new(seed() ^ salt, &cast);
        let mut t = Tally::new(mode);
        for k in 0..frames() {
            let f = g.frame(None);
            let want = lab.model_ipvl_rx(port, &f);
            let p = lab.parent();
            let Some(got) = t.run(&mut lab, PROG_IPVL_RX, p, &f) else {
                continue;
            };
            t.judge(k, &f, &got, &want);
            seen.add(&got);
        }
        t.finish();
        seen.check(mode, want);
    });
}

fn fuzz_tx(port: Port, salt: u64, mode: &'static str, want: &'static [Verdict]) {
    in_netns(move || {
        let mut seen = Seen::default();
        let mut lab = lab(port);
        lab.chain_runs();
        let cast = cast(&lab);
        let pm = lab.parent_mac();
        let mut g = Gen::new(seed() ^ salt, &cast);
        let mut t = Tally::new(mode);
        for k in 0..frames() {
            // The down endpoint sends nothing.
            let i = g.rng.range(0, 1) as usize;
            let f = g.frame(Some(pm));
            let want = lab.model_ipvl_tx(port, i, &f);
            let h = lab.eps[i].host_ifindex;
            let Some(got) = t.run(&mut lab, PROG_IPVL_TX, h, &f) else {
                continue;
            };
            t.judge(k, &f, &got, &want);
            seen.add(&got);
        }
        t.finish();
        seen.check(mode, want);
    });
}

const L2: Port = Port {
    mode: IPVL_MODE_L2,
    flags: 0,
};
const L3: Port = Port {
    mode: IPVL_MODE_L3,
    flags: 0,
};
const L3S: Port = Port {
    mode: IPVL_MODE_L3S,
    flags: 0,
};

fn with(p: Port, flags: u8) -> Port {
    Port { flags, ..p }
}

#[test]
fn fuzz_ipvlan_rx_l2() {
    fuzz_rx(
        L2,
        0x1201,
        "ipvlan-rx-l2",
        &[Flood, ToEndpoint, ToHost, Unparsed, DropFloodCopy],
    );
}

#[test]
fn fuzz_ipvlan_rx_l3_private() {
    fuzz_rx(
        with(L3, IPVL_F_PRIVATE),
        0x1301,
        "ipvlan-rx-l3-private",
        &[NeighReply, ToEndpoint, ToHost, Unparsed],
    );
}

#[test]
fn fuzz_ipvlan_rx_l3s_vepa() {
    fuzz_rx(
        with(L3S, IPVL_F_VEPA),
        0x1501,
        "ipvlan-rx-l3s-vepa",
        &[NeighReply, ToEndpoint, ToHost, Unparsed],
    );
}

#[test]
fn fuzz_ipvlan_tx_l2() {
    fuzz_tx(
        L2,
        0x2201,
        "ipvlan-tx-l2",
        &[ToEndpoint, ToHost, ToParent, DropFloodCopy],
    );
}

#[test]
fn fuzz_ipvlan_tx_l2_private() {
    fuzz_tx(
        with(L2, IPVL_F_PRIVATE),
        0x2202,
        "ipvlan-tx-l2-private",
        &[DropPrivate, ToHost, ToParent],
    );
}

#[test]
fn fuzz_ipvlan_tx_l2_vepa() {
    fuzz_tx(
        with(L2, IPVL_F_VEPA),
        0x2203,
        "ipvlan-tx-l2-vepa",
        &[ToParent],
    );
}

#[test]
fn fuzz_ipvlan_tx_l3() {
    fuzz_tx(
        L3,
        0x2301,
        "ipvlan-tx-l3",
        &[
            ToEndpoint,
            Routed,
            ToHost,
            DropNoRoute,
            DropMulticast,
            DropParse,
        ],
    );
}

#[test]
fn fuzz_ipvlan_tx_l3_private() {
    fuzz_tx(
        with(L3, IPVL_F_PRIVATE),
        0x2302,
        "ipvlan-tx-l3-private",
        &[DropPrivate, Routed, ToHost, DropMulticast],
    );
}

#[test]
fn fuzz_ipvlan_tx_l3_vepa() {
    fuzz_tx(
        with(L3, IPVL_F_VEPA),
        0x2303,
        "ipvlan-tx-l3-vepa",
        &[Routed, ToHost, DropNoRoute, DropMulticast],
    );
}

#[test]
fn fuzz_ipvlan_tx_l3s() {
    fuzz_tx(
        L3S,
        0x2501,
        "ipvlan-tx-l3s",
        &[ToEndpoint, ToHost, DropMulticast, DropParse],
    );
}
