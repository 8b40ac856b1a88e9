//! `attach_rx` on the parent: unicast by destination MAC, broadcast and
//! multicast flooded by the macvlan modes' rules, reflections of the
//! endpoints' own floods, and frames that are not ours.

use attach::datapath::PROG_RX;
use attach_common::{
    DATAPATH_MARK, Direction::Rx as RX, EndpointStats, MODE_BRIDGE, MODE_PASSTHRU, MODE_PRIVATE,
    MODE_VEPA, Verdict,
};

use super::*;
use crate::common::{outcome::*, scenario::*, *};

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
                .only(&[(0, rx_uc(len(&f)))])
                .arrives_at(&mut lab, Target::Endpoint(0));
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
                .only(&[(0, rx_uc(len(&f)))])
                .arrives_at(&mut lab, Target::Endpoint(0));
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
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .arrives_at(&mut lab, Target::Endpoint(2));
    });
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
            .only(&[(3, rx_bc(len(&f)))])
            .arrives_at(&mut lab, Target::Endpoint(3));
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
            .only(&[(0, rx_bc(len(&f)))])
            .arrives_at(&mut lab, Target::Endpoint(0));
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
            .only(&[(3, rx_mc(len(&f)))])
            .arrives_at(&mut lab, Target::Endpoint(3));
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
            .only(&[(2, rx_uc(len(&f)))])
            .arrives_at(&mut lab, Target::Endpoint(2));
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
            .only(&[(1, rx_uc(len(&f)))])
            .arrives_at(&mut lab, Target::Endpoint(1));
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
            .arrives_at(&mut lab, Target::Endpoint(0))
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
                // The first few, run for real: where the model says.
                let to: Vec<usize> = (0..want.eps.len())
                    .filter(|&j| want.eps[j].1.rx_packets > 0)
                    .map(|j| want.eps[j].0)
                    .collect();
                if redirects <= crate::common::live::FUZZ_OBSERVED && got.diff(&want).is_empty() {
                    assert_eq!(to.len(), 1, "frame {i}: a redirect to one endpoint");
                    got.arrives_at(&mut lab, Target::Endpoint(to[0]));
                }
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
