//! The nested programs under BPF_PROG_TEST_RUN: tags pushed (single and
//! QinQ) and popped, demux by VLAN, unknown VLANs dropped, and the VLAN
//! rules of nested endpoints on a parent's switch.
//!
//! `bpf_skb_vlan_push` keeps the outermost tag in the skb's metadata, which
//! a test run does not return: after one push the frame's bytes are
//! unchanged, after a QinQ push they carry the inner 802.1Q tag (the
//! S-tag is the metadata one). Test-run frames carry their tags in the
//! packet; the programs read both forms. The namespace tests check the
//! tags on the wire with tcpdump.

use crate::common::{frames::*, lab::*, nested::*, outcome::*, *};
use attach_common::{
    DATAPATH_MARK, Direction::Rx as RX, Direction::Tx as TX, EndpointStats, MacAddr, Verdict,
};

const N1: MacAddr = [0x02, 0, 0, 0, 1, 0];
const N2: MacAddr = [0x02, 0, 0, 0, 2, 0];
const N3: MacAddr = [0x02, 0, 0, 0, 3, 0];

fn udp(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    ipv4_udp(dst, src, [10, 77, 0, 31], [10, 77, 0, 1], 7, b"nested")
}

fn dropped_rx() -> EndpointStats {
    EndpointStats {
        rx_dropped: 1,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------
// In the VM.

fn vm() -> Lab {
    VmScenario::new()
        .endpoint(N1, 100, 0)
        .endpoint(N2, 200, 10)
        .build()
}

/// What a container sends leaves by the uplink with its VLAN: one tag (in
/// the skb's metadata: the bytes are unchanged), or, with QinQ, the S-tag
/// outside (metadata) and the 802.1Q tag inside (in the bytes).
#[test]
fn vm_transmit_pushes_the_tags() {
    in_netns(|| {
        let mut lab = vm();
        let f = udp(OUTSIDE, N1);
        let (out, after) = lab.nest_tx(0, &f);
        out.ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToParent, 1)])
            .only(&[(0, tx_uc(len(&f)))])
            .mark(DATAPATH_MARK)
            // On the wire with its tag (the metadata's).
            .arrives_as(&mut lab, Target::Wire, &vlan_tagged(&f, 100));
        assert_eq!(after, f, "one tag: in the metadata");
        let f = udp(OUTSIDE, N2);
        let (out, after) = lab.nest_tx(1, &f);
        out.ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToParent, 1)])
            .only(&[(1, tx_uc(len(&f)))])
            .arrives_as(&mut lab, Target::Wire, &qinq_tagged(&f, 10, 200));
        assert_eq!(
            after,
            vlan_tagged(&f, 200),
            "QinQ: the inner tag in the bytes"
        );
    });
}

#[test]
fn vm_transmit_drops_spoofed_sources() {
    in_netns(|| {
        let mut lab = vm();
        let f = udp(OUTSIDE, N2);
        let (out, _) = lab.nest_tx(0, &f);
        out.ret(TC_ACT_SHOT)
            .verdicts(&[(TX, Verdict::DropSpoofed, 1)])
            .only(&[(0, tx_dropped())]);
    });
}

/// Tagged frames on the uplink lose their tags and go to the VLAN's
/// container, whatever their destination MAC (broadcasts too).
#[test]
fn vm_receive_pops_and_demuxes_by_vlan() {
    in_netns(|| {
        let mut lab = vm();
        for (i, f, tagged) in [
            (0, udp(N1, OUTSIDE), vlan_tagged(&udp(N1, OUTSIDE), 100)),
            (1, udp(N2, OUTSIDE), qinq_tagged(&udp(N2, OUTSIDE), 10, 200)),
        ] {
            let (out, after) = lab.nest_rx(&tagged);
            out.ret(TC_ACT_REDIRECT)
                .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
                .only(&[(i, rx_uc(len(&f)))])
                .arrives_at(&mut lab, Target::Endpoint(i));
            assert_eq!(after, f, "untagged");
        }
        let bc = arp_request(OUTSIDE, [10, 77, 0, 1], [10, 77, 0, 31]);
        let (out, after) = lab.nest_rx(&vlan_tagged(&bc, 100));
        out.ret(TC_ACT_REDIRECT)
            .only(&[(0, rx_bc(len(&bc)))])
            .arrives_at(&mut lab, Target::Endpoint(0));
        assert_eq!(after, bc);
    });
}

