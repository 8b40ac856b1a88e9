//! The eBPF switch (`attach_sw`) and the native bridge port guard
//! (`attach_br_guard`) under BPF_PROG_TEST_RUN, rule by rule (the Linux
//! bridge's: learning, known unicast, flooding, VLANs, isolation, ageing,
//! MAC moves; and our source checks), with counters and the FDB.
//!
//! Same harness as the macvlan tests: root, bpffs, a fresh network
//! namespace per test with real devices (floods really transmit).

mod shared_uplink;

use crate::common::{bridge::*, frames::*, lab::*, outcome::*, *};
use attach_common::{
    Direction::Rx as RX, Direction::Tx as TX, EndpointStats, FDB_F_STATIC, FdbEntry, MacAddr,
    SW_AGEING_NS, SW_F_GUARD, SW_F_IPCHK, SW_F_ISOLATED, SW_F_SPOOFCHK, Verdict,
};

/// A second MAC behind a port whose MAC is not enforced.
const M: MacAddr = [0x02, 0, 0, 0, 0, 0x4d];

fn ip4(last: u8) -> [u8; 4] {
    [10, 88, 0, last]
}

pub(super) fn udp(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    ipv4_udp(dst, src, ip4(1), ip4(2), 5353, b"hello, switch")
}

pub(super) fn bcast(src: MacAddr) -> Vec<u8> {
    arp_request(src, ip4(1), ip4(99))
}

fn flooded(n: u64, copies: u64) -> EndpointStats {
    EndpointStats {
        flood_copies: copies,
        ..tx_uc(n)
    }
}

/// Learns `mac` on port `i` with a broadcast from it (and checks where
/// the entry points).
pub(super) fn teach(lab: &mut Lab, i: usize, mac: MacAddr, vlan: u16) {
    let sid = lab.eps[i].parent_ifindex;
    lab.sw(i, &bcast(mac));
    let e = lab.fdb(sid, vlan, mac).expect("learned");
    assert_eq!(
        e.port,
        lab.eps[i].host_ifindex,
        "{} learned on port {i}",
        fmt_mac(&mac)
    );
}

/// A frame from a port is learned, and an unknown destination is flooded
/// to every other port of the switch (and, without an uplink, goes no
/// further).
#[test]
fn sw_learns_sources_and_floods_unknown_unicast() {
    in_netns(|| {
        let mut lab = SwitchScenario::new()
            .port(A, 0, 0)
            .port(B, 0, 0)
            .port(C, 0, 0)
            .build();
        assert!(lab.fdb(0, 0, A).is_none());
        let before = lab.deliveries();
        let f = udp(B, A);
        let n = len(&f);
        lab.sw(0, &f)
            .ret(TC_ACT_SHOT)
            .verdicts(&[(TX, Verdict::Flood, 1)])
            .only(&[(0, flooded(n, 2)), (1, rx_uc(n)), (2, rx_uc(n))]);
        assert_eq!(lab.delivered_since(&before), [0, 1, 1], "clones delivered");
        let e = lab.fdb(0, 0, A).expect("A learned");
        assert_eq!(e.port, lab.eps[0].host_ifindex);
        assert_eq!(e.flags, 0, "a learned entry is dynamic");
        assert!(e.seen_ns > 0);
        // Group addresses are never learned.
        lab.sw(1, &udp(A, [0x03, 0, 0, 0, 0, 1]));
        assert!(lab.fdb(0, 0, [0x03, 0, 0, 0, 0, 1]).is_none());
    });
}

/// A destination learned on a port gets the frame alone, redirected into
/// its container.
#[test]
fn sw_known_unicast_goes_to_its_port_only() {
    in_netns(|| {
        let mut lab = SwitchScenario::new()
            .port(A, 0, 0)
            .port(B, 0, 0)
            .port(C, 0, 0)
            .build();
        teach(&mut lab, 1, B, 0);
        for f in [udp(B, A), arp_reply(B, A, ip4(1), ip4(2))] {
            let n = len(&f);
            lab.sw(0, &f)
                .ret(TC_ACT_REDIRECT)
                .verdicts(&[(TX, Verdict::ToEndpoint, 1)])
                .only(&[(0, tx_uc(n)), (1, rx_uc(n))])
                .arrives_at(&mut lab, Target::Endpoint(1));
        }
    });
}

