//! Which frames carry an address ipvlan demuxes by, at the edges of
//! `ipvlan_get_L3_hdr` the fuzzer found: an IPv4 total length that does not
//! hold, an ARP header of other types (read at the Ethernet/IPv4 offsets
//! all the same), and an ICMPv6 message from `::` sent by an l3 endpoint
//! (routed like any IPv6 packet).

use attach_common::{
    Direction::Rx as RX, Direction::Tx as TX, IPVL_MODE_L2, IPVL_MODE_L3, Verdict,
};

use super::{port, udp4, v4, v6};
use crate::common::{frames::*, ipvlan::*, outcome::*, *};

/// "skb->len < pktlen || pktlen < ihl * 4: no L3 header": the node gets
/// it, whoever's address it carries; padding after the packet is fine.
#[test]
fn rx_ipv4_total_length_must_hold() {
    in_netns(|| {
        let mut lab = port(IPVL_MODE_L2, 0);
        let pm = lab.parent_mac();
        let f = udp4(pm, OUTSIDE, EXT_V4, v4(11));
        // Longer than the frame, and shorter than the header.
        for tot in [f.len() as u16 - 14 + 1, 19] {
            let mut g = f.clone();
            g[16..18].copy_from_slice(&tot.to_be_bytes());
            lab.ipvl_rx(&g)
                .ret(TC_ACT_UNSPEC)
                .verdicts(&[(RX, Verdict::Unparsed, 1)])
                .only(&[]);
        }
        // Padded to more than the total length: delivered.
        let mut g = f.clone();
        g.extend_from_slice(&[0; 18]);
        lab.ipvl_rx(&g)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .only(&[(0, rx_uc(len(&g)))]);
    });
}

/// The kernel reads an ARP packet's target at its Ethernet/IPv4 offset
/// whatever its hardware type says (IEEE 802, which receivers take too).
#[test]
fn rx_arp_target_is_read_whatever_the_hardware_type() {
    in_netns(|| {
        let mut lab = port(IPVL_MODE_L2, 0);
        let pm = lab.parent_mac();
        let mut f = arp_reply(pm, OUTSIDE, EXT_V4, v4(12));
        f[14..16].copy_from_slice(&6u16.to_be_bytes());
        lab.ipvl_rx(&f)
            .ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .only(&[(1, rx_uc(len(&f)))]);
    });
}

/// `ipvlan_process_outbound` routes by the protocol: an ICMPv6 message
/// from `::` that no endpoint owns (an MLD report, a DAD solicitation for
/// someone else) is routed like any IPv6 packet, not dropped.
#[test]
fn tx_l3_routes_icmpv6_from_the_unspecified_address() {
    in_netns(|| {
        let mut lab = port(IPVL_MODE_L3, 0);
        let pm = lab.parent_mac();
        let ext6 = EXT_V6.parse::<std::net::Ipv6Addr>().unwrap().octets();
        for f in [
            ipv6_icmpv6(pm, pm, [0; 16], ext6, 143, &[0; 4]),
            ns(pm, [0; 16], v6(99)),
        ] {
            let mut f = f;
            // Unicast to the shared MAC, to the wire host's address.
            f[0..6].copy_from_slice(&pm);
            f[38..54].copy_from_slice(&ext6);
            lab.ipvl_tx(0, &f)
                .ret(TC_ACT_REDIRECT)
                .verdicts(&[(TX, Verdict::Routed, 1)])
                .only(&[(0, tx_uc(len(&f)))]);
        }
    });
}