/// Untagged frames (the VM's own), other VLANs, another S-tag, the right
/// VLAN without its S-tag, and frames the datapath marked: not ours,
/// passed untouched and uncounted.
#[test]
fn vm_receive_passes_what_is_not_its_vlans() {
    in_netns(|| {
        let mut lab = vm();
        let f = udp(N1, OUTSIDE);
        for frame in [
            f.clone(),
            vlan_tagged(&f, 300),
            qinq_tagged(&f, 11, 200),
            vlan_tagged(&f, 200),
            qinq_tagged(&f, 10, 100),
        ] {
            let (out, after) = lab.nest_rx(&frame);
            out.ret(TC_ACT_UNSPEC).nothing_counted();
            assert_eq!(after, frame);
        }
        let p = lab.parent();
        lab.tc(
            attach::datapath::PROG_NEST_RX,
            p,
            DATAPATH_MARK,
            &vlan_tagged(&f, 100),
        )
        .ret(TC_ACT_UNSPEC)
        .nothing_counted();
    });
}

// ---------------------------------------------------------------------------
// On the host: the VM's tap, and nested endpoints on the parent's switch.

/// A veth endpoint A, and the tap's VLAN 100 (stripped), VLAN 200 (kept)
/// and VLAN 100 inside S-tag 10 (stripped).
fn host() -> Lab {
    HostScenario::new()
        .veth(A)
        .nested(N1, 100, 0, false)
        .nested(N2, 200, 0, true)
        .nested(N3, 100, 10, false)
        .build()
}

/// VLAN 100 from the tap is endpoint N1: its tag comes off and the switch
/// delivers it to the host's veth endpoint (bridge to bridge).
#[test]
fn tap_pops_and_switches_to_a_host_endpoint() {
    in_netns(|| {
        let mut lab = host();
        let f = udp(A, N1);
        let n = len(&f);
        let (out, after) = lab.nest_tap(&vlan_tagged(&f, 100));
        out.ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToEndpoint, 1)])
            .only(&[(1, tx_uc(n)), (0, rx_uc(n))])
            .arrives_at(&mut lab, Target::Endpoint(0));
        assert_eq!(after, f, "untagged");
    });
}

/// QinQ: both tags come off; out of the parent, marked for its egress.
#[test]
fn tap_pops_both_tags_of_qinq() {
    in_netns(|| {
        let mut lab = host();
        let f = udp(OUTSIDE, N3);
        let (out, after) = lab.nest_tap(&qinq_tagged(&f, 10, 100));
        out.ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToParent, 1)])
            .only(&[(3, tx_uc(len(&f)))])
            .mark(DATAPATH_MARK)
            .arrives_at(&mut lab, Target::Wire);
        assert_eq!(after, f);
    });
}

/// A VLAN the tap has no endpoint for is dropped (the host admits only
/// the VLANs attached); untagged frames are the VM's own: passed.
#[test]
fn tap_drops_unknown_vlans() {
    in_netns(|| {
        let mut lab = host();
        let f = udp(OUTSIDE, N1);
        for frame in [
            vlan_tagged(&f, 300),
            qinq_tagged(&f, 10, 200),
            qinq_tagged(&f, 11, 100),
        ] {
            let (out, _) = lab.nest_tap(&frame);
            out.ret(TC_ACT_SHOT)
                .verdicts(&[(TX, Verdict::DropVlanUnknown, 1)])
                .only(&[]);
        }
        let (out, after) = lab.nest_tap(&f);
        out.ret(TC_ACT_UNSPEC)
            .verdicts(&[(TX, Verdict::NotOurs, 1)]);
        assert_eq!(after, f);
    });
}

