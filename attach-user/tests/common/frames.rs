//! Frame builders: Ethernet with ARP, IPv4/UDP, IPv6/ICMPv6, 802.1Q tags.

use attach_common::MacAddr;

pub const BROADCAST: MacAddr = [0xff; 6];

// Endpoint MACs the suites share.
pub const A: MacAddr = [0x02, 0, 0, 0, 0, 0x0a];
pub const B: MacAddr = [0x02, 0, 0, 0, 0, 0x0b];
pub const C: MacAddr = [0x02, 0, 0, 0, 0, 0x0c];
pub const D: MacAddr = [0x02, 0, 0, 0, 0, 0x0d];
pub const E: MacAddr = [0x02, 0, 0, 0, 0, 0x0e];
/// A host on the wire, not an endpoint.
pub const OUTSIDE: MacAddr = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_IPV6: u16 = 0x86dd;

/// An Ethernet frame (no FCS).
pub fn eth(dst: MacAddr, src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn arp(op: u16, dst: MacAddr, src: MacAddr, sip: [u8; 4], tha: MacAddr, tip: [u8; 4]) -> Vec<u8> {
    let mut a = Vec::with_capacity(28);
    a.extend_from_slice(&1u16.to_be_bytes()); // Ethernet
    a.extend_from_slice(&ETH_P_IP.to_be_bytes());
    a.extend_from_slice(&[6, 4]);
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&src);
    a.extend_from_slice(&sip);
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tip);
    eth(dst, src, ETH_P_ARP, &a)
}

/// "Who has `tip`? Tell `sip`", broadcast (42 bytes).
pub fn arp_request(src: MacAddr, sip: [u8; 4], tip: [u8; 4]) -> Vec<u8> {
    arp(1, BROADCAST, src, sip, [0; 6], tip)
}

/// "`sip` is at `src`", unicast to `dst` (42 bytes).
pub fn arp_reply(dst: MacAddr, src: MacAddr, sip: [u8; 4], tip: [u8; 4]) -> Vec<u8> {
    arp(2, dst, src, sip, dst, tip)
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The ICMPv6 checksum of `msg` (its checksum field zero) from `sip` to
/// `dip`: over the IPv6 pseudo-header, then the message.
fn icmpv6_csum(sip: &[u8; 16], dip: &[u8; 16], msg: &[u8]) -> u16 {
    let mut sum = csum_add(0, sip);
    sum = csum_add(sum, dip);
    sum = csum_add(sum, &(msg.len() as u32).to_be_bytes());
    sum = csum_add(sum, &[0, 0, 0, 58]);
    csum_fold(csum_add(sum, msg))
}

fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    sum
}

/// ARP `op` whose sender hardware address `sha` may differ from the
/// frame's source `src` (a forged one).
pub fn arp_from(op: u16, src: MacAddr, sha: MacAddr, sip: [u8; 4], tip: [u8; 4]) -> Vec<u8> {
    let mut f = arp(op, BROADCAST, src, sip, [0; 6], tip);
    f[22..28].copy_from_slice(&sha);
    f
}

/// IPv4/UDP from source port 40000 (UDP checksum 0: allowed in IPv4).
pub fn ipv4_udp(
    dst: MacAddr,
    src: MacAddr,
    sip: [u8; 4],
    dip: [u8; 4],
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    ipv4_udp_ports(dst, src, (sip, 40000), (dip, dport), payload)
}

/// IPv6/UDP between (address, port) pairs (checksum left 0: the datapath
/// does not read it).
pub fn ipv6_udp(
    dst: MacAddr,
    src: MacAddr,
    from: ([u8; 16], u16),
    to: ([u8; 16], u16),
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = (8 + payload.len()) as u16;
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&udp_len.to_be_bytes());
    ip.extend_from_slice(&[17, 64]);
    ip.extend_from_slice(&from.0);
    ip.extend_from_slice(&to.0);
    ip.extend_from_slice(&from.1.to_be_bytes());
    ip.extend_from_slice(&to.1.to_be_bytes());
    ip.extend_from_slice(&udp_len.to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(payload);
    eth(dst, src, ETH_P_IPV6, &ip)
}

/// An IPv6 frame with one destination-options header (8 bytes of padding)
/// before its upper layer: `f` must be an untagged IPv6 frame.
pub fn with_dest_opts(f: &[u8]) -> Vec<u8> {
    let mut out = f[..54].to_vec();
    let next = out[20];
    out[20] = 60;
    let plen = u16::from_be_bytes([out[18], out[19]]) + 8;
    out[18..20].copy_from_slice(&plen.to_be_bytes());
    // Next header, length 0 (8 bytes), a PadN option of 4 bytes.
    out.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    out.extend_from_slice(&f[54..]);
    out
}

