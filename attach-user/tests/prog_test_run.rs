//! The datapath programs under BPF_PROG_TEST_RUN, frame by frame, against the
//! kernel's macvlan rules (shared/docs/semantics.md).
//!
//! Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) and bpffs on
//! /sys/fs/bpf. Each test runs in its own network namespace with real veth
//! devices (floods use `bpf_clone_redirect`, which really transmits), and its
//! own pinned maps, removed afterwards.

mod bridge;
mod common;
mod ipvlan;
mod nested;
mod router;

use attach::datapath::{PROG_HOST, PROG_RX, PROG_TX};
use attach_common::{
    DATAPATH_MARK, Direction::Host as HOST, Direction::Rx as RX, Direction::Tx as TX,
    EP_F_DHCP_SERVER, EP_F_HOST_ACCESS, EP_F_IPCHK, EP_F_ROUTER, EP_F_SPOOFCHK, EndpointStats,
    MODE_BRIDGE, MODE_PASSTHRU, MODE_PRIVATE, MODE_VEPA, MacAddr, Verdict,
};
use common::{frames::*, *};

const A: MacAddr = [0x02, 0, 0, 0, 0, 0x0a];
const B: MacAddr = [0x02, 0, 0, 0, 0, 0x0b];
const C: MacAddr = [0x02, 0, 0, 0, 0, 0x0c];
const D: MacAddr = [0x02, 0, 0, 0, 0, 0x0d];
const E: MacAddr = [0x02, 0, 0, 0, 0, 0x0e];
/// A host on the wire, not an endpoint.
const OUTSIDE: MacAddr = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const UNKNOWN: MacAddr = [0x52, 0x54, 0, 0x99, 0x99, 0x99];

fn ip4(last: u8) -> [u8; 4] {
    [10, 0, 0, last]
}

fn udp_to(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    ipv4_udp(dst, src, ip4(1), ip4(2), 5353, b"hello, endpoint")
}

fn len(f: &[u8]) -> u64 {
    f.len() as u64
}

// ---------------------------------------------------------------------------
// Receive: attach_rx on the parent.

/// Unicast to the endpoint of `mode` is redirected to it, and only it counts.
fn rx_unicast_to(mode: u8) {
    in_netns(move || {
        let mut lab = if mode == MODE_PASSTHRU {
            Scenario::new().passthru_parent().endpoint(mode, A).build()
        } else {
            // The endpoint under test, beside one of every other mode.
            let mut s = Scenario::new().parent().endpoint(mode, A);
            for (m, mac) in [(MODE_BRIDGE, B), (MODE_VEPA, C), (MODE_PRIVATE, D)] {
                if m != mode {
                    s = s.endpoint(m, mac);
                }
            }
            s.build()
        };
        for f in [udp_to(A, OUTSIDE), arp_reply(A, OUTSIDE, ip4(1), ip4(2))] {
            lab.rx(&f)
                .ret(TC_ACT_REDIRECT)
                .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
                .only(&[(0, rx_uc(len(&f)))]);
        }
    });
}

#[test]
fn rx_unicast_to_bridge_endpoint() {
    rx_unicast_to(MODE_BRIDGE);
}

#[test]
fn rx_unicast_to_vepa_endpoint() {
    rx_unicast_to(MODE_VEPA);
}

#[test]
fn rx_unicast_to_private_endpoint() {
    rx_unicast_to(MODE_PRIVATE);
}

#[test]
fn rx_unicast_to_passthru_endpoint() {
    rx_unicast_to(MODE_PASSTHRU);
}

#[test]
fn rx_unicast_to_unknown_mac_goes_to_host() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .parent()
            .endpoint(MODE_BRIDGE, A)
            .endpoint(MODE_VEPA, B)
            .build();
        let pmac = lab.parents[0].mac;
        for f in [udp_to(UNKNOWN, OUTSIDE), udp_to(pmac, OUTSIDE)] {
            lab.rx(&f)
                .ret(TC_ACT_UNSPEC)
                .verdicts(&[(RX, Verdict::ToHost, 1)])
                .only(&[]);
        }
    });
}

#[test]
fn rx_passthru_parent_takes_any_unicast() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .passthru_parent()
            .endpoint(MODE_PASSTHRU, A)
            .build();
        let pmac = lab.parents[0].mac;
        for f in [
            udp_to(UNKNOWN, OUTSIDE),
            udp_to(pmac, OUTSIDE),
            udp_to(A, OUTSIDE),
        ] {
            lab.rx(&f)
                .ret(TC_ACT_REDIRECT)
                .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
                .only(&[(0, rx_uc(len(&f)))]);
        }
    });
}

#[test]
fn rx_unicast_to_an_endpoint_of_another_parent_goes_to_host() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .parent()
            .endpoint(MODE_BRIDGE, A)
            .parent()
            .endpoint(MODE_BRIDGE, B)
            .endpoint(MODE_VEPA, C)
            .build();
        let f = udp_to(B, OUTSIDE);
        lab.rx(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::ToHost, 1)])
            .only(&[]);
        // A broadcast on p0 reaches p0's endpoints only.
        let f = arp_request(OUTSIDE, ip4(1), ip4(2));
        lab.rx(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)])
            .only(&[(0, rx_bc(len(&f)))]);
        // And on p1, p1's.
        let p1 = lab.parents[1].ifindex;
        lab.tc(PROG_RX, p1, 0, &f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)])
            .only(&[(1, rx_bc(len(&f))), (2, rx_bc(len(&f)))]);
        lab.tc(PROG_RX, p1, 0, &udp_to(C, OUTSIDE))
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)]);
    });
}

/// bridge A, bridge B, VEPA C, private D on one parent.
fn four_modes() -> Lab {
    Scenario::new()
        .parent()
        .endpoint(MODE_BRIDGE, A)
        .endpoint(MODE_BRIDGE, B)
        .endpoint(MODE_VEPA, C)
        .endpoint(MODE_PRIVATE, D)
        .build()
}

#[test]
fn rx_broadcast_from_outside_reaches_every_endpoint() {
    in_netns(|| {
        let mut lab = four_modes();
        let f = arp_request(OUTSIDE, ip4(1), ip4(2));
        let n = len(&f);
        let before = lab.deliveries();
        lab.rx(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)])
            .only(&[(0, rx_bc(n)), (1, rx_bc(n)), (2, rx_bc(n)), (3, rx_bc(n))]);
        // The clones really crossed into each container side.
        let after = lab.deliveries();
        let got: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        assert_eq!(got, [1, 1, 1, 1], "frames delivered per endpoint");
    });
}

#[test]
fn rx_broadcast_on_a_passthru_parent_reaches_its_endpoint() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .passthru_parent()
            .endpoint(MODE_PASSTHRU, A)
            .build();
        let f = arp_request(OUTSIDE, ip4(1), ip4(2));
        lab.rx(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)])
            .only(&[(0, rx_bc(len(&f)))]);
    });
}