/// Each VLAN is its own endpoint with its own policy: another endpoint's
/// MAC, or an address not its own, is dropped.
#[test]
fn tap_drops_spoofed_sources() {
    in_netns(|| {
        let mut lab = host();
        with_ips(&mut lab, 1, &["10.77.0.31"]);
        let wrong_mac = udp(OUTSIDE, N3);
        let wrong_ip = ipv4_udp(OUTSIDE, N1, [10, 77, 0, 99], [10, 77, 0, 1], 7, b"x");
        for f in [wrong_mac, wrong_ip] {
            let (out, _) = lab.nest_tap(&vlan_tagged(&f, 100));
            out.ret(TC_ACT_SHOT)
                .verdicts(&[(TX, Verdict::DropSpoofed, 1)])
                .only(&[(1, tx_dropped())]);
        }
        let ok = udp(OUTSIDE, N1);
        let (out, _) = lab.nest_tap(&vlan_tagged(&ok, 100));
        out.ret(TC_ACT_REDIRECT).arrives_at(&mut lab, Target::Wire);
    });
}

/// A stripping endpoint and a keep-tag one never exchange a frame (either
/// way: dropped as `vlan_mismatch`); two stripping endpoints (VLAN 100,
/// and VLAN 100 in S-tag 10) share the untagged side, so they do, the
/// receiver's tags pushed (its S-tag in the metadata, VLAN 100 in the
/// bytes).
#[test]
fn vlans_are_isolated_on_the_switch() {
    in_netns(|| {
        let mut lab = host();
        let f = udp(N2, N1);
        let (out, _) = lab.nest_tap(&vlan_tagged(&f, 100));
        out.ret(TC_ACT_SHOT)
            .verdicts(&[(TX, Verdict::DropVlan, 1)])
            .only(&[
                (
                    1,
                    EndpointStats {
                        tx_dropped: 1,
                        ..tx_uc(len(&f))
                    },
                ),
                (2, dropped_rx()),
            ]);
        let f = udp(N1, N2);
        let tagged = vlan_tagged(&f, 200);
        let (out, _) = lab.nest_tap(&tagged);
        out.ret(TC_ACT_SHOT)
            .verdicts(&[(TX, Verdict::DropVlan, 1)])
            .only(&[
                (
                    2,
                    EndpointStats {
                        tx_dropped: 1,
                        ..tx_uc(len(&tagged))
                    },
                ),
                (1, dropped_rx()),
            ]);
        let f = udp(N3, N1);
        let n = len(&f);
        let (out, after) = lab.nest_tap(&vlan_tagged(&f, 100));
        out.ret(TC_ACT_REDIRECT)
            .verdicts(&[(TX, Verdict::ToEndpoint, 1)])
            .only(&[(1, tx_uc(n)), (3, rx_uc(n))])
            // Into the VM with both tags (the S-tag the metadata's).
            .arrives_as(&mut lab, Target::Tap, &qinq_tagged(&f, 10, 100));
        assert_eq!(after, vlan_tagged(&f, 100), "N3's tags pushed");
    });
}

