//! What an endpoint may send: its own MAC and addresses, and no one else's
//! neighbour, router or DHCP server answers.
//!
//! With `EP_F_SPOOFCHK` (MAC) and `EP_F_IPCHK` (addresses) a frame must
//! carry the endpoint's MAC as its source and in an ARP sender or ND
//! link-layer option, and the endpoint's address as its IP or ARP sender
//! (0.0.0.0, :: and IPv6 link-local carry no identity and pass); a
//! neighbour advertisement must be for one of its addresses or its
//! link-local (EUI-64 of its MAC). Router advertisements and redirects and
//! DHCP / DHCPv6 server messages are dropped unless the port allows them
//! (`EP_F_ROUTER`, `EP_F_DHCP_SERVER`: a router or DHCP server container).
//! Each has its drop reason. A frame too short to read what is checked is
//! dropped, and so is one hiding what is checked behind more VLAN tags,
//! IPv6 extension headers or ND options than are walked.

use attach_common::{
    EP_F_DHCP_SERVER, EP_F_IPCHK, EP_F_ROUTER, EP_F_SPOOFCHK, EpIpKey, MacAddr, Verdict,
};
use aya_ebpf::programs::TcContext;

use crate::{
    eth::{ETH_HLEN, EthHdr, mac_eq},
    maps::EP_IPS,
    proto::{
        DHCP_SERVER_PORT, DHCP6_SERVER_PORT, ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP,
        ETH_P_IPV6, IPPROTO_ICMPV6, IPPROTO_UDP, NDISC_NA, NDISC_NS, NDISC_RA, NDISC_REDIRECT,
        NDISC_RS, NEXTHDR_DEST, NEXTHDR_FRAGMENT, NEXTHDR_HOP, NEXTHDR_ROUTING,
    },
};

/// A port's checks: whose sources it enforces and what it lets through.
#[derive(Clone, Copy)]
pub struct Guard {
    pub mac: MacAddr,
    /// The key of the port's addresses in `attach_ep_ips`.
    pub owner: u32,
    /// `EP_F_SPOOFCHK`, `EP_F_IPCHK`, `EP_F_ROUTER`, `EP_F_DHCP_SERVER`.
    pub flags: u8,
}

