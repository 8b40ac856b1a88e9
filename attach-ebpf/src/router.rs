//! Routed endpoints: the node's answers for the container's gateway, and
//! forwarding by the node's tables (`bpf_fib_lookup`) with the TTL / hop
//! limit decremented as a router does.

use attach_common::RouterPort;
use aya_ebpf::{bindings::TC_ACT_REDIRECT, programs::TcContext};

use crate::{
    eth::{ETH_HLEN, EthHdr},
    fib::{FIB_NO_NEIGH, FIB_SUCCESS, Fib, redirect_neigh},
    l3::{L3, L3_V4, L3_V6},
    maps::RT_PORTS,
    neigh,
    proto::{AF_INET, AF_INET6, ETH_P_IP, ETH_P_IPV6},
};

/// An ARP request from the container, answered for the node (the gateway,
/// and any other address the container believes on-link: the node routes
/// everything): turned into the reply from the gateway's MAC. Probes
/// (sender 0.0.0.0) and announcements (sender = target) are not answered.
/// Returns whether the frame now is that reply.
#[inline(always)]
pub fn arp_reply(ctx: &TcContext, port: &RouterPort) -> bool {
    let Some(f) = neigh::arp_request(ctx) else {
        return false;
    };
    let spa = u32::from_ne_bytes(f.arp.spa);
    if spa == 0 || spa == u32::from_ne_bytes(f.arp.tpa) {
        return false;
    }
    neigh::reply_arp(ctx, f, &port.gw_mac)
}

/// A neighbour solicitation from the container (not DAD), answered for the
/// node (its gateway `fe80::1`, or any other target: the node routes
/// everything) with a solicited, overriding advertisement from the
/// gateway's MAC, flagged as a router. Returns whether the frame now is
/// that advertisement.
#[inline(always)]
pub fn na_reply(ctx: &TcContext, port: &RouterPort) -> bool {
    let Some(f) = neigh::solicitation(ctx) else {
        return false;
    };
    neigh::advertise(ctx, f, &port.gw_mac, neigh::NA_ROUTER_SOLICITED_OVERRIDE)
}

/// What forwarding decided.
pub enum Fwd {
    /// Into a router endpoint (`bpf_redirect_peer`): its counters' id.
    Endpoint(u32),
    /// Out of another device by its next hop (`bpf_redirect_neigh`).
    Routed,
    /// Not for this path: the node's stack decides (its own address, no
    /// route, TTL expiring, too big, not IP).
    Stack,
    /// The redirect helper failed.
    Failed,
}

/// The IP header fields forwarding needs, from the packet.
struct Ip {
    v6: bool,
    /// TTL or hop limit.
    ttl: u8,
    fib: Fib,
}

#[inline(always)]
fn read_ip(ctx: &TcContext, eth: &EthHdr) -> Option<Ip> {
    let mut fib = Fib::default();
    if eth.proto == ETH_P_IP.to_be() {
        let h = ctx.load::<[u8; 20]>(ETH_HLEN).ok()?;
        if h[0] >> 4 != 4 || h[0] & 0xf < 5 {
            return None;
        }
        fib.family = AF_INET;
        // `tos` shares the first byte of `flowinfo`.
        fib.flowinfo = u32::from(h[1]);
        fib.l4_protocol = h[9];
        fib.tot_len = u16::from_be_bytes([h[2], h[3]]);
        fib.src[0] = u32::from_ne_bytes([h[12], h[13], h[14], h[15]]);
        fib.dst[0] = u32::from_ne_bytes([h[16], h[17], h[18], h[19]]);
        Some(Ip {
            v6: false,
            ttl: h[8],
            fib,
        })
    } else if eth.proto == ETH_P_IPV6.to_be() {
        let h = ctx.load::<[u8; 8]>(ETH_HLEN).ok()?;
        if h[0] >> 4 != 6 {
            return None;
        }
        let addrs = ctx.load::<[u32; 8]>(ETH_HLEN + 8).ok()?;
        fib.family = AF_INET6;
        fib.flowinfo = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) & 0x0fff_ffffu32.to_be();
        fib.l4_protocol = h[6];
        fib.tot_len = u16::from_be_bytes([h[4], h[5]]).wrapping_add(40);
        fib.src = [addrs[0], addrs[1], addrs[2], addrs[3]];
        fib.dst = [addrs[4], addrs[5], addrs[6], addrs[7]];
        Some(Ip {
            v6: true,
            ttl: h[7],
            fib,
        })
    } else {
        None
    }
}