/// Broadcast and multicast reach every other port, never the sender.
#[test]
fn sw_broadcast_and_multicast_reach_every_other_port() {
    in_netns(|| {
        let mut lab = SwitchScenario::new()
            .port(A, 0, 0)
            .port(B, 0, 0)
            .port(C, 0, 0)
            .build();
        let f = bcast(B);
        let n = len(&f);
        let before = lab.deliveries();
        lab.sw(1, &f)
            .ret(TC_ACT_SHOT)
            .verdicts(&[(TX, Verdict::Flood, 1)])
            .only(&[(1, tx_bc(n, 2)), (0, rx_bc(n)), (2, rx_bc(n))]);
        assert_eq!(lab.delivered_since(&before), [1, 0, 1]);
        let all = ALL_NODES;
        let f = ipv6_icmpv6(ipv6_multicast_mac(all), C, ll6(0xc), all, 134, &[0; 8]);
        let n = len(&f);
        lab.sw(2, &f)
            .ret(TC_ACT_SHOT)
            .verdicts(&[(TX, Verdict::Flood, 1)])
            .only(&[(2, tx_mc(n, 2)), (0, rx_mc(n)), (1, rx_mc(n))]);
    });
}

/// VLAN access ports: frames reach ports of the sender's VLAN only, the
/// FDB is per VLAN, and a tagged frame on an access port is refused (an
/// untagged port forwards it as it is).
#[test]
fn sw_vlans_are_separate() {
    in_netns(|| {
        let mut lab = SwitchScenario::new()
            .port(A, 10, 0)
            .port(B, 10, 0)
            .port(C, 20, 0)
            .port(D, 20, 0)
            .port(E, 0, 0)
            .build();
        let f = bcast(A);
        let n = len(&f);
        lab.sw(0, &f)
            .verdicts(&[(TX, Verdict::Flood, 1)])
            .only(&[(0, tx_bc(n, 1)), (1, rx_bc(n))]);
        let f = bcast(C);
        lab.sw(2, &f).only(&[(2, tx_bc(n, 1)), (3, rx_bc(n))]);
        let f = bcast(E);
        lab.sw(4, &f).only(&[(4, tx_bc(n, 0))]);
        assert!(lab.fdb(0, 20, C).is_some() && lab.fdb(0, 10, C).is_none());
        // C is known in VLAN 20 only: from VLAN 10 it is unknown, flooded
        // within VLAN 10.
        let f = udp(C, A);
        let n = len(&f);
        lab.sw(0, &f)
            .verdicts(&[(TX, Verdict::Flood, 1)])
            .only(&[(0, flooded(n, 1)), (1, rx_uc(n))]);
        // Within VLAN 20, delivered.
        lab.sw(3, &udp(C, D))
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToEndpoint, 1)])
            .arrives_at(&mut lab, Target::Endpoint(2));
        // Tagged on an access port: refused; on the untagged port: carried.
        let f = vlan_tagged(&bcast(A), 20);
        lab.sw(0, &f)
            .ret(TC_ACT_SHOT)
            .verdicts(&[(TX, Verdict::DropVlan, 1)])
            .only(&[(0, tx_dropped())]);
        let f = vlan_tagged(&bcast(E), 20);
        let n = len(&f);
        lab.sw(4, &f)
            .verdicts(&[(TX, Verdict::Flood, 1)])
            .only(&[(4, tx_bc(n, 0))]);
    });
}

/// Isolated ports reach non-isolated ports only (unicast and flood); the
/// others reach everyone.
#[test]
fn sw_isolated_ports_reach_non_isolated_ones_only() {
    in_netns(|| {
        let mut lab = SwitchScenario::new()
            .port(A, 0, SW_F_ISOLATED)
            .port(B, 0, SW_F_ISOLATED)
            .port(C, 0, 0)
            .build();
        let f = bcast(A);
        let n = len(&f);
        lab.sw(0, &f).only(&[(0, tx_bc(n, 1)), (2, rx_bc(n))]);
        teach(&mut lab, 1, B, 0);
        teach(&mut lab, 2, C, 0);
        let f = udp(B, A);
        lab.sw(0, &f)
            .ret(TC_ACT_SHOT)
            .verdicts(&[(TX, Verdict::DropPrivate, 1)])
            .only(&[(0, tx_dropped())]);
        let f = udp(C, A);
        let n = len(&f);
        lab.sw(0, &f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToEndpoint, 1)])
            .only(&[(0, tx_uc(n)), (2, rx_uc(n))])
            .arrives_at(&mut lab, Target::Endpoint(2));
        // The non-isolated port reaches both.
        let f = bcast(C);
        let n = len(&f);
        lab.sw(2, &f)
            .only(&[(2, tx_bc(n, 2)), (0, rx_bc(n)), (1, rx_bc(n))]);
        let f = udp(A, C);
        let n = len(&f);
        lab.sw(2, &f)
            .ret(TC_ACT_REDIRECT)
            .only(&[(2, tx_uc(n)), (0, rx_uc(n))])
            .arrives_at(&mut lab, Target::Endpoint(0));
    });
}