/// IPv4/UDP between (address, port) pairs.
pub fn ipv4_udp_ports(
    dst: MacAddr,
    src: MacAddr,
    from: ([u8; 4], u16),
    to: ([u8; 4], u16),
    payload: &[u8],
) -> Vec<u8> {
    let (sip, sport) = from;
    let (dip, dport) = to;
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40, // DF
        0,
        64,
        17, // UDP
        0,
        0,
    ];
    ip.extend_from_slice(&sip);
    ip.extend_from_slice(&dip);
    let c = csum_fold(csum_add(0, &ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&sport.to_be_bytes());
    ip.extend_from_slice(&dport.to_be_bytes());
    ip.extend_from_slice(&(udp_len as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(payload);
    eth(dst, src, ETH_P_IP, &ip)
}

/// IPv6 with an ICMPv6 message of `icmp_type` (code 0, 4 zero bytes of
/// body, then `body`), checksummed.
pub fn ipv6_icmpv6(
    dst: MacAddr,
    src: MacAddr,
    sip: [u8; 16],
    dip: [u8; 16],
    icmp_type: u8,
    body: &[u8],
) -> Vec<u8> {
    let mut icmp = vec![icmp_type, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(body);
    let len = icmp.len() as u32;
    let c = icmpv6_csum(&sip, &dip, &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(len as u16).to_be_bytes());
    ip.extend_from_slice(&[58, 255]);
    ip.extend_from_slice(&sip);
    ip.extend_from_slice(&dip);
    ip.extend_from_slice(&icmp);
    eth(dst, src, ETH_P_IPV6, &ip)
}

/// The MAC an IPv6 multicast address maps to (33:33 + its last 32 bits).
pub fn ipv6_multicast_mac(ip: [u8; 16]) -> MacAddr {
    [0x33, 0x33, ip[12], ip[13], ip[14], ip[15]]
}

/// The MAC an IPv4 multicast address maps to (01:00:5e + its low 23 bits).
pub fn ipv4_multicast_mac(ip: [u8; 4]) -> MacAddr {
    [0x01, 0x00, 0x5e, ip[1] & 0x7f, ip[2], ip[3]]
}

/// A link-local IPv6 address with `last` as its interface part.
pub fn ll6(last: u8) -> [u8; 16] {
    let mut a = [0; 16];
    a[0] = 0xfe;
    a[1] = 0x80;
    a[15] = last;
    a
}

/// ff02::1, all nodes.
pub const ALL_NODES: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// `frame` with an 802.1Q tag (VLAN `vid`, priority 0) after the MACs.
pub fn vlan_tagged(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(frame.len() + 4);
    f.extend_from_slice(&frame[..12]);
    f.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
    f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

/// "dst <- src type" of a frame, for messages.
pub fn describe(f: &[u8]) -> String {
    if f.len() < 14 {
        return format!("(runt {:02x?})", f);
    }
    let m = |s: &[u8]| super::fmt_mac(&s.try_into().unwrap());
    format!(
        "{} <- {} type {:#06x}",
        m(&f[0..6]),
        m(&f[6..12]),
        u16::from_be_bytes([f[12], f[13]])
    )
}

pub const ETH_P_8021AD: u16 = 0x88a8;

/// `frame` with an 802.1ad S-tag `outer` around an 802.1Q tag `vid`.
pub fn qinq_tagged(frame: &[u8], outer: u16, vid: u16) -> Vec<u8> {
    let inner = vlan_tagged(frame, vid);
    let mut f = Vec::with_capacity(inner.len() + 4);
    f.extend_from_slice(&inner[..12]);
    f.extend_from_slice(&ETH_P_8021AD.to_be_bytes());
    f.extend_from_slice(&(outer & 0x0fff).to_be_bytes());
    f.extend_from_slice(&inner[12..]);
    f
}

/// Whether the IPv4 header at `off` has a valid checksum.
pub fn ipv4_csum_ok(f: &[u8], off: usize) -> bool {
    let ihl = usize::from(f[off] & 0xf) * 4;
    csum_fold(csum_add(0, &f[off..off + ihl])) == 0
}

/// IPv4/UDP with a given TTL (checksummed).
pub fn ipv4_udp_ttl(dst: MacAddr, src: MacAddr, sip: [u8; 4], dip: [u8; 4], ttl: u8) -> Vec<u8> {
    let mut f = ipv4_udp(dst, src, sip, dip, 7, b"ttl");
    f[14 + 8] = ttl;
    f[14 + 10] = 0;
    f[14 + 11] = 0;
    let c = csum_fold(csum_add(0, &f[14..34]));
    f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    f
}

/// A frame's length, as the counters count it.
pub fn len(f: &[u8]) -> u64 {
    f.len() as u64
}

/// A neighbour solicitation for `target` from `sip` (source link-layer
/// option: `src`), to the solicited-node group; `::` source: DAD, no option.
pub fn ns(src: MacAddr, sip: [u8; 16], target: [u8; 16]) -> Vec<u8> {
    let mut group = [0u8; 16];
    group[0] = 0xff;
    group[1] = 2;
    group[11] = 1;
    group[12] = 0xff;
    group[13..].copy_from_slice(&target[13..]);
    let mut body = target.to_vec();
    if sip != [0; 16] {
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&src);
    }
    ipv6_icmpv6(ipv6_multicast_mac(group), src, sip, group, 135, &body)
}

/// [`ipv6_icmpv6`] with the first byte after the checksum set.
pub fn ipv6_icmpv6_with_flags(
    dst: MacAddr,
    src: MacAddr,
    sip: [u8; 16],
    dip: [u8; 16],
    ty: u8,
    flags: u8,
    body: &[u8],
) -> Vec<u8> {
    // Sum the message with the flag byte in place: build it with the flag
    // as the first body byte, then drop the 4 zero bytes the builder adds.
    let mut b = vec![flags, 0, 0, 0];
    b.extend_from_slice(body);
    let f = ipv6_icmpv6(dst, src, sip, dip, ty, &b);
    // f = eth(14) ip6(40) [type code csum 0 0 0 0] [flags 0 0 0 body]
    let mut out = f[..54 + 4].to_vec();
    out.extend_from_slice(&f[54 + 8..]);
    // Fix the payload length (4 bytes fewer) and the checksum.
    let plen = (out.len() - 54) as u16;
    out[18..20].copy_from_slice(&plen.to_be_bytes());
    out[56] = 0;
    out[57] = 0;
    let c = icmpv6_csum(&sip, &dip, &out[54..]);
    out[56..58].copy_from_slice(&c.to_be_bytes());
    out
}