impl Guard {
    #[inline(always)]
    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

#[inline(always)]
fn owns(key: &EpIpKey) -> bool {
    // SAFETY: presence test only.
    unsafe { EP_IPS.get(key) }.is_some()
}

/// VLAN tags walked to the frame's protocol (802.1Q, or QinQ: two).
const VLAN_TAGS_MAX: usize = 2;

/// Checks a frame a port's container sent; the drop reason if it fails.
#[inline(always)]
pub fn check(ctx: &TcContext, g: &Guard, eth: &EthHdr) -> Result<(), Verdict> {
    if !g.has(EP_F_SPOOFCHK | EP_F_IPCHK) {
        return Ok(());
    }
    if g.has(EP_F_SPOOFCHK) && !mac_eq(&eth.src, &g.mac) {
        return Err(Verdict::DropSpoofed);
    }
    let mut proto = u16::from_be(eth.proto);
    let mut l3 = ETH_HLEN;
    // Under 802.1Q and QinQ tags, as a receiver on a VLAN reads it.
    for _ in 0..VLAN_TAGS_MAX {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        let inner = ctx.load::<u16>(l3 + 2).map_err(|_| Verdict::DropParse)?;
        proto = u16::from_be(inner);
        l3 += 4;
    }
    match proto {
        ETH_P_ARP => arp(ctx, g, l3),
        ETH_P_IP => ipv4(ctx, g, l3),
        ETH_P_IPV6 => ipv6(ctx, g, l3),
        // More tags than walked: could hide anything.
        ETH_P_8021Q | ETH_P_8021AD => Err(Verdict::DropParse),
        _ => Ok(()),
    }
}

/// ARP: the sender's MAC and address.
#[inline(always)]
fn arp(ctx: &TcContext, g: &Guard, l3: usize) -> Result<(), Verdict> {
    // Sender hardware address (8) and protocol address (14) of an
    // Ethernet/IPv4 ARP packet.
    let sender = ctx
        .load::<[u8; 10]>(l3 + 8)
        .map_err(|_| Verdict::DropParse)?;
    let sha = [
        sender[0], sender[1], sender[2], sender[3], sender[4], sender[5],
    ];
    if g.has(EP_F_SPOOFCHK) && !mac_eq(&sha, &g.mac) {
        return Err(Verdict::DropSpoofedArp);
    }
    let spa = [sender[6], sender[7], sender[8], sender[9]];
    if g.has(EP_F_IPCHK) && u32::from_ne_bytes(spa) != 0 && !owns(&EpIpKey::v4(g.owner, spa)) {
        return Err(Verdict::DropSpoofed);
    }
    Ok(())
}

/// IPv4: the source address; DHCP server messages.
#[inline(always)]
fn ipv4(ctx: &TcContext, g: &Guard, l3: usize) -> Result<(), Verdict> {
    let h = ctx.load::<[u8; 20]>(l3).map_err(|_| Verdict::DropParse)?;
    let src = [h[12], h[13], h[14], h[15]];
    if g.has(EP_F_IPCHK) && u32::from_ne_bytes(src) != 0 && !owns(&EpIpKey::v4(g.owner, src)) {
        return Err(Verdict::DropSpoofed);
    }
    // A first fragment (or a whole datagram) of UDP: its source port.
    let first = h[6] & 0x1f == 0 && h[7] == 0;
    if h[9] == IPPROTO_UDP && first && !g.has(EP_F_DHCP_SERVER) {
        let ihl = usize::from(h[0] & 0xf) * 4;
        let sport = ctx
            .load::<[u8; 2]>(l3 + (ihl & 0x3c))
            .map_err(|_| Verdict::DropParse)?;
        if u16::from_be_bytes(sport) == DHCP_SERVER_PORT {
            return Err(Verdict::DropRogueDhcp);
        }
    }
    Ok(())
}

/// IPv6 extension headers walked to find the upper layer: hop-by-hop,
/// routing, destination options (fragments are handled by the caller).
const IPV6_EXT_MAX: usize = 4;

/// IPv6: the source address; neighbour discovery's link-layer options
/// and advertised targets; router advertisements and redirects; DHCPv6
/// server messages.
#[inline(always)]
fn ipv6(ctx: &TcContext, g: &Guard, l3: usize) -> Result<(), Verdict> {
    let h = ctx.load::<[u8; 8]>(l3).map_err(|_| Verdict::DropParse)?;
    let src = ctx
        .load::<[u8; 16]>(l3 + 8)
        .map_err(|_| Verdict::DropParse)?;
    if g.has(EP_F_IPCHK) {
        let unspecified = u128::from_ne_bytes(src) == 0;
        let link_local = src[0] == 0xfe && src[1] & 0xc0 == 0x80;
        if !unspecified && !link_local && !owns(&EpIpKey::v6(g.owner, src)) {
            return Err(Verdict::DropSpoofed);
        }
    }
    let mut next = h[6];
    let mut off = l3 + 40;
    for _ in 0..IPV6_EXT_MAX {
        match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
                let e = ctx.load::<[u8; 2]>(off).map_err(|_| Verdict::DropParse)?;
                next = e[0];
                off += (usize::from(e[1]) + 1) * 8;
            }
            NEXTHDR_FRAGMENT => {
                let f = ctx.load::<[u8; 4]>(off).map_err(|_| Verdict::DropParse)?;
                // Only the first fragment carries the upper header; the
                // kernel drops neighbour discovery in fragments.
                if f[2] != 0 || f[3] & 0xf8 != 0 {
                    return Ok(());
                }
                next = f[0];
                off += 8;
            }
            _ => break,
        }
    }
    // A chain reaching past 2 KiB (a jumbo frame's): what it leads to is
    // not read (the mask below bounds the offset for the verifier, and
    // would read the wrong bytes), so it is dropped as unreadable.
    if off > 0x7ff {
        return match next {
            IPPROTO_ICMPV6 | NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_FRAGMENT => {
                Err(Verdict::DropParse)
            }
            IPPROTO_UDP if !g.has(EP_F_DHCP_SERVER) => Err(Verdict::DropParse),
            _ => Ok(()),
        };
    }
    let off = off & 0x7ff;
    match next {
        IPPROTO_ICMPV6 => icmp6(ctx, g, off),
        IPPROTO_UDP if !g.has(EP_F_DHCP_SERVER) => {
            let sport = ctx.load::<[u8; 2]>(off).map_err(|_| Verdict::DropParse)?;
            if u16::from_be_bytes(sport) == DHCP6_SERVER_PORT {
                return Err(Verdict::DropRogueDhcp);
            }
            Ok(())
        }
        NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_FRAGMENT => {
            // More extension headers than walked: could hide anything.
            Err(Verdict::DropParse)
        }
        _ => Ok(()),
    }
}