/// Source checks: a foreign source MAC, or a source address not the
/// port's, is dropped as `spoofed_source` and not learned.
#[test]
fn sw_spoofed_sources_are_dropped_and_not_learned() {
    in_netns(|| {
        let mut lab = SwitchScenario::new()
            .port(A, 0, SW_F_SPOOFCHK | SW_F_IPCHK)
            .ips(&["10.88.0.1"])
            .port(B, 0, 0)
            .build();
        for f in [
            udp(B, M),
            ipv4_udp(B, A, ip4(7), ip4(2), 53, b"x"),
            arp_request(A, ip4(7), ip4(2)),
        ] {
            lab.sw(0, &f)
                .ret(TC_ACT_SHOT)
                .verdicts(&[(TX, Verdict::DropSpoofed, 1)])
                .only(&[(0, tx_dropped())]);
        }
        assert!(lab.fdb(0, 0, M).is_none(), "a spoofed source was learned");
        let f = udp(B, A);
        let n = len(&f);
        lab.sw(0, &f)
            .verdicts(&[(TX, Verdict::Flood, 1)])
            .only(&[(0, flooded(n, 1)), (1, rx_uc(n))]);
    });
}

/// Ageing: a learned entry older than the switch's ageing time is not
/// trusted (the frame is flooded); a static one never ages; learning
/// again refreshes it.
#[test]
fn sw_aged_entries_are_flooded() {
    in_netns(|| {
        let mut lab = SwitchScenario::new()
            .port(A, 0, 0)
            .port(B, 0, 0)
            .port(C, 0, 0)
            .build();
        let hb = lab.eps[1].host_ifindex;
        // Seen just over the ageing time ago by the programs' clock (the
        // boot-relative monotonic one): the programs compare wrapping, so
        // this holds on a machine up for less than that too.
        let old = FdbEntry {
            port: hb,
            flags: 0,
            seen_ns: monotonic_ns().wrapping_sub(SW_AGEING_NS + 1_000_000_000),
        };
        lab.put_fdb(0, 0, B, old);
        let f = udp(B, A);
        let n = len(&f);
        lab.sw(0, &f).verdicts(&[(TX, Verdict::Flood, 1)]).only(&[
            (0, flooded(n, 2)),
            (1, rx_uc(n)),
            (2, rx_uc(n)),
        ]);
        lab.put_fdb(
            0,
            0,
            B,
            FdbEntry {
                flags: FDB_F_STATIC,
                ..old
            },
        );
        lab.sw(0, &f)
            .verdicts(&[(TX, Verdict::ToEndpoint, 1)])
            .only(&[(0, tx_uc(n)), (1, rx_uc(n))]);
        lab.put_fdb(0, 0, B, old);
        teach(&mut lab, 1, B, 0);
        assert_ne!(lab.fdb(0, 0, B).unwrap().seen_ns, old.seen_ns, "refreshed");
        lab.sw(0, &f)
            .verdicts(&[(TX, Verdict::ToEndpoint, 1)])
            .only(&[(0, tx_uc(n)), (1, rx_uc(n))]);
    });
}

/// A learned MAC seen on another port moves there; a static one does not.
#[test]
fn sw_a_moved_mac_is_relearned_unless_static() {
    in_netns(|| {
        let mut lab = SwitchScenario::new()
            .port(A, 0, 0)
            .port(B, 0, 0)
            .port(C, 0, 0)
            .build();
        teach(&mut lab, 1, M, 0);
        teach(&mut lab, 2, M, 0);
        let f = udp(M, A);
        let n = len(&f);
        lab.sw(0, &f)
            .ret(TC_ACT_REDIRECT)
            .only(&[(0, tx_uc(n)), (2, rx_uc(n))])
            .arrives_at(&mut lab, Target::Endpoint(2));
        let hb = lab.eps[1].host_ifindex;
        lab.put_fdb(
            0,
            0,
            M,
            FdbEntry {
                port: hb,
                flags: FDB_F_STATIC,
                seen_ns: 0,
            },
        );
        lab.sw(2, &bcast(M));
        assert_eq!(lab.fdb(0, 0, M).unwrap().port, hb, "a static entry moved");
        lab.sw(0, &f)
            .ret(TC_ACT_REDIRECT)
            .only(&[(0, tx_uc(n)), (1, rx_uc(n))])
            .arrives_at(&mut lab, Target::Endpoint(1));
    });
}

