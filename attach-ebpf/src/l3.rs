//! The L3 address a frame is looked up by: IPv4/IPv6 source or
//! destination, an ARP sender or target, a DAD solicitation's target.

use aya_ebpf::programs::TcContext;

use crate::{
    eth::{ETH_HLEN, EthHdr},
    proto::{ArpHdr, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMPV6, NDISC_NS, is_zero16},
};

/// The address a frame is demuxed by (`ipvlan_get_L3_hdr` +
/// `ipvlan_addr_lookup`). A plain struct, always fully written: an enum
/// with payloads of different sizes leaves bytes the verifier sees as
/// uninitialised.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct L3 {
    /// One of the `L3_*` kinds.
    pub kind: u8,
    pub _pad: [u8; 3],
    /// IPv4 in the first 4 bytes, IPv6 in all 16.
    pub addr: [u8; 16],
}

/// Nothing ipvlan looks up (another protocol, malformed, or an ICMPv6
/// message from `::` that is not a solicitation).
pub const L3_NONE: u8 = 0;
/// An IPv4, IPv6 or ARP header cut short or malformed: nothing looked up.
pub const L3_MALFORMED: u8 = 5;
/// IPv4 source or destination.
pub const L3_V4: u8 = 1;
/// ARP sender or target address.
pub const L3_ARP: u8 = 2;
/// IPv6 source or destination.
pub const L3_V6: u8 = 3;
/// The target of a duplicate address detection solicitation (`::` source):
/// looked up for source and destination alike.
pub const L3_DAD: u8 = 4;

impl L3 {
    pub const NONE: L3 = L3 {
        kind: L3_NONE,
        _pad: [0; 3],
        addr: [0; 16],
    };

    pub const MALFORMED: L3 = L3 {
        kind: L3_MALFORMED,
        ..L3::NONE
    };

    /// Whether there is an address to look up.
    #[inline(always)]
    pub fn is_none(&self) -> bool {
        self.kind == L3_NONE || self.kind == L3_MALFORMED
    }

    #[inline(always)]
    pub fn v4(kind: u8, a: [u8; 4]) -> L3 {
        let mut l = L3 { kind, ..L3::NONE };
        l.addr[0] = a[0];
        l.addr[1] = a[1];
        l.addr[2] = a[2];
        l.addr[3] = a[3];
        l
    }

    #[inline(always)]
    pub fn v6(kind: u8, addr: [u8; 16]) -> L3 {
        L3 {
            kind,
            _pad: [0; 3],
            addr,
        }
    }

    #[inline(always)]
    pub fn is_v4(&self) -> bool {
        self.kind == L3_V4 || self.kind == L3_ARP
    }

    #[inline(always)]
    pub fn v4_addr(&self) -> [u8; 4] {
        [self.addr[0], self.addr[1], self.addr[2], self.addr[3]]
    }

    /// An IP packet (what l3 routes), as opposed to ARP/ND.
    #[inline(always)]
    pub fn is_ip(&self) -> bool {
        self.kind == L3_V4 || self.kind == L3_V6
    }
}

/// `ipvlan_get_L3_hdr` of an untagged frame: the destination (or, with
/// `dest` false, the source) address ipvlan looks up. 802.1Q frames are
/// not demuxed (the kernel's ipvlan reads untagged frames only).
#[inline(always)]
pub fn l3_addr(ctx: &TcContext, eth: &EthHdr, dest: bool) -> L3 {
    match u16::from_be(eth.proto) {
        ETH_P_IP => {
            let Ok(h) = ctx.load::<[u8; 4]>(ETH_HLEN) else {
                return L3::MALFORMED;
            };
            let vihl = h[0];
            if vihl >> 4 != 4 || vihl & 0xf < 5 {
                return L3::MALFORMED;
            }
            // The total length must cover the header and fit in the frame
            // (`skb_ip_totlen`: 0 in a BIG TCP packet over 64 KiB).
            let tot = u16::from_be_bytes([h[2], h[3]]) as u32;
            let l3_len = ctx.len().saturating_sub(ETH_HLEN as u32);
            let big = tot == 0 && l3_len > 0xffff;
            if !big && (l3_len < tot || tot < (vihl & 0xf) as u32 * 4) {
                return L3::MALFORMED;
            }
            let off = ETH_HLEN + if dest { 16 } else { 12 };
            ctx.load::<[u8; 4]>(off)
                .map_or(L3::MALFORMED, |a| L3::v4(L3_V4, a))
        }
        // The kernel reads the addresses at their Ethernet/IPv4 offsets
        // whatever the header's types and lengths say.
        ETH_P_ARP => match ctx.load::<ArpHdr>(ETH_HLEN) {
            Ok(a) => L3::v4(L3_ARP, if dest { a.tpa } else { a.spa }),
            Err(_) => L3::MALFORMED,
        },
        ETH_P_IPV6 => {
            let Ok(hdr) = ctx.load::<[u8; 8]>(ETH_HLEN) else {
                return L3::MALFORMED;
            };
            if hdr[0] >> 4 != 6 {
                return L3::MALFORMED;
            }
            let Ok(saddr) = ctx.load::<[u8; 16]>(ETH_HLEN + 8) else {
                return L3::MALFORMED;
            };
            if is_zero16(&saddr) && hdr[6] == IPPROTO_ICMPV6 {
                // ICMPv6 from `::`: only a solicitation is looked up, by target.
                return match ctx.load::<u8>(ETH_HLEN + 40) {
                    Ok(NDISC_NS) => ctx
                        .load::<[u8; 16]>(ETH_HLEN + 48)
                        .map_or(L3::MALFORMED, |a| L3::v6(L3_DAD, a)),
                    _ => L3::NONE,
                };
            }
            if !dest {
                return L3::v6(L3_V6, saddr);
            }
            ctx.load::<[u8; 16]>(ETH_HLEN + 24)
                .map_or(L3::MALFORMED, |a| L3::v6(L3_V6, a))
        }
        _ => L3::NONE,
    }
}

/// What an l3 port routes a packet by (`ipvlan_process_outbound`): its IP
/// source and destination, given `dst`, its demux address. An ICMPv6
/// message from `::` (demuxed by a solicitation's target, or not at all,
/// or cut short after the IPv6 header) is routed by its destination like
/// any IPv6 packet. None: not IPv4/IPv6, or an IP header of the wrong
/// version or an IPv4 one whose lengths do not hold.
#[inline(always)]
pub fn route_addrs(ctx: &TcContext, eth: &EthHdr, dst: &L3) -> Option<(L3, L3)> {
    if dst.is_ip() {
        return Some((l3_addr(ctx, eth, false), *dst));
    }
    if u16::from_be(eth.proto) != ETH_P_IPV6 {
        return None;
    }
    let h = ctx.load::<[u8; 40]>(ETH_HLEN).ok()?;
    if h[0] >> 4 != 6 {
        return None;
    }
    let mut saddr = [0u8; 16];
    saddr.copy_from_slice(&h[8..24]);
    let mut daddr = [0u8; 16];
    daddr.copy_from_slice(&h[24..40]);
    Some((L3::v6(L3_V6, saddr), L3::v6(L3_V6, daddr)))
}
