//! The ipvlan programs under BPF_PROG_TEST_RUN, one test per rule of the
//! ipvlan section of shared/docs/semantics.md (plus the node's answers for
//! l3 endpoints and the "up" rule), frame by frame, with counters.
//!
//! Same harness as the macvlan tests: root, bpffs, a fresh network
//! namespace per test with real devices, routes and neighbours.

mod fuzz;
mod headers;

use crate::common::{frames::*, ipvlan::*, lab::*, live::FUZZ_OBSERVED, outcome::*, *};
use attach_common::{
    DATAPATH_MARK, Direction::Rx as RX, Direction::Tx as TX, EndpointStats, IPVL_F_PRIVATE,
    IPVL_F_VEPA, IPVL_MODE_L2, IPVL_MODE_L3, IPVL_MODE_L3S, MacAddr, Verdict,
};

const OTHER: MacAddr = [0x02, 0, 0, 0, 0, 0x0b];

fn v4(last: u8) -> [u8; 4] {
    [10, 77, 0, last]
}

/// `fd77::<last>`, written as the addresses are (11 is `fd77::11`).
fn v6(last: u8) -> [u8; 16] {
    format!("fd77::{last}")
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets()
}

/// Two endpoints, 10.77.0.11/fd77::11 and 10.77.0.12/fd77::12.
fn port(mode: u8, flags: u8) -> Lab {
    IpvlanScenario::new(mode, flags)
        .endpoint(&["10.77.0.11", "fd77::11"])
        .endpoint(&["10.77.0.12", "fd77::12"])
        .build()
}

fn udp4(dst: MacAddr, src: MacAddr, sip: [u8; 4], dip: [u8; 4]) -> Vec<u8> {
    ipv4_udp(dst, src, sip, dip, 5353, b"hello, ipvlan")
}

fn ping6(dst: MacAddr, src: MacAddr, sip: [u8; 16], dip: [u8; 16]) -> Vec<u8> {
    ipv6_icmpv6(dst, src, sip, dip, 128, b"ping")
}

// ---------------------------------------------------------------------------
// Receive: attach_ipvl_rx on the parent.

/// "l3: demux by destination IP; no match → master" (and l2 unicast "as
/// l3"), IPv4 and IPv6, for every mode.
#[test]
fn rx_unicast_is_demuxed_by_destination_ip() {
    for mode in [IPVL_MODE_L2, IPVL_MODE_L3] {
        in_netns(move || {
            let mut lab = port(mode, 0);
            let pm = lab.parent_mac();
            for (i, f) in [
                (0, udp4(pm, OUTSIDE, EXT_V4, v4(11))),
                (1, udp4(pm, OUTSIDE, EXT_V4, v4(12))),
                (1, ping6(pm, OUTSIDE, v6(1), v6(12))),
                (0, ping6(pm, OUTSIDE, v6(1), v6(11))),
            ] {
                lab.ipvl_rx(&f)
                    .ret(TC_ACT_REDIRECT)
                    .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
                    .only(&[(i, rx_uc(len(&f)))])
                    .arrives_at(&mut lab, Target::Endpoint(i));
            }
            // Nobody's address: the node's.
            for f in [
                udp4(pm, OUTSIDE, EXT_V4, v4(13)),
                ping6(pm, OUTSIDE, v6(1), v6(13)),
                udp4(pm, OUTSIDE, EXT_V4, [10, 77, 0, 254]),
            ] {
                lab.ipvl_rx(&f)
                    .ret(TC_ACT_UNSPEC)
                    .verdicts(&[(RX, Verdict::ToHost, 1)])
                    .only(&[]);
            }
        });
    }
}