/// Decrements the TTL (IPv4, with the header checksum fixed) or the hop
/// limit (IPv6).
#[inline(always)]
fn decrement_ttl(ctx: &TcContext, ip: &Ip) -> bool {
    if ip.v6 {
        return ctx.store(ETH_HLEN + 7, &(ip.ttl - 1), 0).is_ok();
    }
    // The 16-bit word of TTL and protocol, as the checksum sees it.
    let Ok(old) = ctx.load::<[u8; 2]>(ETH_HLEN + 8) else {
        return false;
    };
    let new = [old[0].wrapping_sub(1), old[1]];
    let (from, to) = (u16::from_ne_bytes(old), u16::from_ne_bytes(new));
    ctx.store(ETH_HLEN + 8, &new, 0).is_ok()
        && ctx
            .l3_csum_replace(ETH_HLEN + 10, u64::from(from), u64::from(to), 2)
            .is_ok()
}

/// Forwards an IP packet that arrived on `ifindex` by the node's tables,
/// as the node's stack would: to a router endpoint's veth, it is
/// rewritten (MACs, TTL) and pushed into the container
/// (`bpf_redirect_peer`); out of any other device it leaves by its next
/// hop (`bpf_redirect_neigh`, TTL decremented). Everything the fast path
/// does not do (local delivery, no route, expiring TTL, ICMP errors,
/// fragmentation) is left to the stack. `to_others`: whether a route out
/// of a device that is not a router endpoint is taken (transmit) or left
/// to the stack (the uplink's receive program).
#[inline(always)]
pub fn forward(ctx: &TcContext, eth: &EthHdr, ifindex: u32, to_others: bool) -> Fwd {
    let Some(mut ip) = read_ip(ctx, eth) else {
        return Fwd::Stack;
    };
    if ip.ttl <= 1 {
        return Fwd::Stack;
    }
    ip.fib.ifindex = ifindex;
    let r = ip.fib.run(ctx, 0);
    if r != FIB_SUCCESS && r != FIB_NO_NEIGH {
        return Fwd::Stack;
    }
    let out = ip.fib.ifindex;
    // SAFETY: copied out at once.
    let dest = unsafe { RT_PORTS.get(&out) }.copied();
    if let Some(dest) = dest
        && r == FIB_SUCCESS
    {
        let mut macs = [0u8; 12];
        macs[..6].copy_from_slice(&ip.fib.dmac);
        macs[6..].copy_from_slice(&ip.fib.smac);
        if !decrement_ttl(ctx, &ip) || ctx.store(0, &macs, 0).is_err() {
            return Fwd::Failed;
        }
        let ret = crate::kernel::redirect_into(out);
        return if ret == TC_ACT_REDIRECT as i32 {
            Fwd::Endpoint(dest.ep.id)
        } else {
            Fwd::Failed
        };
    }
    if !to_others && dest.is_none() {
        return Fwd::Stack;
    }
    let nh = if ip.v6 {
        // SAFETY: same size.
        L3::v6(L3_V6, unsafe {
            core::mem::transmute::<[u32; 4], [u8; 16]>(ip.fib.dst)
        })
    } else {
        L3::v4(L3_V4, ip.fib.dst[0].to_ne_bytes())
    };
    if !decrement_ttl(ctx, &ip) {
        return Fwd::Failed;
    }
    if redirect_neigh(out, &nh) != TC_ACT_REDIRECT as i32 {
        return Fwd::Failed;
    }
    match dest {
        Some(d) => Fwd::Endpoint(d.ep.id),
        None => Fwd::Routed,
    }
}
