//! `attach_rx_xdp` on the parent: unicast redirected, everything else
//! passed to the stack uncounted, and random frames against the model.

use attach_common::{Direction::Rx as RX, MODE_PASSTHRU, Verdict};

use super::*;
use crate::common::{outcome::*, scenario::*, *};

#[test]
fn xdp_unicast_to_an_endpoint_is_redirected() {
    in_netns(|| {
        let mut lab = four_modes();
        for (i, dst) in [A, B, C, D].into_iter().enumerate() {
            let f = udp_to(dst, OUTSIDE);
            lab.xdp(&f)
                .ret(XDP_REDIRECT)
                .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
                .only(&[(i, rx_uc(len(&f)))])
                .arrives_at(&mut lab, Target::Endpoint(i));
        }
        let f = vlan_tagged(&ipv6_icmpv6(C, OUTSIDE, ll6(9), ll6(3), 128, b"x"), 7);
        lab.xdp(&f)
            .ret(XDP_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .only(&[(2, rx_uc(len(&f)))])
            .arrives_at(&mut lab, Target::Endpoint(2));
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
                .only(&[(0, rx_uc(len(&f)))])
                .arrives_at(&mut lab, Target::Endpoint(0));
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

#[test]
fn xdp_random_frames_follow_the_rules() {
    in_netns(|| {
        let mut lab = four_modes();
        let macs = [A, B, C, D];
        let mut rng = XorShift::new(0xd0_0d_f0_0d);
        let mut failures = Vec::new();
        let mut observed = 0;
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
            if got.ret == XDP_REDIRECT
                && d.is_empty()
                && observed < crate::common::live::FUZZ_OBSERVED
            {
                // The first few, run for real: where the model says.
                observed += 1;
                let to = want.eps.iter().find(|(_, s)| s.rx_packets > 0).map(|e| e.0);
                got.arrives_at(
                    &mut lab,
                    Target::Endpoint(to.expect("a redirect's endpoint")),
                );
            }
            if !d.is_empty() {
                failures.push(format!("frame {i}: {}\n    {}", got.what, d.join("\n    ")));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    });
}