/// "ARP by target IP": a unicast ARP reply to the shared MAC (l2), and in
/// l3 even a broadcast request (from the node: no answer from us).
#[test]
fn rx_arp_is_demuxed_by_target_ip() {
    in_netns(|| {
        let mut lab = port(IPVL_MODE_L2, 0);
        let pm = lab.parent_mac();
        let f = arp_reply(pm, OUTSIDE, EXT_V4, v4(12));
        lab.ipvl_rx(&f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .only(&[(1, rx_uc(len(&f)))])
            .arrives_at(&mut lab, Target::Endpoint(1));
    });
    in_netns(|| {
        let mut lab = port(IPVL_MODE_L3, 0);
        let pm = lab.parent_mac();
        let f = arp_request(pm, [10, 77, 0, 254], v4(11));
        lab.ipvl_rx(&f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .only(&[(0, rx_bc(len(&f)))])
            .arrives_at(&mut lab, Target::Endpoint(0));
    });
}

/// "DAD NS by target": a solicitation from `::` goes to the owner of its
/// target (l3: multicast is demuxed like unicast).
#[test]
fn rx_dad_solicitation_is_demuxed_by_target() {
    in_netns(|| {
        let mut lab = port(IPVL_MODE_L3, 0);
        let f = ns(OUTSIDE, [0; 16], v6(12));
        lab.ipvl_rx(&f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .only(&[(1, rx_mc(len(&f)))])
            .arrives_at(&mut lab, Target::Endpoint(1));
        // Another ICMPv6 message from `::` is looked up by nothing.
        let all = ALL_NODES;
        let f = ipv6_icmpv6(ipv6_multicast_mac(all), OUTSIDE, [0; 16], all, 143, &[0; 4]);
        lab.ipvl_rx(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::ToHost, 1)])
            .only(&[]);
    });
}

/// "l2: multicast from outside is cloned to the slaves and always passed to
/// the master"; an endpoint's own multicast reflected back is not cloned.
#[test]
fn rx_l2_multicast_from_outside_reaches_every_endpoint() {
    in_netns(|| {
        let mut lab = port(IPVL_MODE_L2, 0);
        let pm = lab.parent_mac();
        let before = lab.deliveries();
        let f = arp_request(OUTSIDE, EXT_V4, v4(99));
        let n = len(&f);
        lab.ipvl_rx(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)])
            .only(&[(0, rx_bc(n)), (1, rx_bc(n))]);
        let got: Vec<u64> = lab
            .deliveries()
            .iter()
            .zip(&before)
            .map(|(a, b)| a - b)
            .collect();
        assert_eq!(got, [1, 1], "clones delivered");
        let f = ipv6_icmpv6(
            ipv6_multicast_mac(ALL_NODES),
            OUTSIDE,
            v6(1),
            ALL_NODES,
            134,
            &[0; 8],
        );
        let n = len(&f);
        lab.ipvl_rx(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)])
            .only(&[(0, rx_mc(n)), (1, rx_mc(n))]);
        // The node's own broadcast (its MAC, not an endpoint's address),
        // reflected by the switch: from outside.
        let f = arp_request(pm, [10, 77, 0, 254], v4(11));
        lab.ipvl_rx(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)]);
        // An endpoint's own broadcast reflected back: not external.
        let f = arp_request(pm, v4(11), EXT_V4);
        lab.ipvl_rx(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::ToHost, 1)])
            .only(&[]);
    });
}

/// Frames for another MAC are not ipvlan's: passed on, uncounted, for the
/// macvlan program (or the node) after us.
#[test]
fn rx_other_macs_pass_uncounted() {
    in_netns(|| {
        let mut lab = port(IPVL_MODE_L2, 0);
        for f in [
            udp4(OTHER, OUTSIDE, EXT_V4, v4(11)),
            ping6(OTHER, OUTSIDE, v6(1), v6(12)),
        ] {
            lab.ipvl_rx(&f).ret(TC_ACT_UNSPEC).nothing_counted();
        }
        let stray = lab.stray;
        lab.tc(
            attach::datapath::PROG_IPVL_RX,
            stray,
            0,
            &udp4(OTHER, OUTSIDE, EXT_V4, v4(11)),
        )
        .ret(TC_ACT_UNSPEC)
        .verdicts(&[(RX, Verdict::NotOurs, 1)]);
    });
}

/// "Addresses count only while the slave is up": a down endpoint's
/// address is nobody's.
#[test]
fn rx_a_down_endpoints_address_goes_to_the_node() {
    in_netns(|| {
        let mut lab = IpvlanScenario::new(IPVL_MODE_L2, 0)
            .endpoint(&["10.77.0.11", "fd77::11"])
            .endpoint(&["10.77.0.12", "fd77::12"])
            .down()
            .build();
        let pm = lab.parent_mac();
        for f in [
            udp4(pm, OUTSIDE, EXT_V4, v4(12)),
            ping6(pm, OUTSIDE, v6(1), v6(12)),
        ] {
            lab.ipvl_rx(&f)
                .ret(TC_ACT_UNSPEC)
                .verdicts(&[(RX, Verdict::ToHost, 1)])
                .only(&[]);
        }
        let f = udp4(pm, OUTSIDE, EXT_V4, v4(11));
        lab.ipvl_rx(&f)
            .ret(TC_ACT_REDIRECT)
            .arrives_at(&mut lab, Target::Endpoint(0));
    });
}