#[test]
fn rx_reflected_broadcast_of_a_private_sender_goes_back_to_it_alone() {
    in_netns(|| {
        let mut lab = four_modes();
        let f = arp_request(D, ip4(4), ip4(1));
        lab.rx(&f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToSender, 1)])
            .only(&[(3, rx_bc(len(&f)))]);
    });
}

#[test]
fn rx_reflected_broadcast_of_a_passthru_sender_goes_back_to_it_alone() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .passthru_parent()
            .endpoint(MODE_PASSTHRU, A)
            .build();
        let f = arp_request(A, ip4(4), ip4(1));
        lab.rx(&f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToSender, 1)])
            .only(&[(0, rx_bc(len(&f)))]);
    });
}

#[test]
fn rx_reflected_broadcast_of_a_vepa_sender_reaches_vepa_and_bridge_peers() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .parent()
            .endpoint(MODE_BRIDGE, A)
            .endpoint(MODE_BRIDGE, B)
            .endpoint(MODE_VEPA, C)
            .endpoint(MODE_PRIVATE, D)
            .endpoint(MODE_VEPA, E)
            .build();
        let f = arp_request(C, ip4(3), ip4(1));
        let n = len(&f);
        lab.rx(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)])
            .only(&[(0, rx_bc(n)), (1, rx_bc(n)), (4, rx_bc(n))]);
    });
}

#[test]
fn rx_reflected_broadcast_of_a_bridge_sender_reaches_only_vepa_ports() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .parent()
            .endpoint(MODE_BRIDGE, A)
            .endpoint(MODE_BRIDGE, B)
            .endpoint(MODE_VEPA, C)
            .endpoint(MODE_PRIVATE, D)
            .endpoint(MODE_VEPA, E)
            .build();
        let f = arp_request(A, ip4(1), ip4(3));
        let n = len(&f);
        lab.rx(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)])
            .only(&[(2, rx_bc(n)), (4, rx_bc(n))]);
    });
}

#[test]
fn rx_ipv6_multicast_from_outside_reaches_every_endpoint() {
    in_netns(|| {
        let mut lab = four_modes();
        let dst = ipv6_multicast_mac(ALL_NODES);
        assert_eq!(dst, [0x33, 0x33, 0, 0, 0, 1]);
        // A router advertisement to all nodes.
        let f = ipv6_icmpv6(dst, OUTSIDE, ll6(1), ALL_NODES, 134, &[0; 8]);
        let n = len(&f);
        lab.rx(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)])
            .only(&[(0, rx_mc(n)), (1, rx_mc(n)), (2, rx_mc(n)), (3, rx_mc(n))]);
    });
}

#[test]
fn rx_ipv4_multicast_from_outside_reaches_every_endpoint() {
    in_netns(|| {
        let mut lab = four_modes();
        let group = [224, 0, 0, 251];
        let dst = ipv4_multicast_mac(group);
        assert_eq!(dst, [0x01, 0, 0x5e, 0, 0, 0xfb]);
        let f = ipv4_udp(dst, OUTSIDE, ip4(9), group, 5353, b"mdns");
        let n = len(&f);
        lab.rx(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)])
            .only(&[(0, rx_mc(n)), (1, rx_mc(n)), (2, rx_mc(n)), (3, rx_mc(n))]);
    });
}

#[test]
fn rx_reflected_multicast_follows_the_broadcast_rules() {
    in_netns(|| {
        let mut lab = four_modes();
        let dst = ipv6_multicast_mac(ALL_NODES);
        // Private sender D: back to D alone.
        let f = ipv6_icmpv6(dst, D, ll6(4), ALL_NODES, 133, &[]);
        lab.rx(&f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToSender, 1)])
            .only(&[(3, rx_mc(len(&f)))]);
        // VEPA sender C: the bridge ports A and B.
        let f = ipv6_icmpv6(dst, C, ll6(3), ALL_NODES, 133, &[]);
        let n = len(&f);
        lab.rx(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)])
            .only(&[(0, rx_mc(n)), (1, rx_mc(n))]);
        // Bridge sender A: VEPA C only.
        let f = ipv6_icmpv6(dst, A, ll6(1), ALL_NODES, 133, &[]);
        lab.rx(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)])
            .only(&[(2, rx_mc(len(&f)))]);
    });
}

#[test]
fn rx_vlan_tagged_frames_are_switched_by_mac() {
    in_netns(|| {
        let mut lab = four_modes();
        let f = vlan_tagged(&udp_to(C, OUTSIDE), 42);
        assert_eq!(&f[12..16], &[0x81, 0x00, 0x00, 42]);
        lab.rx(&f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .only(&[(2, rx_uc(len(&f)))]);
        let f = vlan_tagged(&arp_request(OUTSIDE, ip4(1), ip4(2)), 42);
        let n = len(&f);
        lab.rx(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)])
            .only(&[(0, rx_bc(n)), (1, rx_bc(n)), (2, rx_bc(n)), (3, rx_bc(n))]);
    });
}

#[test]
fn rx_ipv6_unicast_to_an_endpoint() {
    in_netns(|| {
        let mut lab = four_modes();
        // An echo request to B's link-local address.
        let f = ipv6_icmpv6(B, OUTSIDE, ll6(9), ll6(2), 128, b"ping");
        lab.rx(&f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .only(&[(1, rx_uc(len(&f)))]);
    });
}

#[test]
fn rx_datapath_mark_passes_untouched() {
    in_netns(|| {
        let mut lab = four_modes();
        let p = lab.parent();
        for f in [
            udp_to(A, OUTSIDE),
            arp_request(OUTSIDE, ip4(1), ip4(2)),
            arp_request(D, ip4(4), ip4(1)),
        ] {
            lab.tc(PROG_RX, p, DATAPATH_MARK, &f)
                .ret(TC_ACT_UNSPEC)
                .nothing_counted()
                // Cleared, so the node's own rules never see our mark.
                .mark(0);
        }
        // Any other mark is switched as usual, and kept.
        let f = udp_to(A, OUTSIDE);
        lab.tc(PROG_RX, p, 0x1234, &f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .only(&[(0, rx_uc(len(&f)))])
            .mark(0x1234);
    });
}

#[test]
fn rx_on_a_parent_not_in_the_table_is_not_ours() {
    in_netns(|| {
        let mut lab = four_modes();
        let stray = lab.stray;
        for f in [udp_to(A, OUTSIDE), arp_request(OUTSIDE, ip4(1), ip4(2))] {
            lab.tc(PROG_RX, stray, 0, &f)
                .ret(TC_ACT_UNSPEC)
                .verdicts(&[(RX, Verdict::NotOurs, 1)])
                .only(&[]);
        }
    });
}

#[test]
fn rx_flood_to_a_down_port_counts_rx_dropped() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .parent()
            .endpoint(MODE_BRIDGE, A)
            .endpoint(MODE_BRIDGE, B)
            .down()
            .build();
        let f = arp_request(OUTSIDE, ip4(1), ip4(2));
        let want = lab.model_rx(&f);
        assert_eq!(
            want.eps[1].1,
            EndpointStats {
                rx_dropped: 1,
                ..Default::default()
            }
        );
        let before = lab.delivered(0);
        lab.rx(&f).expect(want);
        assert_eq!(lab.delivered(0) - before, 1, "the up port got its copy");
    });
}

