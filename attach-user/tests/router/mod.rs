//! The router programs under BPF_PROG_TEST_RUN: the gateway's ARP/ND
//! answers byte for byte, forwarding decisions by the node's tables (set up
//! in the test's namespace), TTL / hop limit and checksum.

use crate::common::{frames::*, lab::*, outcome::*, router::*, *};
use attach_common::{Direction::Rx as RX, Direction::Tx as TX, MacAddr, Verdict};

const GW4: [u8; 4] = [169, 254, 1, 1];
const GW6: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const EXT4: [u8; 4] = [10, 77, 0, 1];
const NODE4: [u8; 4] = [10, 77, 0, 254];

fn v4(last: u8) -> [u8; 4] {
    [10, 88, 0, last]
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// Two endpoints: 10.88.0.11/fd88::11 and 10.88.0.12/fd88::12.
fn two() -> Lab {
    RouterScenario::new()
        .endpoint(&["10.88.0.11", "fd88::11"])
        .endpoint(&["10.88.0.12", "fd88::12"])
        .build()
}

fn ping6(dst: MacAddr, src: MacAddr, sip: [u8; 16], dip: [u8; 16]) -> Vec<u8> {
    ipv6_icmpv6(dst, src, sip, dip, 128, b"ping")
}

// ---------------------------------------------------------------------------
// The gateway's answers.

/// "Who has 169.254.1.1?" from the container: the reply, from the host
/// side's MAC, back into the container. Also for any other address it
/// takes for on-link (the node routes everything).
#[test]
fn gateway_arp_is_answered_byte_for_byte() {
    in_netns(|| {
        let mut lab = two();
        let c1 = ep_mac(0);
        for target in [GW4, v4(99), EXT4] {
            let f = arp_request(c1, v4(11), target);
            let (out, reply) = lab.rt_tx(0, &f);
            out.ret(TC_ACT_REDIRECT)
                .verdicts(&[(TX, Verdict::NeighReply, 1)])
                .only(&[(0, tx_bc(len(&f), 0))])
                .arrives_at(&mut lab, Target::Endpoint(0));
            assert_eq!(
                reply,
                arp_reply(c1, gw_mac(0), target, v4(11)),
                "the reply for {target:?}"
            );
        }
    });
}

/// ARP probes (sender 0.0.0.0: duplicate detection) and announcements
/// (sender = target) are not answered: the node's stack has them.
#[test]
fn arp_probes_and_announcements_are_not_answered() {
    in_netns(|| {
        let mut lab = two();
        let c1 = ep_mac(0);
        for f in [
            arp_request(c1, [0; 4], v4(11)),
            arp_request(c1, v4(11), v4(11)),
        ] {
            let (out, after) = lab.rt_tx(0, &f);
            out.ret(TC_ACT_UNSPEC).verdicts(&[(TX, Verdict::ToHost, 1)]);
            assert_eq!(after, f, "untouched");
        }
    });
}

/// A neighbour solicitation for fe80::1: a solicited, overriding
/// advertisement flagged as a router's, from the host side's MAC, with a
/// valid checksum. DAD (from ::) is not answered.
#[test]
fn gateway_neighbour_solicitation_is_answered_byte_for_byte() {
    in_netns(|| {
        let mut lab = two();
        let c1 = ep_mac(0);
        let ll = ll6(0x11);
        let f = ns(c1, ll, GW6);
        let (out, na) = lab.rt_tx(0, &f);
        out.ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::NeighReply, 1)])
            .only(&[(0, tx_mc(len(&f), 0))])
            .arrives_at(&mut lab, Target::Endpoint(0));
        let mut body = GW6.to_vec();
        body.extend_from_slice(&[2, 1]);
        body.extend_from_slice(&gw_mac(0));
        let want = ipv6_icmpv6_with_flags(c1, gw_mac(0), GW6, ll, 136, 0xe0, &body);
        assert_eq!(na, want, "the advertisement");
        // Unicast (neighbour unreachability detection) is answered too.
        let mut uni = f.clone();
        uni[..6].copy_from_slice(&gw_mac(0));
        let (out, na) = lab.rt_tx(0, &uni);
        out.ret(TC_ACT_REDIRECT)
            .arrives_at(&mut lab, Target::Endpoint(0));
        assert_eq!(na, want, "the advertisement to a unicast solicitation");
        let dad = ns(c1, [0; 16], v6("fd88::11"));
        let (out, _) = lab.rt_tx(0, &dad);
        out.ret(TC_ACT_UNSPEC).verdicts(&[(TX, Verdict::ToHost, 1)]);
    });
}