/// From the wire (the parent's receive program): a stripping endpoint
/// takes untagged frames and gets its tags pushed; a keep-tag endpoint
/// takes frames tagged with its VLAN as they are; anything else is a
/// `vlan_mismatch` drop.
#[test]
fn wire_frames_get_the_endpoints_tags() {
    in_netns(|| {
        let mut lab = host();
        let f1 = udp(N1, OUTSIDE);
        let (out, after) = lab.tc_out(attach::datapath::PROG_RX, lab.parent(), &f1);
        out.ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .only(&[(1, rx_uc(len(&f1)))])
            .arrives_as(&mut lab, Target::Tap, &vlan_tagged(&f1, 100));
        assert_eq!(after, f1, "one tag: in the metadata");
        let f3 = udp(N3, OUTSIDE);
        let (out, after) = lab.tc_out(attach::datapath::PROG_RX, lab.parent(), &f3);
        out.ret(TC_ACT_REDIRECT)
            .only(&[(3, rx_uc(len(&f3)))])
            .arrives_as(&mut lab, Target::Tap, &qinq_tagged(&f3, 10, 100));
        assert_eq!(after, vlan_tagged(&f3, 100), "QinQ: VLAN 100 in the bytes");
        let f2 = vlan_tagged(&udp(N2, OUTSIDE), 200);
        let (out, after) = lab.tc_out(attach::datapath::PROG_RX, lab.parent(), &f2);
        out.ret(TC_ACT_REDIRECT)
            .only(&[(2, rx_uc(len(&f2)))])
            .arrives_at(&mut lab, Target::Tap);
        assert_eq!(after, f2, "kept as it came");
        for (i, f) in [
            (2, udp(N2, OUTSIDE)),
            (2, vlan_tagged(&udp(N2, OUTSIDE), 100)),
            (1, vlan_tagged(&udp(N1, OUTSIDE), 100)),
        ] {
            let (out, _) = lab.tc_out(attach::datapath::PROG_RX, lab.parent(), &f);
            out.ret(TC_ACT_SHOT)
                .verdicts(&[(RX, Verdict::DropVlan, 1)])
                .only(&[(i, dropped_rx())]);
        }
    });
}

/// A broadcast from the wire reaches the members of its VLAN: the veth
/// endpoint and the two stripping endpoints (two tagged copies out of the
/// tap), not the keep-tag one.
#[test]
fn wire_broadcast_reaches_the_members_of_its_vlan() {
    in_netns(|| {
        let mut lab = host();
        let before = (lab.delivered(0), lab.tap_delivered());
        let bc = arp_request(OUTSIDE, [10, 77, 0, 1], [10, 77, 0, 31]);
        let n = len(&bc);
        let (out, after) = lab.tc_out(attach::datapath::PROG_RX, lab.parent(), &bc);
        out.ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, 1)])
            .only(&[(0, rx_bc(n)), (1, rx_bc(n)), (3, rx_bc(n))]);
        assert_eq!(after, bc, "the original continues untouched");
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(lab.delivered(0) - before.0, 1, "the veth endpoint's copy");
        assert_eq!(lab.tap_delivered() - before.1, 2, "two copies into the VM");
    });
}

/// Random tagged frames on the tap: never refused, and counted on the
/// endpoint of their VLAN or dropped as unknown.
#[test]
fn random_frames_on_the_tap() {
    in_netns(|| {
        let mut lab = host();
        let mut rng = XorShift::new(0x7a9);
        let mut bad = Vec::new();
        for k in 0..300 {
            let n = rng.range(14, 120) as usize;
            let mut f = vec![0u8; n];
            rng.fill(&mut f);
            let (vid, sender) =
                [(100u16, 1usize), (200, 2), (300, usize::MAX)][rng.range(0, 2) as usize];
            if sender != usize::MAX {
                f[6..12].copy_from_slice(&lab.eps[sender].mac);
            }
            let frame = vlan_tagged(&f, vid);
            let t = ifindex("t0");
            let got = match lab.try_tc(attach::datapath::PROG_NEST_TAP, t, 0, &frame, 1) {
                Ok((o, _)) => o,
                Err(e) => {
                    let et = u16::from_be_bytes([f[12], f[13]]);
                    if (et == 0x0800 && n < 34) || (et == 0x86dd && n < 54) {
                        continue;
                    }
                    bad.push(format!("frame {k}: refused: {e:?}"));
                    continue;
                }
            };
            for (i, d) in got.eps.iter().enumerate() {
                if (d.tx_packets > 0 || d.tx_dropped > 0) && i != sender {
                    bad.push(format!("frame {k}: {} counted on ep{i}", got.what));
                }
            }
            if sender == usize::MAX && got.ret != TC_ACT_SHOT {
                bad.push(format!("frame {k}: unknown VLAN not dropped"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    });
}