#[test]
fn rx_smallest_frames() {
    in_netns(|| {
        let mut lab = four_modes();
        let p = lab.parent();
        // Below an Ethernet header the kernel refuses the run itself.
        let err = lab
            .try_tc(PROG_RX, p, 0, &[0xff; 13], 1)
            .expect_err("a 13-byte frame must be refused");
        assert_eq!(errno(&err), EINVAL, "{err:?}");
        // 14 bytes: a header and nothing else.
        let mut rng = XorShift::new(14);
        for _ in 0..64 {
            let mut f = [0u8; 14];
            rng.fill(&mut f);
            let want = lab.model_rx(&f);
            lab.rx(&f).expect(want);
        }
        for (dst, src) in [
            (A, OUTSIDE),
            (D, OUTSIDE),
            (UNKNOWN, OUTSIDE),
            (BROADCAST, OUTSIDE),
            (BROADCAST, B),
            (BROADCAST, C),
            (BROADCAST, D),
            ([0x33, 0x33, 0, 0, 0, 1], A),
        ] {
            let mut f = [0u8; 14];
            f[..6].copy_from_slice(&dst);
            f[6..12].copy_from_slice(&src);
            rng.fill(&mut f[12..]);
            let want = lab.model_rx(&f);
            lab.rx(&f).expect(want);
        }
    });
}

/// Random frames of random length: never a failure, a redirect only to the
/// endpoint owning the destination MAC, and every counter per the rules.
#[test]
fn rx_random_frames_follow_the_rules() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .parent()
            .endpoint(MODE_BRIDGE, A)
            .endpoint(MODE_BRIDGE, B)
            .endpoint(MODE_VEPA, C)
            .endpoint(MODE_PRIVATE, D)
            .endpoint(MODE_VEPA, E)
            .build();
        let macs = [A, B, C, D, E];
        let pmac = lab.parents[0].mac;
        let mut rng = XorShift::new(0x5eed_a77a);
        let mut failures = Vec::new();
        let mut redirects = 0;
        for i in 0..400 {
            let n = match rng.range(0, 3) {
                0 => rng.range(14, 64),
                _ => rng.range(14, 1514),
            } as usize;
            let mut f = vec![0u8; n];
            rng.fill(&mut f);
            let dst = match rng.range(0, 9) {
                0..=2 => macs[rng.range(0, 4) as usize],
                3 => BROADCAST,
                4 => [0x33, 0x33, 0, 0, 0, rng.range(1, 255) as u8],
                5 => ipv4_multicast_mac([224, 0, 0, rng.range(1, 255) as u8]),
                6 => pmac,
                _ => rng.mac(),
            };
            f[..6].copy_from_slice(&dst);
            if rng.range(0, 2) == 0 {
                f[6..12].copy_from_slice(&macs[rng.range(0, 4) as usize]);
            }
            let want = lab.model_rx(&f);
            let got = lab.rx(&f);
            if got.ret == TC_ACT_REDIRECT {
                redirects += 1;
            }
            let d = got.diff(&want);
            if !d.is_empty() {
                failures.push(format!("frame {i}: {}\n    {}", got.what, d.join("\n    ")));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of 400 frames broke the rules:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert!(redirects > 50, "the fuzz hardly redirected ({redirects})");
    });
}

// ---------------------------------------------------------------------------
// Transmit: attach_tx on an endpoint's host veth.

#[test]
fn tx_bridge_unicast_to_a_bridge_peer_stays_local() {
    in_netns(|| {
        let mut lab = four_modes();
        let f = udp_to(B, A);
        let n = len(&f);
        lab.tx(0, &f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToEndpoint, 1)])
            .only(&[(0, tx_uc(n)), (1, rx_uc(n))])
            .mark(0);
    });
}

#[test]
fn tx_bridge_unicast_to_a_vepa_or_private_peer_goes_out_the_parent() {
    in_netns(|| {
        let mut lab = four_modes();
        for dst in [C, D, UNKNOWN] {
            let f = udp_to(dst, A);
            lab.tx(0, &f)
                .ret(TC_ACT_REDIRECT)
                .verdicts(&[(TX, Verdict::ToParent, 1)])
                .only(&[(0, tx_uc(len(&f)))])
                .mark(DATAPATH_MARK);
        }
    });
}

/// A non-bridge endpoint sends everything out of the parent.
fn tx_always_out_the_parent(mode: u8) {
    in_netns(move || {
        let mut lab = if mode == MODE_PASSTHRU {
            Scenario::new().passthru_parent().endpoint(mode, E).build()
        } else {
            Scenario::new()
                .parent()
                .endpoint(mode, E)
                .endpoint(MODE_BRIDGE, A)
                .endpoint(MODE_BRIDGE, B)
                .endpoint(MODE_VEPA, C)
                .endpoint(MODE_PRIVATE, D)
                .build()
        };
        let pmac = lab.parents[0].mac;
        for dst in [A, B, C, D, UNKNOWN, pmac] {
            let f = udp_to(dst, E);
            lab.tx(0, &f)
                .ret(TC_ACT_REDIRECT)
                .verdicts(&[(TX, Verdict::ToParent, 1)])
                .only(&[(0, tx_uc(len(&f)))])
                .mark(DATAPATH_MARK);
        }
    });
}

#[test]
fn tx_vepa_sends_unicast_out_the_parent() {
    tx_always_out_the_parent(MODE_VEPA);
}

#[test]
fn tx_private_sends_unicast_out_the_parent() {
    tx_always_out_the_parent(MODE_PRIVATE);
}

#[test]
fn tx_passthru_sends_unicast_out_the_parent() {
    tx_always_out_the_parent(MODE_PASSTHRU);
}