// ---------------------------------------------------------------------------
// Forwarding from a container.

/// To the host on the wire (through the uplink's neighbour): redirected to
/// its next hop, TTL 64 → 63 with the checksum still valid; IPv6 hop limit
/// down by one.
#[test]
fn forward_out_of_the_uplink_decrements_ttl() {
    in_netns(|| {
        let mut lab = two();
        let pm = lab.parents[0].mac;
        let (c1, gw) = (ep_mac(0), gw_mac(0));
        let f = ipv4_udp(gw, c1, v4(11), EXT4, 7, b"out");
        let (out, after) = lab.rt_tx(0, &f);
        out.ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::Routed, 1)])
            .only(&[(0, tx_uc(len(&f)))])
            .arrives_as(&mut lab, Target::Wire, &by_neighbour(&after, pm));
        assert_eq!(after[22], 63, "TTL");
        assert!(ipv4_csum_ok(&after, 14), "checksum after the TTL change");
        assert_eq!(after[..22], f[..22], "only the TTL and checksum change");
        assert_eq!(after[26..], f[26..]);

        let f = ping6(gw, c1, v6("fd88::11"), v6("fd77::1"));
        let (out, after) = lab.rt_tx(0, &f);
        out.ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::Routed, 1)])
            .arrives_as(&mut lab, Target::Wire, &by_neighbour(&after, pm));
        assert_eq!(after[21], f[21] - 1, "hop limit");
        assert_eq!(after[..21], f[..21]);
        assert_eq!(after[22..], f[22..]);
    });
}

/// To another router endpoint: straight into it, MACs rewritten from the
/// node's tables (its host side → its container), TTL down by one;
/// counted on both endpoints.
#[test]
fn forward_to_another_endpoint_rewrites_macs_and_ttl() {
    in_netns(|| {
        let mut lab = two();
        let (c1, gw) = (ep_mac(0), gw_mac(0));
        for f in [
            ipv4_udp(gw, c1, v4(11), v4(12), 7, b"c2c"),
            ping6(gw, c1, v6("fd88::11"), v6("fd88::12")),
        ] {
            let n = len(&f);
            let (out, after) = lab.rt_tx(0, &f);
            out.ret(TC_ACT_REDIRECT)
                .verdicts(&[(TX, Verdict::ToEndpoint, 1)])
                .only(&[(0, tx_uc(n)), (1, rx_uc(n))])
                .arrives_at(&mut lab, Target::Endpoint(1));
            assert_eq!(after[..6], ep_mac(1), "destination: c2's MAC");
            assert_eq!(after[6..12], gw_mac(1), "source: c2's gateway");
            if f[12..14] == [8, 0] {
                assert_eq!(after[22], 63);
                assert!(ipv4_csum_ok(&after, 14));
            } else {
                assert_eq!(after[21], f[21] - 1);
            }
        }
    });
}