/// l3s: IP traffic for an endpoint enters the node's stack through the
/// endpoint's veth, marked for the rule that routes it there.
#[test]
fn rx_l3s_goes_through_the_nodes_stack() {
    in_netns(|| {
        let mut lab = port(IPVL_MODE_L3S, 0);
        let pm = lab.parent_mac();
        let f = udp4(pm, OUTSIDE, EXT_V4, v4(12));
        lab.ipvl_rx(&f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToHost, 1)])
            .only(&[(1, rx_uc(len(&f)))])
            .mark(DATAPATH_MARK)
            .arrives_at(&mut lab, Target::NodeVia(1));
    });
}

/// Frames the datapath hands to the node pass; the mark is cleared when no
/// macvlan program follows on the parent.
#[test]
fn rx_datapath_mark_passes() {
    in_netns(|| {
        let mut lab = port(IPVL_MODE_L2, 0);
        let pm = lab.parent_mac();
        let p = lab.parent();
        lab.tc(
            attach::datapath::PROG_IPVL_RX,
            p,
            DATAPATH_MARK,
            &udp4(pm, OUTSIDE, EXT_V4, v4(11)),
        )
        .ret(TC_ACT_UNSPEC)
        .nothing_counted()
        .mark(0);
    });
}

/// The node answers ARP requests for an l3 endpoint's address from other
/// hosts, with the parent's MAC, out of the parent.
#[test]
fn rx_l3_arp_requests_are_answered() {
    in_netns(|| {
        let mut lab = port(IPVL_MODE_L3, 0);
        let pm = lab.parent_mac();
        let f = arp_request(OUTSIDE, EXT_V4, v4(12));
        let (out, reply) = lab.ipvl_rx_out(&f);
        out.ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::NeighReply, 1)])
            .only(&[])
            .arrives_at(&mut lab, Target::Wire);
        assert_eq!(reply[..42], arp_reply(OUTSIDE, pm, v4(12), EXT_V4)[..42]);
        // Nobody's address: no answer, the node has it.
        let f = arp_request(OUTSIDE, EXT_V4, v4(99));
        lab.ipvl_rx(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::ToHost, 1)]);
    });
    in_netns(|| {
        // l2 endpoints answer for themselves.
        let mut lab = port(IPVL_MODE_L2, 0);
        lab.ipvl_rx(&arp_request(OUTSIDE, EXT_V4, v4(12)))
            .verdicts(&[(RX, Verdict::Flood, 1)]);
    });
}

/// ... and neighbour solicitations, with a valid solicited, overriding
/// advertisement carrying the parent's MAC.
#[test]
fn rx_l3_neighbour_solicitations_are_answered() {
    in_netns(|| {
        let mut lab = port(IPVL_MODE_L3S, IPVL_F_PRIVATE);
        let pm = lab.parent_mac();
        let f = ns(OUTSIDE, v6(1), v6(11));
        let (out, na) = lab.ipvl_rx_out(&f);
        out.ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::NeighReply, 1)])
            .only(&[])
            .arrives_at(&mut lab, Target::Wire);
        let mut body = v6(11).to_vec();
        body.extend_from_slice(&[2, 1]);
        body.extend_from_slice(&pm);
        // Solicited and override flags; checksum over the final message.
        let want = ipv6_icmpv6_with_flags(OUTSIDE, pm, v6(11), v6(1), 136, 0x60, &body);
        assert_eq!(na, want, "the advertisement");
    });
}

// ---------------------------------------------------------------------------
// Transmit, l2: attach_ipvl_tx.