/// Options looked at per ND message; a message with more is dropped (what
/// lies beyond could carry another MAC, and the kernel reads them all).
const ND_OPTS_MAX: usize = 16;

#[inline(always)]
fn icmp6(ctx: &TcContext, g: &Guard, off: usize) -> Result<(), Verdict> {
    let ty = ctx.load::<u8>(off).map_err(|_| Verdict::DropParse)?;
    // Where each ND message's options start (RFC 4861).
    let opts = match ty {
        NDISC_RA | NDISC_REDIRECT if !g.has(EP_F_ROUTER) => return Err(Verdict::DropRogueRouter),
        NDISC_RS => 8,
        NDISC_RA => 16,
        NDISC_NS => 24,
        NDISC_NA => 24,
        NDISC_REDIRECT => 40,
        _ => return Ok(()),
    };
    if ty == NDISC_NA && g.has(EP_F_IPCHK) {
        let target = ctx
            .load::<[u8; 16]>(off + 8)
            .map_err(|_| Verdict::DropParse)?;
        if !is_eui64_of(&target, &g.mac) && !owns(&EpIpKey::v6(g.owner, target)) {
            return Err(Verdict::DropSpoofedNd);
        }
    }
    if !g.has(EP_F_SPOOFCHK) {
        return Ok(());
    }
    let mut at = off + opts;
    for _ in 0..ND_OPTS_MAX {
        if at > 0xfff {
            // Past 4 KiB (a jumbo frame's options, or a length running
            // past the end): not read, dropped.
            return Err(Verdict::DropSpoofedNd);
        }
        let Ok(o) = ctx.load::<[u8; 8]>(at & 0xfff) else {
            // No more options.
            return Ok(());
        };
        if o[1] == 0 {
            // A zero-length option is invalid: the kernel drops the message.
            return Err(Verdict::DropSpoofedNd);
        }
        // Source (1) and target (2) link-layer address options.
        if (o[0] == 1 || o[0] == 2) && !mac_eq(&[o[2], o[3], o[4], o[5], o[6], o[7]], &g.mac) {
            return Err(Verdict::DropSpoofedNd);
        }
        at += usize::from(o[1]) * 8;
    }
    if at > 0xfff {
        return Err(Verdict::DropSpoofedNd);
    }
    // More options than read.
    match ctx.load::<[u8; 8]>(at & 0xfff) {
        Ok(_) => Err(Verdict::DropSpoofedNd),
        Err(_) => Ok(()),
    }
}

/// Whether `a` is the link-local address the kernel makes from `mac`
/// (fe80::/64 with the modified EUI-64 interface id).
#[inline(always)]
fn is_eui64_of(a: &[u8; 16], mac: &MacAddr) -> bool {
    let prefix = a[0] == 0xfe && a[1] == 0x80 && a[2] | a[3] | a[4] | a[5] | a[6] | a[7] == 0;
    prefix
        && a[8] == mac[0] ^ 2
        && a[9] == mac[1]
        && a[10] == mac[2]
        && a[11] == 0xff
        && a[12] == 0xfe
        && a[13] == mac[3]
        && a[14] == mac[4]
        && a[15] == mac[5]
}
