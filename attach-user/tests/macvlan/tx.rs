//! `attach_tx` on an endpoint's host veth: where unicast and broadcast go
//! by mode, the source checks (MAC, IP, MTU), host access, and random
//! frames against the model.

use attach::datapath::PROG_TX;
use attach_common::{
    DATAPATH_MARK, Direction::Tx as TX, EP_F_HOST_ACCESS, EP_F_SPOOFCHK, EndpointStats,
    MODE_BRIDGE, MODE_PASSTHRU, MODE_PRIVATE, MODE_VEPA, Verdict,
};

use super::*;
use crate::common::{outcome::*, scenario::*, *};

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
            .arrives_at(&mut lab, Target::Endpoint(1))
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
                .arrives_at(&mut lab, Target::Wire)
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
                .arrives_at(&mut lab, Target::Wire)
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
            .only(&[(0, tx_uc(len(&f))), (1, rx_uc(len(&f)))])
            .arrives_at(&mut lab, Target::Endpoint(1));
    });
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
            .only(&[(0, tx_uc(len(&f))), (1, rx_uc(len(&f)))])
            .arrives_at(&mut lab, Target::Endpoint(1));
        let f = udp_to(OUTSIDE, UNKNOWN);
        lab.tx(0, &f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToParent, 1)])
            .only(&[(0, tx_uc(len(&f)))])
            .arrives_at(&mut lab, Target::Wire);
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
            .arrives_at(&mut lab, Target::Node)
            // So attach_rx on the parent's ingress lets it through.
            .mark(DATAPATH_MARK);
        // Without the flag the same frame leaves by the wire.
        let f = udp_to(pmac, B);
        lab.tx(1, &f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToParent, 1)])
            .only(&[(1, tx_uc(len(&f)))])
            .arrives_at(&mut lab, Target::Wire)
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