/// "Not VEPA and destination MAC == source MAC: look up the destination
/// IP (ARP: target). Hit and private → drop; hit → deliver."
#[test]
fn tx_l2_to_another_endpoints_address() {
    for (flags, private) in [(0, false), (IPVL_F_PRIVATE, true)] {
        in_netns(move || {
            let mut lab = port(IPVL_MODE_L2, flags);
            let pm = lab.parent_mac();
            for f in [
                udp4(pm, pm, v4(11), v4(12)),
                ping6(pm, pm, v6(11), v6(12)),
                arp_reply(pm, pm, v4(11), v4(12)),
            ] {
                let n = len(&f);
                if private {
                    lab.ipvl_tx(0, &f)
                        .ret(TC_ACT_SHOT)
                        .verdicts(&[(TX, Verdict::DropPrivate, 1)])
                        .only(&[(
                            0,
                            EndpointStats {
                                tx_dropped: 1,
                                ..tx_uc(n)
                            },
                        )]);
                } else {
                    lab.ipvl_tx(0, &f)
                        .ret(TC_ACT_REDIRECT)
                        .verdicts(&[(TX, Verdict::ToEndpoint, 1)])
                        .only(&[(0, tx_uc(n)), (1, rx_uc(n))])
                        .arrives_at(&mut lab, Target::Endpoint(1));
                }
            }
        });
    }
}

/// "Miss → deliver to the master (host stack)": into the parent's ingress,
/// marked so the receive programs pass it.
#[test]
fn tx_l2_miss_goes_to_the_node() {
    in_netns(|| {
        let mut lab = port(IPVL_MODE_L2, IPVL_F_PRIVATE);
        let pm = lab.parent_mac();
        for f in [
            udp4(pm, pm, v4(11), [10, 77, 0, 254]),
            ping6(
                pm,
                pm,
                v6(11),
                NODE_V6.parse::<std::net::Ipv6Addr>().unwrap().octets(),
            ),
        ] {
            lab.ipvl_tx(0, &f)
                .ret(TC_ACT_REDIRECT)
                .verdicts(&[(TX, Verdict::ToHost, 1)])
                .only(&[(0, tx_uc(len(&f)))])
                .mark(DATAPATH_MARK)
                .arrives_at(&mut lab, Target::Node);
        }
    });
}

/// VEPA: no local lookup; out of the parent.
#[test]
fn tx_l2_vepa_sends_everything_out() {
    in_netns(|| {
        let mut lab = port(IPVL_MODE_L2, IPVL_F_VEPA);
        let pm = lab.parent_mac();
        for f in [
            udp4(pm, pm, v4(11), v4(12)),
            udp4(pm, pm, v4(11), [10, 77, 0, 254]),
        ] {
            lab.ipvl_tx(0, &f)
                .ret(TC_ACT_REDIRECT)
                .verdicts(&[(TX, Verdict::ToParent, 1)])
                .only(&[(0, tx_uc(len(&f)))])
                .mark(DATAPATH_MARK)
                .arrives_at(&mut lab, Target::Wire);
        }
    });
}

/// "Broadcast/multicast: delivered to the other slaves, then sent on the
/// master. The private flag is not checked here." Other unicast: out.
#[test]
fn tx_l2_multicast_reaches_the_others_and_the_wire() {
    for flags in [0, IPVL_F_PRIVATE, IPVL_F_VEPA] {
        in_netns(move || {
            let mut lab = IpvlanScenario::new(IPVL_MODE_L2, flags)
                .endpoint(&["10.77.0.11"])
                .endpoint(&["10.77.0.12"])
                .endpoint(&["10.77.0.13"])
                .build();
            let pm = lab.parent_mac();
            let f = arp_request(pm, v4(11), EXT_V4);
            let n = len(&f);
            lab.ipvl_tx(0, &f)
                .ret(TC_ACT_REDIRECT)
                .verdicts(&[(TX, Verdict::ToParent, 1)])
                .only(&[(0, tx_bc(n, 2)), (1, rx_bc(n)), (2, rx_bc(n))])
                .mark(DATAPATH_MARK);
            let f = udp4(OUTSIDE, pm, v4(11), EXT_V4);
            lab.ipvl_tx(0, &f)
                .ret(TC_ACT_REDIRECT)
                .verdicts(&[(TX, Verdict::ToParent, 1)])
                .only(&[(0, tx_uc(len(&f)))])
                .arrives_at(&mut lab, Target::Wire);
        });
    }
}

// ---------------------------------------------------------------------------
// Transmit, l3/l3s.