/// A frame for a MAC behind the port it came in on goes nowhere.
#[test]
fn sw_never_sends_a_frame_back_to_its_port() {
    in_netns(|| {
        let mut lab = SwitchScenario::new().port(A, 0, 0).port(B, 0, 0).build();
        teach(&mut lab, 0, M, 0);
        lab.sw(0, &udp(M, A))
            .ret(TC_ACT_SHOT)
            .verdicts(&[(TX, Verdict::DropSamePort, 1)])
            .only(&[(0, tx_dropped())]);
    });
}

/// Switches are separate: neither floods nor learned entries cross.
#[test]
fn sw_switches_are_separate() {
    in_netns(|| {
        let mut lab = SwitchScenario::new()
            .port(A, 0, 0)
            .port(B, 0, 0)
            .switch(1)
            .port(C, 0, 0)
            .port(D, 0, 0)
            .build();
        let f = bcast(A);
        let n = len(&f);
        lab.sw(0, &f).only(&[(0, tx_bc(n, 1)), (1, rx_bc(n))]);
        teach(&mut lab, 2, C, 0);
        assert!(lab.fdb(0, 0, C).is_none());
        let f = udp(C, A);
        let n = len(&f);
        lab.sw(0, &f)
            .verdicts(&[(TX, Verdict::Flood, 1)])
            .only(&[(0, flooded(n, 1)), (1, rx_uc(n))]);
        // An entry of switch 0 pointing at a port of switch 1 (a stale
        // ifindex) is not followed.
        let hc = lab.eps[2].host_ifindex;
        lab.put_fdb(
            0,
            0,
            C,
            FdbEntry {
                port: hc,
                flags: FDB_F_STATIC,
                seen_ns: 0,
            },
        );
        lab.sw(0, &f)
            .verdicts(&[(TX, Verdict::Flood, 1)])
            .only(&[(0, flooded(n, 1)), (1, rx_uc(n))]);
    });
}

/// The uplink is a trunk: a port's frames leave by it (after the local
/// flood), untagged ports' frames and VLAN ports' alike; what the wire
/// sends untagged reaches the untagged ports, tagged N the ports of VLAN
/// N; the node keeps its own traffic and gets every frame not delivered.
#[test]
fn sw_uplink_is_a_trunk() {
    in_netns(|| {
        let mut lab = SwitchScenario::new()
            .uplink()
            .port(A, 0, 0)
            .port(B, 10, 0)
            .port(C, 10, SW_F_ISOLATED)
            .build();
        let up = lab.uplink_ifindex();
        // Out: flood locally, then out of the uplink.
        let f = bcast(A);
        let n = len(&f);
        lab.sw(0, &f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::Flood, 1), (TX, Verdict::ToParent, 1)])
            .only(&[(0, tx_bc(n, 0))]);
        let f = bcast(C);
        lab.sw(2, &f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::Flood, 1), (TX, Verdict::ToParent, 1)])
            .only(&[(2, tx_bc(n, 1)), (1, rx_bc(n))]);
        // In, untagged: the untagged port; tagged 10: VLAN 10's ports.
        let f = bcast(OUTSIDE);
        let n = len(&f);
        lab.sw_uplink(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)])
            .only(&[(0, rx_bc(n))]);
        let e = lab.fdb(0, 0, OUTSIDE).expect("the wire's host learned");
        assert_eq!(e.port, up);
        let f = vlan_tagged(&bcast(OUTSIDE), 10);
        let before = lab.deliveries();
        lab.sw_uplink(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)]);
        assert_eq!(lab.delivered_since(&before), [0, 1, 1]);
        assert_eq!(lab.fdb(0, 10, OUTSIDE).map(|e| e.port), Some(up));
        // Known unicast both ways.
        let f = udp(OUTSIDE, A);
        let n = len(&f);
        lab.sw(0, &f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToParent, 1)])
            .only(&[(0, tx_uc(n))])
            .arrives_at(&mut lab, Target::Wire);
        let f = udp(A, OUTSIDE);
        lab.sw_uplink(&f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .only(&[(0, rx_uc(n))])
            .arrives_at(&mut lab, Target::Endpoint(0));
        teach(&mut lab, 1, B, 10);
        let f = vlan_tagged(&udp(B, OUTSIDE), 10);
        // Run for real first: the deliveries below are the test runs'.
        lab.sw_uplink(&f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .arrives_at(&mut lab, Target::Endpoint(1));
        let before = lab.deliveries();
        lab.sw_uplink(&f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)]);
        // Untagged, B is unknown (it is in VLAN 10): flooded to VLAN 0.
        let f = udp(B, OUTSIDE);
        lab.sw_uplink(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)]);
        // (A redirect is not carried out by a test run: only the clone
        // arrived.)
        assert_eq!(lab.delivered_since(&before), [1, 0, 0]);
        // The isolated port reaches the wire (the uplink is not isolated).
        let f = udp(OUTSIDE, C);
        lab.sw(2, &f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToParent, 1)])
            // With its VLAN's tag (pushed into the metadata).
            .arrives_as(&mut lab, Target::Wire, &vlan_tagged(&f, 10));
        // The node's own traffic on the uplink, and frames between hosts
        // of the wire: the node's.
        lab.sw_uplink(&udp(UPLINK_MAC, OUTSIDE))
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::ToHost, 1)])
            .only(&[]);
        lab.sw_uplink(&bcast(D));
        lab.sw_uplink(&udp(D, OUTSIDE))
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::ToHost, 1)])
            .only(&[]);
    });
}

