//! The datapath fuzzer for ipvlan: structured and random frames ([`Gen`])
//! through `attach_ipvl_rx` (from the wire, on the parent) and
//! `attach_ipvl_tx` (from each endpoint) for every mode and flag, each
//! against the reference model of the kernel's ipvlan rules
//! (common/ipvlan_model.rs): return code, verdict counters and every
//! endpoint's counters must be one of the model's answers, for every frame.
//!
//! `ATTACH_FUZZ_FRAMES` frames per mode (default 3000) from seed
//! `ATTACH_FUZZ_SEED`; `cargo xtask fuzz` runs a million.

use attach::datapath::{PROG_IPVL_RX, PROG_IPVL_TX};
use attach_common::{IPVL_F_PRIVATE, IPVL_F_VEPA, IPVL_MODE_L2, IPVL_MODE_L3, IPVL_MODE_L3S};

use super::{v4, v6};
use crate::common::{
    fuzz::{Cast, Gen},
    ipvlan::*,
    ipvlan_model::Port,
    lab::Lab,
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

fn fuzz_rx(port: Port, salt: u64, mode: &'static str) {
    in_netns(move || {
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
        }
        t.finish();
    });
}

fn fuzz_tx(port: Port, salt: u64, mode: &'static str) {
    in_netns(move || {
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
        }
        t.finish();
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
    fuzz_rx(L2, 0x1201, "ipvlan-rx-l2");
}

#[test]
fn fuzz_ipvlan_rx_l3_private() {
    fuzz_rx(with(L3, IPVL_F_PRIVATE), 0x1301, "ipvlan-rx-l3-private");
}

#[test]
fn fuzz_ipvlan_rx_l3s_vepa() {
    fuzz_rx(with(L3S, IPVL_F_VEPA), 0x1501, "ipvlan-rx-l3s-vepa");
}

#[test]
fn fuzz_ipvlan_tx_l2() {
    fuzz_tx(L2, 0x2201, "ipvlan-tx-l2");
}

#[test]
fn fuzz_ipvlan_tx_l2_private() {
    fuzz_tx(with(L2, IPVL_F_PRIVATE), 0x2202, "ipvlan-tx-l2-private");
}

#[test]
fn fuzz_ipvlan_tx_l2_vepa() {
    fuzz_tx(with(L2, IPVL_F_VEPA), 0x2203, "ipvlan-tx-l2-vepa");
}

#[test]
fn fuzz_ipvlan_tx_l3() {
    fuzz_tx(L3, 0x2301, "ipvlan-tx-l3");
}

#[test]
fn fuzz_ipvlan_tx_l3_private() {
    fuzz_tx(with(L3, IPVL_F_PRIVATE), 0x2302, "ipvlan-tx-l3-private");
}

#[test]
fn fuzz_ipvlan_tx_l3_vepa() {
    fuzz_tx(with(L3, IPVL_F_VEPA), 0x2303, "ipvlan-tx-l3-vepa");
}

#[test]
fn fuzz_ipvlan_tx_l3s() {
    fuzz_tx(L3S, 0x2501, "ipvlan-tx-l3s");
}