/// "Destination IP is a slave (not VEPA): private → drop, else deliver".
#[test]
fn tx_l3_local_delivery() {
    for (mode, flags) in [
        (IPVL_MODE_L3, 0),
        (IPVL_MODE_L3S, 0),
        (IPVL_MODE_L3, IPVL_F_PRIVATE),
        (IPVL_MODE_L3S, IPVL_F_PRIVATE),
    ] {
        in_netns(move || {
            let mut lab = port(mode, flags);
            let pm = lab.parent_mac();
            for f in [udp4(pm, pm, v4(11), v4(12)), ping6(pm, pm, v6(11), v6(12))] {
                let n = len(&f);
                if flags == IPVL_F_PRIVATE {
                    lab.ipvl_tx(0, &f)
                        .ret(TC_ACT_SHOT)
                        .verdicts(&[(TX, Verdict::DropPrivate, 1)]);
                } else {
                    lab.ipvl_tx(0, &f)
                        .ret(TC_ACT_REDIRECT)
                        .verdicts(&[(TX, Verdict::ToEndpoint, 1)])
                        .only(&[(0, tx_uc(n)), (1, rx_uc(n))])
                        .arrives_at(&mut lab, Target::Endpoint(1));
                }
            }
        });
    }
}

/// "Otherwise ... drop broadcast/multicast, route in the master's
/// namespace with the master as output device": by the node's tables
/// (`bpf_fib_lookup`), out of the parent with the node's neighbour
/// (`bpf_redirect_neigh`); the node's own address goes to its stack; no
/// route, a drop. VEPA routes even another endpoint's address.
#[test]
fn tx_l3_routes_through_the_node() {
    in_netns(|| {
        let mut lab = port(IPVL_MODE_L3, IPVL_F_VEPA);
        let pm = lab.parent_mac();
        let ext6: [u8; 16] = EXT_V6.parse::<std::net::Ipv6Addr>().unwrap().octets();
        for (f, neighbour) in [
            (udp4(pm, pm, v4(11), EXT_V4), true),
            (ping6(pm, pm, v6(11), ext6), true),
            // VEPA: another endpoint, routed too. The node has no
            // neighbour entry for it: for real, an ARP request would leave
            // in its place, so it is not run again.
            (udp4(pm, pm, v4(11), v4(12)), false),
        ] {
            let out = lab.ipvl_tx(0, &f);
            out.ret(TC_ACT_REDIRECT)
                .verdicts(&[(TX, Verdict::Routed, 1)])
                .only(&[(0, tx_uc(len(&f)))]);
            if neighbour {
                // Out of the parent with the neighbour's MAC.
                let mut routed = f.clone();
                routed[..6].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
                out.arrives_as(&mut lab, Target::Wire, &routed);
            }
        }
        // The node's own address, and one it has no route for: its stack
        // decides (delivers the first, drops the second).
        for dst in [[10, 77, 0, 254], [198, 51, 100, 1]] {
            let f = udp4(pm, pm, v4(11), dst);
            lab.ipvl_tx(0, &f)
                .ret(TC_ACT_REDIRECT)
                .verdicts(&[(TX, Verdict::ToHost, 1)])
                .mark(DATAPATH_MARK)
                .arrives_at(&mut lab, Target::Node);
        }
        let f = udp4(pm, pm, v4(11), BLACKHOLE_V4);
        lab.ipvl_tx(0, &f)
            .ret(TC_ACT_SHOT)
            .verdicts(&[(TX, Verdict::DropNoRoute, 1)]);
    });
}

#[test]
fn tx_l3_drops_broadcast_multicast_and_non_ip() {
    in_netns(|| {
        let mut lab = port(IPVL_MODE_L3, 0);
        let pm = lab.parent_mac();
        for f in [
            arp_request(pm, v4(11), EXT_V4),
            ipv4_udp(
                ipv4_multicast_mac([224, 0, 0, 251]),
                pm,
                v4(11),
                [224, 0, 0, 251],
                5353,
                b"m",
            ),
            ipv6_icmpv6(
                ipv6_multicast_mac(ALL_NODES),
                pm,
                v6(11),
                ALL_NODES,
                133,
                &[],
            ),
        ] {
            lab.ipvl_tx(0, &f)
                .ret(TC_ACT_SHOT)
                .verdicts(&[(TX, Verdict::DropMulticast, 1)]);
        }
        let f = eth(pm, pm, 0x88b5, &[0; 46]);
        lab.ipvl_tx(0, &f)
            .ret(TC_ACT_SHOT)
            .verdicts(&[(TX, Verdict::DropParse, 1)]);
    });
}