/// A device the switch does not know passes untouched.
#[test]
fn sw_stray_devices_are_not_ours() {
    in_netns(|| {
        let mut lab = SwitchScenario::new().uplink().port(A, 0, 0).build();
        let stray = lab.stray;
        lab.tc(attach::datapath::PROG_SW, stray, 0, &bcast(A))
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(TX, Verdict::NotOurs, 1)])
            .only(&[]);
        // A switch whose entry is gone (drift): its ports drop, its
        // uplink passes to the node.
        lab.dp.remove_switch(0).unwrap();
        lab.sw(0, &bcast(A))
            .ret(TC_ACT_SHOT)
            .verdicts(&[(TX, Verdict::DropRedirect, 1)]);
        lab.sw_uplink(&bcast(OUTSIDE))
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::NotOurs, 1)]);
    });
}

/// The native bridge port guard: checked frames go on to the bridge
/// (counted as sent), spoofed ones are dropped.
#[test]
fn guard_checks_sources_and_passes_to_the_bridge() {
    in_netns(|| {
        let mut lab = SwitchScenario::new()
            .port(A, 0, SW_F_GUARD | SW_F_SPOOFCHK | SW_F_IPCHK)
            .ips(&["10.88.0.1"])
            .port(C, 0, 0)
            .build();
        let f = udp(B, A);
        let n = len(&f);
        lab.guard(0, &f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(TX, Verdict::ToParent, 1)])
            .only(&[(0, tx_uc(n))]);
        for f in [udp(B, M), ipv4_udp(B, A, ip4(7), ip4(2), 53, b"x")] {
            lab.guard(0, &f)
                .ret(TC_ACT_SHOT)
                .verdicts(&[(TX, Verdict::DropSpoofed, 1)])
                .only(&[(0, tx_dropped())]);
        }
        let stray = lab.stray;
        lab.tc(attach::datapath::PROG_BR_GUARD, stray, 0, &f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(TX, Verdict::NotOurs, 1)]);
        // A guarded native port (switch id 0, in no flood row) is never a
        // destination of switch 0, even if an entry points at it.
        let c = lab.dp.sw_port(lab.eps[1].host_ifindex).unwrap().unwrap();
        lab.dp.write_sw_flood(0, &[c]).unwrap();
        lab.dp
            .put_switch(
                0,
                &attach_common::Switch {
                    nports: 1,
                    uplink: 0,
                    ageing_ns: attach_common::SW_AGEING_NS,
                },
            )
            .unwrap();
        let hg = lab.eps[0].host_ifindex;
        lab.put_fdb(
            0,
            0,
            B,
            FdbEntry {
                port: hg,
                flags: FDB_F_STATIC,
                seen_ns: 0,
            },
        );
        lab.sw(1, &udp(B, C))
            .ret(TC_ACT_SHOT)
            .verdicts(&[(TX, Verdict::Flood, 1)]);
    });
}

/// CLOCK_MONOTONIC in nanoseconds: what `bpf_ktime_get_ns` reads.
fn monotonic_ns() -> u64 {
    // SAFETY: plain data filled by the kernel.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