/// macvlan_queue_xmit floods locally only from a bridge port: a VEPA,
/// private or passthru port's broadcast leaves by the wire alone (local ports
/// get it only if the switch reflects it, and then attach_rx floods it).
fn tx_broadcast_not_flooded_locally(mode: u8) {
    in_netns(move || {
        let mut lab = if mode == MODE_PASSTHRU {
            Scenario::new().passthru_parent().endpoint(mode, E).build()
        } else {
            Scenario::new()
                .parent()
                .endpoint(mode, E)
                .endpoint(MODE_BRIDGE, A)
                .endpoint(MODE_BRIDGE, B)
                .endpoint(MODE_VEPA, C)
                .endpoint(MODE_PRIVATE, D)
                .build()
        };
        let mc = ipv6_multicast_mac(ALL_NODES);
        for (f, sender) in [
            (
                arp_request(E, ip4(5), ip4(1)),
                tx_bc as fn(u64, u64) -> EndpointStats,
            ),
            (ipv6_icmpv6(mc, E, ll6(5), ALL_NODES, 133, &[]), tx_mc),
        ] {
            lab.tx(0, &f)
                .ret(TC_ACT_REDIRECT)
                .verdicts(&[(TX, Verdict::ToParent, 1)])
                .only(&[(0, sender(len(&f), 0))])
                .mark(DATAPATH_MARK);
        }
    });
}

#[test]
fn tx_vepa_broadcast_is_not_flooded_locally() {
    tx_broadcast_not_flooded_locally(MODE_VEPA);
}

#[test]
fn tx_private_broadcast_is_not_flooded_locally() {
    tx_broadcast_not_flooded_locally(MODE_PRIVATE);
}

#[test]
fn tx_passthru_broadcast_is_not_flooded_locally() {
    tx_broadcast_not_flooded_locally(MODE_PASSTHRU);
}

#[test]
fn tx_bridge_broadcast_reaches_the_other_bridge_ports() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .parent()
            .endpoint(MODE_BRIDGE, A)
            .endpoint(MODE_BRIDGE, B)
            .endpoint(MODE_VEPA, C)
            .endpoint(MODE_PRIVATE, D)
            .endpoint(MODE_BRIDGE, E)
            .build();
        let f = arp_request(A, ip4(1), ip4(2));
        let n = len(&f);
        let before = lab.deliveries();
        lab.tx(0, &f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToParent, 1)])
            .only(&[(0, tx_bc(n, 2)), (1, rx_bc(n)), (4, rx_bc(n))])
            .mark(DATAPATH_MARK);
        let after = lab.deliveries();
        let got: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        assert_eq!(got, [0, 1, 0, 0, 1], "frames delivered per endpoint");
        let dst = ipv6_multicast_mac(ALL_NODES);
        let f = ipv6_icmpv6(dst, B, ll6(2), ALL_NODES, 133, &[]);
        let n = len(&f);
        lab.tx(1, &f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToParent, 1)])
            .only(&[(1, tx_mc(n, 2)), (0, rx_mc(n)), (4, rx_mc(n))])
            .mark(DATAPATH_MARK);
    });
}

#[test]
fn tx_spoofed_source_is_dropped_with_spoofchk() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .parent()
            .endpoint_with(MODE_BRIDGE, A, EP_F_SPOOFCHK)
            .endpoint(MODE_BRIDGE, B)
            .build();
        for f in [
            udp_to(B, UNKNOWN),
            arp_request(B, ip4(1), ip4(2)),
            udp_to(OUTSIDE, C),
        ] {
            lab.tx(0, &f)
                .ret(TC_ACT_SHOT)
                .verdicts(&[(TX, Verdict::DropSpoofed, 1)])
                .only(&[(0, tx_dropped())]);
        }
        // Its own MAC passes the check.
        let f = udp_to(B, A);
        lab.tx(0, &f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToEndpoint, 1)])
            .only(&[(0, tx_uc(len(&f))), (1, rx_uc(len(&f)))]);
    });
}

/// A (bridge) sends from 10.0.0.1 and fd00::1 only; B is its peer.
fn ipchk_lab() -> Lab {
    let lab = Scenario::new()
        .parent()
        .endpoint_with(MODE_BRIDGE, A, EP_F_SPOOFCHK | EP_F_IPCHK)
        .endpoint(MODE_BRIDGE, B)
        .build();
    let own: [std::net::IpAddr; 2] = ["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()];
    let mut lab = lab;
    let h = lab.eps[0].host_ifindex;
    lab.dp.put_endpoint_ips(h, &own).unwrap();
    lab
}

fn v6(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[15] = last;
    a
}

#[test]
fn tx_foreign_source_addresses_are_dropped_with_ipchk() {
    in_netns(|| {
        let mut lab = ipchk_lab();
        for (what, f) in [
            (
                "IPv4 from another address",
                ipv4_udp(B, A, ip4(9), ip4(2), 53, b"x"),
            ),
            (
                "IPv6 from another address",
                ipv6_icmpv6(B, A, v6(9), v6(2), 128, &[]),
            ),
            (
                "ARP for another sender address",
                arp_request(A, ip4(9), ip4(2)),
            ),
            (
                "tagged IPv4 from another address",
                vlan_tagged(&ipv4_udp(B, A, ip4(9), ip4(2), 53, b"x"), 7),
            ),
        ] {
            let o = lab.tx(0, &f);
            assert_eq!(o.ret, TC_ACT_SHOT, "{what}");
            o.verdicts(&[(TX, Verdict::DropSpoofed, 1)])
                .only(&[(0, tx_dropped())]);
        }
    });
}

#[test]
fn tx_own_and_identity_free_source_addresses_pass_ipchk() {
    in_netns(|| {
        let mut lab = ipchk_lab();
        for (what, f) in [
            ("own IPv4", ipv4_udp(B, A, ip4(1), ip4(2), 53, b"x")),
            ("own IPv6", ipv6_icmpv6(B, A, v6(1), v6(2), 128, &[])),
            (
                "DHCP from 0.0.0.0",
                ipv4_udp(B, A, [0; 4], [255; 4], 67, b"x"),
            ),
            (
                "link-local IPv6",
                ipv6_icmpv6(B, A, ll6(1), ll6(2), 135, &[0; 16]),
            ),
            (
                "DAD from ::",
                ipv6_icmpv6(B, A, [0; 16], ll6(2), 135, &[0; 16]),
            ),
            ("ARP probe from 0.0.0.0", arp_request(A, [0; 4], ip4(2))),
            ("own ARP", arp_request(A, ip4(1), ip4(2))),
        ] {
            let o = lab.tx(0, &f);
            assert_ne!(o.ret, TC_ACT_SHOT, "{what} was dropped");
        }
    });
}

#[test]
fn tx_frames_over_the_parent_mtu_are_dropped() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .parent()
            .endpoint(MODE_BRIDGE, A)
            .endpoint(MODE_BRIDGE, B)
            .build();
        let p = lab.parents[0].ifindex;
        let mut cfg = lab.dp.parent(p).unwrap().unwrap();
        cfg.mtu = 1500;
        lab.dp.put_parent(p, &cfg).unwrap();
        // 1500 bytes of IP fit; one more does not; a VLAN tag is allowed for.
        let fits = ipv4_udp(OUTSIDE, A, ip4(1), ip4(2), 9, &[0; 1500 - 28]);
        let too_big = ipv4_udp(OUTSIDE, A, ip4(1), ip4(2), 9, &[0; 1501 - 28]);
        let tagged = vlan_tagged(&fits, 5);
        assert_ne!(lab.tx(0, &fits).ret, TC_ACT_SHOT);
        assert_ne!(lab.tx(0, &tagged).ret, TC_ACT_SHOT);
        lab.tx(0, &too_big)
            .ret(TC_ACT_SHOT)
            .verdicts(&[(TX, Verdict::DropMtu, 1)])
            .only(&[(0, tx_dropped())]);
    });
}