/// What the fast path leaves to the node's stack, untouched: the node's
/// own address, an expiring TTL (the stack sends the ICMP error), a
/// blackhole, an address the node has no route for.
#[test]
fn the_stack_keeps_local_expiring_and_unroutable_packets() {
    in_netns(|| {
        let mut lab = two();
        let (c1, gw) = (ep_mac(0), gw_mac(0));
        for f in [
            ipv4_udp(gw, c1, v4(11), NODE4, 7, b"node"),
            ipv4_udp_ttl(gw, c1, v4(11), EXT4, 1),
            ipv4_udp(gw, c1, v4(11), [192, 0, 2, 7], 7, b"bh"),
            ipv4_udp(gw, c1, v4(11), [198, 51, 100, 1], 7, b"none"),
            ping6(gw, c1, v6("fd88::11"), v6("fd77::fe")),
        ] {
            let (out, after) = lab.rt_tx(0, &f);
            out.ret(TC_ACT_UNSPEC)
                .verdicts(&[(TX, Verdict::ToHost, 1)])
                .only(&[(0, tx_uc(len(&f)))]);
            assert_eq!(after, f, "untouched");
        }
    });
}

/// A source MAC or address that is not the endpoint's: dropped.
#[test]
fn spoofed_sources_are_dropped() {
    in_netns(|| {
        let mut lab = two();
        let (c1, gw) = (ep_mac(0), gw_mac(0));
        for f in [
            ipv4_udp(gw, ep_mac(1), v4(11), EXT4, 7, b"mac"),
            ipv4_udp(gw, c1, v4(12), EXT4, 7, b"ip"),
            ping6(gw, c1, v6("fd88::12"), v6("fd77::1")),
            arp_request(c1, v4(12), GW4),
        ] {
            let (out, _) = lab.rt_tx(0, &f);
            out.ret(TC_ACT_SHOT)
                .verdicts(&[(TX, Verdict::DropSpoofed, 1)])
                .only(&[(0, tx_dropped())]);
        }
    });
}

/// Multicast (router solicitations, MLD) and frames not to the gateway go
/// to the node's stack; a device that is no router port is not ours.
#[test]
fn multicast_and_other_macs_go_to_the_stack() {
    in_netns(|| {
        let mut lab = two();
        let c1 = ep_mac(0);
        let all_routers = v6("ff02::2");
        let rs = ipv6_icmpv6(
            ipv6_multicast_mac(all_routers),
            c1,
            ll6(0x11),
            all_routers,
            133,
            &[],
        );
        let other = ipv4_udp([0x02, 9, 9, 9, 9, 9], c1, v4(11), EXT4, 7, b"x");
        for f in [rs, other] {
            let (out, after) = lab.rt_tx(0, &f);
            out.ret(TC_ACT_UNSPEC).verdicts(&[(TX, Verdict::ToHost, 1)]);
            assert_eq!(after, f);
        }
        let stray = lab.stray;
        lab.tc(
            attach::datapath::PROG_RT_TX,
            stray,
            0,
            &ipv4_udp(gw_mac(0), c1, v4(11), EXT4, 7, b"x"),
        )
        .ret(TC_ACT_UNSPEC)
        .verdicts(&[(TX, Verdict::NotOurs, 1)]);
    });
}

// ---------------------------------------------------------------------------
// Inbound on the uplink.

/// What the node routes to an endpoint goes straight in: MACs from the
/// node's tables, TTL down by one, counted on the endpoint.
#[test]
fn inbound_to_an_endpoint_is_pushed_in() {
    in_netns(|| {
        let mut lab = two();
        let pm = lab.parents[0].mac;
        for (i, f) in [
            (1, ipv4_udp(pm, EXT_MAC, EXT4, v4(12), 7, b"in")),
            (0, ping6(pm, EXT_MAC, v6("fd77::1"), v6("fd88::11"))),
        ] {
            let n = len(&f);
            let (out, after) = lab.rt_in(&f);
            out.ret(TC_ACT_REDIRECT)
                .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
                .only(&[(i, rx_uc(n))])
                .arrives_at(&mut lab, Target::Endpoint(i));
            assert_eq!(after[..6], ep_mac(i));
            assert_eq!(after[6..12], gw_mac(i));
            if f[12..14] == [8, 0] {
                assert_eq!(after[22], 63);
                assert!(ipv4_csum_ok(&after, 14));
            } else {
                assert_eq!(after[21], f[21] - 1);
            }
        }
    });
}

