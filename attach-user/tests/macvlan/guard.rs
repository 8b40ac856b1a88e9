//! `attach_tx`'s guard of the endpoint's neighbour, router and DHCP
//! messages: forged ones dropped, its own and the allowed ones passed.

use attach_common::{
    Direction::Tx as TX, EP_F_DHCP_SERVER, EP_F_IPCHK, EP_F_ROUTER, EP_F_SPOOFCHK, MODE_BRIDGE,
    MacAddr, Verdict,
};

use super::*;
use crate::common::{outcome::*, scenario::*, *};

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

/// `f` with VLAN tags `tags` (TPID, VID) inserted after the addresses.
fn tagged(f: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut out = f[..12].to_vec();
    for (tpid, vid) in tags {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&vid.to_be_bytes());
    }
    out.extend_from_slice(&f[12..]);
    out
}

/// `f` (untagged IPv6) with a hop-by-hop header of 2048 bytes (the
/// longest) before its upper layer.
fn behind_long_hop_by_hop(f: &[u8]) -> Vec<u8> {
    let mut out = f[..54].to_vec();
    let next = out[20];
    out[20] = 0;
    let plen = u16::from_be_bytes([out[18], out[19]]) + 2048;
    out[18..20].copy_from_slice(&plen.to_be_bytes());
    // Next header, length 255 ((255 + 1) * 8 bytes), then PadN options.
    out.extend_from_slice(&[next, 255]);
    for _ in 0..(2046 / 257) {
        out.extend_from_slice(&[1, 255]);
        out.extend_from_slice(&[0; 255]);
    }
    let rest = 2046 - 2046 / 257 * 257;
    out.extend_from_slice(&[1, rest as u8 - 2]);
    out.resize(out.len() + rest - 2, 0);
    out.extend_from_slice(&f[54..]);
    out
}

/// A neighbour solicitation whose first `n` options are nonces and whose
/// last is a source link-layer option carrying `mac`.
fn ns_after_options(n: usize, mac: MacAddr) -> Vec<u8> {
    let mut b = v6(2).to_vec();
    for _ in 0..n {
        b.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]);
    }
    b.extend_from_slice(&[1, 1]);
    b.extend_from_slice(&mac);
    ipv6_icmpv6(B, A, v6(1), v6(2), 135, &b)
}

/// What the checks read is found under QinQ tags and after any number of
/// ND options, as a receiver reads it; what hides behind more than is
/// walked is dropped.
#[test]
fn tx_forgeries_under_qinq_or_after_many_nd_options_are_dropped() {
    in_netns(|| {
        let mut lab = ipchk_lab();
        let forged_arp = arp_from(2, A, UNKNOWN, ip4(1), ip4(2));
        for (what, f, why) in [
            (
                "forged ARP reply under 802.1ad + 802.1Q",
                tagged(&forged_arp, &[(0x88a8, 5), (0x8100, 7)]),
                Verdict::DropSpoofedArp,
            ),
            (
                "forged ARP reply under 802.1Q + 802.1Q",
                tagged(&forged_arp, &[(0x8100, 5), (0x8100, 7)]),
                Verdict::DropSpoofedArp,
            ),
            (
                "router advertisement under QinQ",
                tagged(
                    &ipv6_icmpv6(B, A, a_link_local(), ALL_NODES, 134, &ra_body(A)),
                    &[(0x88a8, 5), (0x8100, 7)],
                ),
                Verdict::DropRogueRouter,
            ),
            (
                "three tags",
                tagged(
                    &arp_from(2, A, A, ip4(1), ip4(2)),
                    &[(0x88a8, 5), (0x8100, 7), (0x8100, 9)],
                ),
                Verdict::DropParse,
            ),
            (
                "NS with a forged source link-layer option after four others",
                ns_after_options(4, UNKNOWN),
                Verdict::DropSpoofedNd,
            ),
            (
                "NS with more options than are read",
                ns_after_options(16, A),
                Verdict::DropSpoofedNd,
            ),
            (
                "router advertisement behind a 2 KiB hop-by-hop header (a jumbo frame)",
                behind_long_hop_by_hop(&ipv6_icmpv6(
                    B,
                    A,
                    a_link_local(),
                    ALL_NODES,
                    134,
                    &ra_body(A),
                )),
                Verdict::DropParse,
            ),
        ] {
            let o = lab.tx(0, &f);
            assert_eq!(o.ret, TC_ACT_SHOT, "{what}: passed");
            o.verdicts(&[(TX, why, 1)]).only(&[(0, tx_dropped())]);
        }
        // Its own, under QinQ and after a few options: passed.
        for (what, f) in [
            (
                "ARP reply from itself under QinQ",
                tagged(
                    &arp_from(2, A, A, ip4(1), ip4(2)),
                    &[(0x88a8, 5), (0x8100, 7)],
                ),
            ),
            (
                "NS with its own MAC after 14 options",
                ns_after_options(14, A),
            ),
        ] {
            let o = lab.tx(0, &f);
            assert_ne!(o.ret, TC_ACT_SHOT, "{what} was dropped");
        }
    });
}