#[test]
fn tx_spoofed_source_is_forwarded_without_spoofchk() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .parent()
            .endpoint(MODE_BRIDGE, A)
            .endpoint(MODE_BRIDGE, B)
            .build();
        let f = udp_to(B, UNKNOWN);
        lab.tx(0, &f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToEndpoint, 1)])
            .only(&[(0, tx_uc(len(&f))), (1, rx_uc(len(&f)))]);
        let f = udp_to(OUTSIDE, UNKNOWN);
        lab.tx(0, &f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToParent, 1)])
            .only(&[(0, tx_uc(len(&f)))]);
    });
}

#[test]
fn tx_host_access_unicast_to_the_parent_goes_to_the_host() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .parent()
            .endpoint_with(MODE_BRIDGE, A, EP_F_HOST_ACCESS)
            .endpoint(MODE_BRIDGE, B)
            .build();
        let pmac = lab.parents[0].mac;
        let f = udp_to(pmac, A);
        lab.tx(0, &f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToHost, 1)])
            .only(&[(0, tx_uc(len(&f)))])
            // So attach_rx on the parent's ingress lets it through.
            .mark(DATAPATH_MARK);
        // Without the flag the same frame leaves by the wire.
        let f = udp_to(pmac, B);
        lab.tx(1, &f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToParent, 1)])
            .only(&[(1, tx_uc(len(&f)))])
            .mark(DATAPATH_MARK);
    });
}

#[test]
fn tx_host_access_broadcast_reaches_the_host_too() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .parent()
            .endpoint_with(MODE_BRIDGE, A, EP_F_HOST_ACCESS)
            .endpoint(MODE_BRIDGE, B)
            .build();
        let f = arp_request(A, ip4(1), ip4(254));
        let n = len(&f);
        lab.tx(0, &f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToHost, 1), (TX, Verdict::ToParent, 1)])
            .only(&[(0, tx_bc(n, 1)), (1, rx_bc(n))])
            .mark(DATAPATH_MARK);
    });
}

#[test]
fn tx_on_an_unknown_port_is_not_ours() {
    in_netns(|| {
        let mut lab = four_modes();
        let (stray, p) = (lab.stray, lab.parent());
        for ifindex in [stray, p] {
            let f = udp_to(B, A);
            lab.tc(PROG_TX, ifindex, 0, &f)
                .ret(TC_ACT_UNSPEC)
                .verdicts(&[(TX, Verdict::NotOurs, 1)])
                .only(&[])
                .mark(0);
        }
    });
}

/// Random frames from random endpoints: never a failure, and every verdict
/// and counter per the kernel's transmit rules.
#[test]
fn tx_random_frames_follow_the_rules() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .parent()
            .endpoint_with(MODE_BRIDGE, A, EP_F_HOST_ACCESS)
            .endpoint_with(MODE_BRIDGE, B, EP_F_SPOOFCHK)
            .endpoint(MODE_VEPA, C)
            .endpoint(MODE_PRIVATE, D)
            .endpoint(MODE_BRIDGE, E)
            .build();
        let macs = [A, B, C, D, E];
        let pmac = lab.parents[0].mac;
        let mut rng = XorShift::new(0x7a_7a_7a);
        let mut failures = Vec::new();
        for k in 0..400 {
            let i = rng.range(0, 4) as usize;
            let n = rng.range(14, 1514) as usize;
            let mut f = vec![0u8; n];
            rng.fill(&mut f);
            let dst = match rng.range(0, 7) {
                0..=2 => macs[rng.range(0, 4) as usize],
                3 => BROADCAST,
                4 => [0x33, 0x33, 0, 0, 0, rng.range(1, 255) as u8],
                5 => pmac,
                _ => rng.mac(),
            };
            f[..6].copy_from_slice(&dst);
            // Mostly its own source MAC, sometimes not.
            let src = if rng.range(0, 4) == 0 {
                rng.mac()
            } else {
                macs[i]
            };
            f[6..12].copy_from_slice(&src);
            let want = lab.model_tx(i, &f);
            let got = lab.tx(i, &f);
            let d = got.diff(&want);
            if !d.is_empty() {
                failures.push(format!(
                    "frame {k} from ep{i}: {}\n    {}",
                    got.what,
                    d.join("\n    ")
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of 400 frames broke the rules:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}

// ---------------------------------------------------------------------------
// Host egress: attach_host on the parent (the node's own frames).

/// A (bridge, host access), B (bridge), C (VEPA, host access), D (private).
fn host_lab() -> Lab {
    Scenario::new()
        .parent()
        .endpoint_with(MODE_BRIDGE, A, EP_F_HOST_ACCESS)
        .endpoint(MODE_BRIDGE, B)
        .endpoint_with(MODE_VEPA, C, EP_F_HOST_ACCESS)
        .endpoint(MODE_PRIVATE, D)
        .build()
}

#[test]
fn host_unicast_to_a_host_access_endpoint_is_redirected() {
    in_netns(|| {
        let mut lab = host_lab();
        let pmac = lab.parents[0].mac;
        for (i, dst) in [(0, A), (2, C)] {
            let f = udp_to(dst, pmac);
            lab.host(&f)
                .ret(TC_ACT_REDIRECT)
                .verdicts(&[(HOST, Verdict::ToEndpoint, 1)])
                .only(&[(i, rx_uc(len(&f)))]);
        }
    });
}

#[test]
fn host_unicast_to_other_macs_leaves_by_the_wire() {
    in_netns(|| {
        let mut lab = host_lab();
        let pmac = lab.parents[0].mac;
        for dst in [B, D, OUTSIDE] {
            lab.host(&udp_to(dst, pmac))
                .ret(TC_ACT_UNSPEC)
                .verdicts(&[(HOST, Verdict::ToParent, 1)])
                .only(&[]);
        }
    });
}

#[test]
fn host_broadcast_reaches_only_host_access_endpoints() {
    in_netns(|| {
        let mut lab = host_lab();
        let pmac = lab.parents[0].mac;
        let f = arp_request(pmac, ip4(254), ip4(1));
        let n = len(&f);
        lab.host(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(HOST, Verdict::Flood, 1)])
            .only(&[(0, rx_bc(n)), (2, rx_bc(n))]);
        let dst = ipv6_multicast_mac(ALL_NODES);
        let f = ipv6_icmpv6(dst, pmac, ll6(254), ALL_NODES, 134, &[0; 8]);
        let n = len(&f);
        lab.host(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(HOST, Verdict::Flood, 1)])
            .only(&[(0, rx_mc(n)), (2, rx_mc(n))]);
    });
}

#[test]
fn host_datapath_mark_passes_untouched() {
    in_netns(|| {
        let mut lab = host_lab();
        let p = lab.parent();
        let pmac = lab.parents[0].mac;
        for f in [udp_to(A, pmac), arp_request(A, ip4(1), ip4(2))] {
            lab.tc(PROG_HOST, p, DATAPATH_MARK, &f)
                .ret(TC_ACT_UNSPEC)
                .nothing_counted()
                .mark(0);
        }
    });
}

#[test]
fn host_on_a_device_not_in_the_table_passes() {
    in_netns(|| {
        let mut lab = host_lab();
        let stray = lab.stray;
        lab.tc(PROG_HOST, stray, 0, &udp_to(A, OUTSIDE))
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(HOST, Verdict::NotOurs, 1)])
            .only(&[]);
    });
}