/// Everything else on the uplink passes untouched and uncounted: the
/// node's own traffic, other hosts' frames, broadcasts, frames the
/// datapath marked, an expiring TTL, routes out of other devices.
#[test]
fn inbound_other_traffic_passes_uncounted() {
    in_netns(|| {
        let mut lab = two();
        let pm = lab.parents[0].mac;
        for f in [
            ipv4_udp(pm, EXT_MAC, EXT4, NODE4, 7, b"node"),
            ipv4_udp([0x02, 9, 9, 9, 9, 9], EXT_MAC, EXT4, v4(11), 7, b"other"),
            arp_request(EXT_MAC, EXT4, v4(11)),
            ipv4_udp_ttl(pm, EXT_MAC, EXT4, v4(11), 1),
            ipv4_udp(pm, EXT_MAC, EXT4, [10, 77, 0, 5], 7, b"back out"),
        ] {
            let (out, after) = lab.rt_in(&f);
            out.ret(TC_ACT_UNSPEC).nothing_counted();
            assert_eq!(after, f);
        }
        let p = lab.parent();
        lab.tc(
            attach::datapath::PROG_RT_IN,
            p,
            attach_common::DATAPATH_MARK,
            &ipv4_udp(pm, EXT_MAC, EXT4, v4(11), 7, b"marked"),
        )
        .ret(TC_ACT_UNSPEC)
        .nothing_counted();
    });
}

/// Random frames from a container never crash the program, never reach an
/// endpoint unless addressed to one it routes, and never lose a counter.
#[test]
fn random_frames_from_a_container() {
    in_netns(|| {
        let mut lab = two();
        let (c1, gw) = (ep_mac(0), gw_mac(0));
        let mut rng = XorShift::new(0x7017);
        let mut bad = Vec::new();
        for k in 0..300 {
            let n = rng.range(14, 160) as usize;
            let mut f = vec![0u8; n];
            rng.fill(&mut f);
            f[..6].copy_from_slice(&gw);
            f[6..12].copy_from_slice(&c1);
            let et: u16 = [0x0800, 0x86dd, 0x0806, 0x1234][rng.range(0, 3) as usize];
            f[12..14].copy_from_slice(&et.to_be_bytes());
            if et == 0x0800 && n >= 34 {
                f[14] = 0x45;
                f[26..30].copy_from_slice(&v4(11));
                if rng.range(0, 1) == 0 {
                    f[30..34].copy_from_slice(&v4(12));
                }
            }
            let h = lab.eps[0].host_ifindex;
            let got = match lab.try_tc(attach::datapath::PROG_RT_TX, h, 0, &f, 1) {
                Ok((o, _)) => o,
                Err(_) if (et == 0x0800 && n < 34) || (et == 0x86dd && n < 54) => continue,
                Err(e) => {
                    bad.push(format!("frame {k}: refused: {e:?}"));
                    continue;
                }
            };
            let to_c2 = et == 0x0800 && n >= 34 && f[30..34] == v4(12) && f[22] > 1;
            if got.eps[1].rx_packets > 0 && !to_c2 {
                bad.push(format!("frame {k}: {} reached c2", got.what));
            }
            let counted = got.eps[0].tx_packets + got.eps[0].tx_dropped;
            if counted == 0 {
                bad.push(format!("frame {k}: {} not counted", got.what));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    });
}

/// A routed frame as it leaves the uplink: `bpf_redirect_neigh` gives it
/// the neighbour's MAC and the uplink's.
fn by_neighbour(after: &[u8], uplink: MacAddr) -> Vec<u8> {
    let mut f = after.to_vec();
    f[..6].copy_from_slice(&EXT_MAC);
    f[6..12].copy_from_slice(&uplink);
    f
}