/// l3s: what is not local goes through the node's stack.
#[test]
fn tx_l3s_passes_to_the_nodes_stack() {
    in_netns(|| {
        let mut lab = port(IPVL_MODE_L3S, 0);
        let pm = lab.parent_mac();
        let f = udp4(pm, pm, v4(11), EXT_V4);
        lab.ipvl_tx(0, &f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(TX, Verdict::ToHost, 1)])
            .only(&[(0, tx_uc(len(&f)))])
            .mark(0);
        // What attach_ipvl_rx routes through the node passes untouched.
        let h = lab.eps[1].host_ifindex;
        lab.tc(
            attach::datapath::PROG_IPVL_TX,
            h,
            DATAPATH_MARK,
            &udp4(pm, OUTSIDE, EXT_V4, v4(12)),
        )
        .ret(TC_ACT_UNSPEC)
        .nothing_counted()
        .mark(DATAPATH_MARK);
    });
}

// ---------------------------------------------------------------------------
// Garbage.

/// Random frames to the shared MAC: never refused, and a delivery only to
/// the endpoint owning the destination address the frame really carries.
#[test]
fn random_frames_are_never_misdelivered() {
    for mode in [IPVL_MODE_L2, IPVL_MODE_L3] {
        in_netns(move || {
            let mut lab = port(mode, 0);
            let pm = lab.parent_mac();
            let mut rng = XorShift::new(0x1b71 + u64::from(mode));
            let mut bad = Vec::new();
            let mut delivered = 0;
            let mut observed = 0;
            for k in 0..300 {
                let n = rng.range(14, 200) as usize;
                let mut f = vec![0u8; n];
                rng.fill(&mut f);
                f[..6].copy_from_slice(&pm);
                let et: u16 = [0x0800, 0x86dd, 0x0806, 0x1234][rng.range(0, 3) as usize];
                f[12..14].copy_from_slice(&et.to_be_bytes());
                // Often a plausible header with an endpoint's address.
                if et == 0x0800 && n >= 34 && rng.range(0, 1) == 0 {
                    f[14] = 0x45;
                    f[30..34].copy_from_slice(&v4(11 + rng.range(0, 1) as u8));
                }
                if et == 0x86dd && n >= 54 && rng.range(0, 1) == 0 {
                    f[14] = 0x60;
                    f[38..54].copy_from_slice(&v6(11 + rng.range(0, 1) as u8));
                }
                let p = lab.parent();
                let got = match lab.try_tc(attach::datapath::PROG_IPVL_RX, p, 0, &f, 1) {
                    Ok((o, _)) => o,
                    // The kernel refuses a test run of a truncated IP header.
                    Err(_) if (et == 0x0800 && n < 34) || (et == 0x86dd && n < 54) => continue,
                    Err(e) => {
                        bad.push(format!("frame {k} ({n} bytes, {f:02x?}): refused: {e:?}"));
                        continue;
                    }
                };
                let owner = |i: usize| {
                    let last = 11 + i as u8;
                    (et == 0x0800
                        && n >= 34
                        && f[14] >> 4 == 4
                        && f[14] & 15 >= 5
                        && f[30..34] == v4(last))
                        || (et == 0x86dd
                            && n >= 54
                            && f[14] >> 4 == 6
                            && f[38..54] == v6(last)
                            && f[22..38] != [0; 16])
                        || (et == 0x0806
                            && n >= 42
                            && f[14..20] == [0, 1, 8, 0, 6, 4]
                            && f[38..42] == v4(last))
                };
                for (i, d) in got.eps.iter().enumerate() {
                    if d.rx_packets > 0 {
                        delivered += 1;
                        if !owner(i) {
                            bad.push(format!("frame {k}: {} went to ep{i}", got.what));
                        } else if got.ret == TC_ACT_REDIRECT && observed < FUZZ_OBSERVED {
                            // Where it really goes, not only what counted.
                            observed += 1;
                            got.arrives_at(&mut lab, Target::Endpoint(i));
                        }
                    }
                }
                if got.ret == TC_ACT_SHOT {
                    bad.push(format!("frame {k}: {} dropped", got.what));
                }
            }
            assert!(bad.is_empty(), "{}", bad.join("\n"));
            assert!(delivered > 20, "the fuzz hardly delivered ({delivered})");
        });
    }
}