// ---------------------------------------------------------------------------
// XDP: attach_rx_xdp on the parent.

#[test]
fn xdp_unicast_to_an_endpoint_is_redirected() {
    in_netns(|| {
        let mut lab = four_modes();
        for (i, dst) in [A, B, C, D].into_iter().enumerate() {
            let f = udp_to(dst, OUTSIDE);
            lab.xdp(&f)
                .ret(XDP_REDIRECT)
                .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
                .only(&[(i, rx_uc(len(&f)))]);
        }
        let f = vlan_tagged(&ipv6_icmpv6(C, OUTSIDE, ll6(9), ll6(3), 128, b"x"), 7);
        lab.xdp(&f)
            .ret(XDP_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .only(&[(2, rx_uc(len(&f)))]);
    });
}

#[test]
fn xdp_broadcast_multicast_and_unknown_pass_uncounted() {
    in_netns(|| {
        let mut lab = four_modes();
        let pmac = lab.parents[0].mac;
        let mc = ipv6_multicast_mac(ALL_NODES);
        for f in [
            arp_request(OUTSIDE, ip4(1), ip4(2)),
            arp_request(D, ip4(4), ip4(1)),
            ipv6_icmpv6(mc, OUTSIDE, ll6(1), ALL_NODES, 134, &[0; 8]),
            ipv4_udp(
                ipv4_multicast_mac([239, 1, 2, 3]),
                OUTSIDE,
                ip4(1),
                [239, 1, 2, 3],
                9,
                b"m",
            ),
            udp_to(UNKNOWN, OUTSIDE),
            udp_to(pmac, OUTSIDE),
        ] {
            // tc counts it, after XDP passes it on.
            lab.xdp(&f).ret(XDP_PASS).nothing_counted();
        }
    });
}

#[test]
fn xdp_passthru_parent_redirects_any_unicast() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .passthru_parent()
            .endpoint(MODE_PASSTHRU, A)
            .build();
        for f in [udp_to(A, OUTSIDE), udp_to(UNKNOWN, OUTSIDE)] {
            lab.xdp(&f)
                .ret(XDP_REDIRECT)
                .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
                .only(&[(0, rx_uc(len(&f)))]);
        }
        lab.xdp(&arp_request(OUTSIDE, ip4(1), ip4(2)))
            .ret(XDP_PASS)
            .nothing_counted();
    });
}

#[test]
fn xdp_on_a_device_not_in_the_table_passes() {
    in_netns(|| {
        let mut lab = four_modes();
        let stray = lab.stray;
        lab.try_xdp(stray, &udp_to(A, OUTSIDE))
            .expect("XDP test run")
            .ret(XDP_PASS)
            .nothing_counted();
    });
}

const EINVAL: i32 = libc::EINVAL;
const ENODEV: i32 = libc::ENODEV;

/// What this kernel (6.18) accepts in an XDP test run's `struct xdp_md`, and
/// how the program treats a multi-buffer frame.
#[test]
fn xdp_test_run_context_rules() {
    in_netns(|| {
        let mut lab = four_modes();
        let p = lab.parent();
        let f = udp_to(A, OUTSIDE);
        let n = f.len();
        let mut run = |ctx: &[u8], f: &[u8]| lab.try_xdp_ctx(ctx, f).map_err(|e| errno(&e));
        let refused = |r: Result<Outcome, i32>| r.expect_err("refused");

        run(&xdp_ctx(p, n), &f).unwrap().ret(XDP_REDIRECT);
        // data_end may not exceed the frame, metadata may not be given as
        // data_meta, there is no rx queue 1 on a veth, egress is output only,
        // the device must exist in the caller's netns, 14 bytes at least.
        let mut c = xdp_ctx(p, n);
        put_u32(&mut c, XDP_DATA_END, n as u32 + 1);
        assert_eq!(refused(run(&c, &f)), EINVAL, "data_end past the frame");
        let mut c = xdp_ctx(p, n);
        put_u32(&mut c, XDP_DATA_META, 4);
        assert_eq!(refused(run(&c, &f)), EINVAL, "data_meta");
        let mut c = xdp_ctx(p, n);
        put_u32(&mut c, XDP_RX_QUEUE_INDEX, 1);
        assert_eq!(refused(run(&c, &f)), EINVAL, "rx queue 1");
        let mut c = xdp_ctx(p, n);
        put_u32(&mut c, XDP_EGRESS_IFINDEX, p);
        assert_eq!(refused(run(&c, &f)), EINVAL, "egress_ifindex");
        assert_eq!(
            refused(run(&xdp_ctx(9999, n), &f)),
            ENODEV,
            "no such device"
        );
        assert_eq!(refused(run(&xdp_ctx(p, 13), &f[..13])), EINVAL, "13 bytes");

        // ingress_ifindex 0: the run happens on the loopback device.
        run(&xdp_ctx(0, n), &f)
            .unwrap()
            .ret(XDP_PASS)
            .nothing_counted();

        // `data` > 0: the first bytes are metadata, the frame follows.
        let mut with_meta = vec![0xee; 4];
        with_meta.extend_from_slice(&f);
        let mut c = xdp_ctx(p, with_meta.len());
        put_u32(&mut c, XDP_DATA, 4);
        run(&c, &with_meta)
            .unwrap()
            .ret(XDP_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .only(&[(0, rx_uc(len(&f)))]);

        // data_end < frame length: new in 6.18, a multi-buffer frame whose
        // linear part ends at data_end (the kernel does not check that the
        // program is frags-aware). With the header linear, it is switched,
        // but rx_bytes counts only the linear part.
        let mut c = xdp_ctx(p, n);
        put_u32(&mut c, XDP_DATA_END, 14);
        run(&c, &f)
            .unwrap()
            .ret(XDP_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .only(&[(0, rx_uc(14))]);
        // With the header not linear, the program cannot read it: passed on.
        put_u32(&mut c, XDP_DATA_END, 8);
        run(&c, &f).unwrap().ret(XDP_PASS).nothing_counted();
    });
}

/// What this kernel (6.18) accepts in a tc test run's `struct __sk_buff`.
#[test]
fn tc_test_run_context_rules() {
    in_netns(|| {
        let mut lab = four_modes();
        let p = lab.parent();
        let f = udp_to(A, OUTSIDE);
        let mut run = |ctx: &[u8], f: &[u8]| {
            lab.try_tc_ctx(PROG_RX, ctx, f, 1)
                .map(|o| o.0)
                .map_err(|e| errno(&e))
        };
        let refused = |r: Result<Outcome, i32>| r.expect_err("refused");

        run(&skb_ctx(p, 0), &f).unwrap().ret(TC_ACT_REDIRECT);
        // Only mark, priority, ingress_ifindex, ifindex, cb, tstamp,
        // wire_len, gso_* and hwtstamp may be set: not len, and not data_end
        // (no non-linear skb test runs on this kernel).
        let mut c = skb_ctx(p, 0);
        put_u32(&mut c, SKB_LEN, f.len() as u32);
        assert_eq!(refused(run(&c, &f)), EINVAL, "len");
        let mut c = skb_ctx(p, 0);
        put_u32(&mut c, SKB_DATA_END, 14);
        assert_eq!(refused(run(&c, &f)), EINVAL, "data_end");
        assert_eq!(refused(run(&skb_ctx(9999, 0), &f)), ENODEV, "no device");
        assert_eq!(refused(run(&skb_ctx(p, 0), &f[..13])), EINVAL, "13 bytes");
        // The frame must fit one page with the skb's head and tail room:
        // 4096 - NET_SKB_PAD (64) - skb_shared_info (320) = 3712 bytes.
        let big = udp_to(A, OUTSIDE)
            .into_iter()
            .chain(std::iter::repeat_n(0, 3712 - f.len()))
            .collect::<Vec<_>>();
        run(&skb_ctx(p, 0), &big)
            .unwrap()
            .ret(TC_ACT_REDIRECT)
            .only(&[(0, rx_uc(3712))]);
        let mut bigger = big.clone();
        bigger.push(0);
        assert_eq!(refused(run(&skb_ctx(p, 0), &bigger)), EINVAL, "3713 bytes");

        // ifindex 0 (or 1) runs on the loopback device: not a parent.
        for i in [0, 1] {
            run(&skb_ctx(i, 0), &f)
                .unwrap()
                .ret(TC_ACT_UNSPEC)
                .verdicts(&[(RX, Verdict::NotOurs, 1)])
                .only(&[]);
        }
    });
}

#[test]
fn xdp_random_frames_follow_the_rules() {
    in_netns(|| {
        let mut lab = four_modes();
        let macs = [A, B, C, D];
        let mut rng = XorShift::new(0xd0_0d_f0_0d);
        let mut failures = Vec::new();
        for i in 0..300 {
            let n = rng.range(14, 1514) as usize;
            let mut f = vec![0u8; n];
            rng.fill(&mut f);
            if rng.range(0, 1) == 0 {
                f[..6].copy_from_slice(&macs[rng.range(0, 3) as usize]);
            }
            let want = lab.model_xdp(&f);
            let got = lab.xdp(&f);
            let d = got.diff(&want);
            if !d.is_empty() {
                failures.push(format!("frame {i}: {}\n    {}", got.what, d.join("\n    ")));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    });
}

// ---------------------------------------------------------------------------
// Cost, and the harness itself.

#[test]
fn rx_unicast_cost_per_packet() {
    in_netns(|| {
        let mut lab = four_modes();
        let p = lab.parent();
        let f = udp_to(B, OUTSIDE);
        let repeat = 100_000;
        let (out, per_run) = lab
            .try_tc(PROG_RX, p, 0, &f, repeat)
            .expect("test run with repeat");
        let r = u64::from(repeat);
        out.ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, r)])
            .only(&[(
                1,
                EndpointStats {
                    rx_packets: r,
                    rx_bytes: r * len(&f),
                    ..Default::default()
                },
            )]);
        // The kernel reports the mean time of one run.
        println!(
            "attach_rx unicast redirect: {} ns/packet over {repeat} runs",
            per_run.as_nanos()
        );
        let f = arp_request(OUTSIDE, ip4(1), ip4(2));
        let floods = 10_000;
        let (out, per_flood) = lab
            .try_tc(PROG_RX, p, 0, &f, floods)
            .expect("flood test run with repeat");
        // Every run flooded the broadcast to each of the four endpoints.
        let r = u64::from(floods);
        let each = EndpointStats {
            rx_packets: r,
            rx_bytes: r * len(&f),
            rx_broadcast: r,
            ..Default::default()
        };
        out.ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, r)])
            .only(&[(0, each), (1, each), (2, each), (3, each)]);
        println!(
            "attach_rx broadcast to 4 endpoints (4 clones, really sent): {} ns/packet",
            per_flood.as_nanos()
        );
    });
}

#[test]
fn pin_dirs_are_removed_even_on_panic() {
    let (tx, rx) = std::sync::mpsc::channel();
    let r = std::panic::catch_unwind(move || {
        in_netns(move || {
            let lab = Scenario::new().parent().endpoint(MODE_BRIDGE, A).build();
            let dir = lab.dp.dir().to_owned();
            assert!(dir.join("attach_eps").exists(), "maps pinned in {dir:?}");
            tx.send(dir).unwrap();
            panic!("deliberate");
        })
    });
    assert!(r.is_err());
    let dir = rx.recv().unwrap();
    assert!(!dir.exists(), "{dir:?} left behind");
}

/// A's link-local address as the kernel makes it (EUI-64 of its MAC).
fn a_link_local() -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfe;
    a[1] = 0x80;
    a[8] = A[0] ^ 2;
    a[9] = A[1];
    a[10] = A[2];
    a[11] = 0xff;
    a[12] = 0xfe;
    a[13..].copy_from_slice(&A[3..]);
    a
}

/// The body of a neighbour advertisement (after its flags) for `target`
/// with a target link-layer option carrying `mac`.
fn na_body(target: [u8; 16], mac: MacAddr) -> Vec<u8> {
    let mut b = target.to_vec();
    b.extend_from_slice(&[2, 1]);
    b.extend_from_slice(&mac);
    b
}

/// The body of a neighbour solicitation for `target` with a source
/// link-layer option carrying `mac`.
fn ns_body(target: [u8; 16], mac: MacAddr) -> Vec<u8> {
    let mut b = target.to_vec();
    b.extend_from_slice(&[1, 1]);
    b.extend_from_slice(&mac);
    b
}

/// A router advertisement's body (after its first 4 bytes): reachable and
/// retransmit timers, then a source link-layer option with `mac`.
fn ra_body(mac: MacAddr) -> Vec<u8> {
    let mut b = vec![0; 8];
    b.extend_from_slice(&[1, 1]);
    b.extend_from_slice(&mac);
    b
}

#[test]
fn tx_forged_neighbour_router_and_dhcp_messages_are_dropped() {
    in_netns(|| {
        let mut lab = ipchk_lab();
        for (what, f, why) in [
            (
                "ARP reply with its own address but another sender MAC",
                arp_from(2, A, UNKNOWN, ip4(1), ip4(2)),
                Verdict::DropSpoofedArp,
            ),
            (
                "ARP request with another sender MAC",
                arp_from(1, A, B, ip4(1), ip4(2)),
                Verdict::DropSpoofedArp,
            ),
            (
                "unsolicited NA for another host's address",
                ipv6_icmpv6(B, A, v6(1), ALL_NODES, 136, &na_body(v6(9), A)),
                Verdict::DropSpoofedNd,
            ),
            (
                "NA for a link-local that is not its own",
                ipv6_icmpv6(B, A, a_link_local(), ALL_NODES, 136, &na_body(ll6(7), A)),
                Verdict::DropSpoofedNd,
            ),
            (
                "NA for its own address with another MAC as target link-layer address",
                ipv6_icmpv6(B, A, v6(1), ALL_NODES, 136, &na_body(v6(1), UNKNOWN)),
                Verdict::DropSpoofedNd,
            ),
            (
                "NS with another MAC as source link-layer address",
                ipv6_icmpv6(B, A, v6(1), v6(2), 135, &ns_body(v6(2), UNKNOWN)),
                Verdict::DropSpoofedNd,
            ),
            (
                "router advertisement",
                ipv6_icmpv6(B, A, a_link_local(), ALL_NODES, 134, &ra_body(A)),
                Verdict::DropRogueRouter,
            ),
            (
                "router advertisement behind a destination-options header",
                with_dest_opts(&ipv6_icmpv6(
                    B,
                    A,
                    a_link_local(),
                    ALL_NODES,
                    134,
                    &ra_body(A),
                )),
                Verdict::DropRogueRouter,
            ),
            (
                "redirect",
                ipv6_icmpv6(B, A, a_link_local(), v6(2), 137, &[0; 32]),
                Verdict::DropRogueRouter,
            ),
            (
                "DHCP server reply",
                ipv4_udp_ports(B, A, (ip4(1), 67), ([255; 4], 68), b"offer"),
                Verdict::DropRogueDhcp,
            ),
            (
                "DHCPv6 server reply",
                ipv6_udp(B, A, (a_link_local(), 547), (ll6(2), 546), b"advertise"),
                Verdict::DropRogueDhcp,
            ),
        ] {
            let o = lab.tx(0, &f);
            assert_eq!(o.ret, TC_ACT_SHOT, "{what}: passed");
            o.verdicts(&[(TX, why, 1)]).only(&[(0, tx_dropped())]);
        }
    });
}

#[test]
fn tx_own_neighbour_messages_and_dhcp_clients_pass() {
    in_netns(|| {
        let mut lab = ipchk_lab();
        for (what, f) in [
            ("ARP reply from itself", arp_from(2, A, A, ip4(1), ip4(2))),
            (
                "NA for its own address",
                ipv6_icmpv6(B, A, v6(1), v6(2), 136, &na_body(v6(1), A)),
            ),
            (
                "NA for its own link-local",
                ipv6_icmpv6(
                    B,
                    A,
                    a_link_local(),
                    ALL_NODES,
                    136,
                    &na_body(a_link_local(), A),
                ),
            ),
            (
                "NS with its own source link-layer address",
                ipv6_icmpv6(B, A, v6(1), v6(2), 135, &ns_body(v6(2), A)),
            ),
            (
                "router solicitation",
                ipv6_icmpv6(
                    B,
                    A,
                    a_link_local(),
                    ALL_NODES,
                    133,
                    &[1, 1, A[0], A[1], A[2], A[3], A[4], A[5]],
                ),
            ),
            (
                "DHCP client request",
                ipv4_udp_ports(B, A, ([0; 4], 68), ([255; 4], 67), b"discover"),
            ),
            (
                "DHCPv6 client solicit",
                ipv6_udp(B, A, (a_link_local(), 546), (ll6(2), 547), b"solicit"),
            ),
        ] {
            let o = lab.tx(0, &f);
            assert_ne!(o.ret, TC_ACT_SHOT, "{what} was dropped");
        }
    });
}

#[test]
fn tx_router_and_dhcp_server_messages_pass_where_allowed() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .parent()
            .endpoint_with(
                MODE_BRIDGE,
                A,
                EP_F_SPOOFCHK | EP_F_IPCHK | EP_F_ROUTER | EP_F_DHCP_SERVER,
            )
            .endpoint(MODE_BRIDGE, B)
            .build();
        let h = lab.eps[0].host_ifindex;
        let own: [std::net::IpAddr; 1] = ["10.0.0.1".parse().unwrap()];
        lab.dp.put_endpoint_ips(h, &own).unwrap();
        for (what, f) in [
            (
                "router advertisement",
                ipv6_icmpv6(B, A, a_link_local(), ALL_NODES, 134, &ra_body(A)),
            ),
            (
                "DHCP server reply",
                ipv4_udp_ports(B, A, (ip4(1), 67), ([255; 4], 68), b"offer"),
            ),
            (
                "DHCPv6 server reply",
                ipv6_udp(B, A, (a_link_local(), 547), (ll6(2), 546), b"advertise"),
            ),
        ] {
            let o = lab.tx(0, &f);
            assert_ne!(o.ret, TC_ACT_SHOT, "{what} was dropped");
        }
        // The router's advertisement must still carry its own MAC.
        let f = ipv6_icmpv6(B, A, a_link_local(), ALL_NODES, 134, &ra_body(UNKNOWN));
        lab.tx(0, &f)
            .ret(TC_ACT_SHOT)
            .verdicts(&[(TX, Verdict::DropSpoofedNd, 1)])
            .only(&[(0, tx_dropped())]);
    });
}
