//! The kernel's ipvlan rules (drivers/net/ipvlan/), as decisions over the
//! address tables: which L3 address a frame is demuxed by, who owns it (and
//! whether that endpoint is up), routing through the node's tables, and the
//! node's answers for l3 endpoints.

use attach_common::{
    EP_F_DOWN, Endpoint, IPVL_ROUTE_TABLE, Ip4Key, Ip6Key, IpvlanParent, ipvlan::IPVL_MODE_L2,
};
use aya_ebpf::programs::TcContext;

use crate::{
    eth::EthHdr,
    fib::{
        FIB_BLACKHOLE, FIB_LOOKUP_DIRECT, FIB_LOOKUP_SKIP_NEIGH, FIB_LOOKUP_TBID, FIB_NO_NEIGH,
        FIB_NOT_FWDED, FIB_PROHIBIT, FIB_SUCCESS, FIB_UNREACHABLE, Fib,
    },
    l3::{L3, L3_ARP, L3_V4, L3_V6, l3_addr},
    maps::{IP4_EPS, IP6_EPS},
    neigh,
};

/// The endpoint of port `parent_ifindex` owning `addr`, if it is up
/// (`ipvlan_addr_lookup`: the kernel hashes a slave's addresses only while
/// it is up).
#[inline(always)]
pub fn lookup(ctx: &TcContext, parent_ifindex: u32, addr: &L3) -> Option<Endpoint> {
    let ep = if addr.is_none() {
        return None;
    } else if addr.is_v4() {
        let key = Ip4Key {
            parent_ifindex,
            addr: addr.v4_addr(),
        };
        // SAFETY: copied out at once.
        unsafe { IP4_EPS.get(&key) }.copied()?
    } else {
        let key = Ip6Key {
            parent_ifindex,
            addr: addr.addr,
        };
        // SAFETY: copied out at once.
        unsafe { IP6_EPS.get(&key) }.copied()?
    };
    is_up(ctx, &ep, addr).then_some(ep)
}

/// Whether `ep` is up: its host route for `addr` in [`IPVL_ROUTE_TABLE`]
/// matches, which it stops doing when the veth loses carrier (the
/// container's side went down) since the engine sets
/// `ignore_routes_with_linkdown` on it.
#[inline(always)]
fn is_up(ctx: &TcContext, ep: &Endpoint, addr: &L3) -> bool {
    let Some(mut p) = Fib::with_dst(addr) else {
        return false;
    };
    p.ifindex = ep.host_ifindex;
    p.tbid = IPVL_ROUTE_TABLE;
    let r = p.run(
        ctx,
        FIB_LOOKUP_DIRECT | FIB_LOOKUP_TBID | FIB_LOOKUP_SKIP_NEIGH,
    );
    if r < 0 {
        // A kernel without these flags (TBID: 6.8): the engine keeps the
        // endpoint's state in its flags instead.
        return !ep.has(EP_F_DOWN);
    }
    (r == FIB_SUCCESS || r == FIB_NO_NEIGH) && p.ifindex == ep.host_ifindex
}

/// Where an l3 endpoint's packet for `addr` goes (`ipvlan_process_outbound`:
/// the route of the node, with the parent as output device).
pub enum Route {
    /// Out of the parent to this next hop (resolved by the node's
    /// neighbour table).
    Via(L3),
    /// Not forwarded by the node's tables: one of the node's own addresses,
    /// or no route at all; the node's stack decides (delivers, or drops).
    Node,
    /// No route.
    None,
}

/// Looks `addr` up in the node's tables, as a packet arriving on the
/// endpoint's host-side veth: a route out of the parent gives its next
/// hop; one out of another device falls back to `addr` on the parent's
/// link, as the kernel does for a lookup bound to the parent
/// (`ip_route_output` with the parent as `oif`). `bpf_fib_lookup` says
/// "not forwarded" both for the node's own addresses and for no route:
/// those go to the node's stack, which delivers the first (as the kernel
/// does) and drops the second (where the kernel would try the parent's
/// link).
#[inline(always)]
pub fn route(ctx: &TcContext, ep: &Endpoint, src: &L3, dst: &L3) -> Route {
    let Some(mut p) = Fib::with_dst(dst) else {
        return Route::None;
    };
    if let Some(s) = Fib::with_dst(src) {
        p.src = s.dst;
    }
    p.ifindex = ep.host_ifindex;
    match p.run(ctx, 0) {
        FIB_SUCCESS | FIB_NO_NEIGH if p.ifindex == ep.parent_ifindex => {
            Route::Via(if dst.is_v4() {
                L3::v4(L3_V4, p.dst[0].to_ne_bytes())
            } else {
                // SAFETY: same size.
                L3::v6(L3_V6, unsafe {
                    core::mem::transmute::<[u32; 4], [u8; 16]>(p.dst)
                })
            })
        }
        FIB_BLACKHOLE | FIB_UNREACHABLE | FIB_PROHIBIT => Route::None,
        FIB_NOT_FWDED => Route::Node,
        _ => Route::Via(*dst),
    }
}

/// An ARP request from another host for the address of an up endpoint of
/// an l3/l3s port: turned into the reply, from the parent's MAC. Returns
/// whether the frame now is that reply (the caller sends it back out).
#[inline(always)]
pub fn arp_reply(ctx: &TcContext, port: &IpvlanParent, parent_ifindex: u32) -> bool {
    let Some(f) = neigh::arp_request(ctx) else {
        return false;
    };
    if lookup(ctx, parent_ifindex, &L3::v4(L3_ARP, f.arp.tpa)).is_none() {
        return false;
    }
    neigh::reply_arp(ctx, f, &port.mac)
}

/// A neighbour solicitation (not DAD) from another host for an up
/// endpoint's address on an l3/l3s port: turned into a solicited,
/// overriding advertisement from the parent's MAC. Returns whether the
/// frame now is that advertisement.
#[inline(always)]
pub fn na_reply(ctx: &TcContext, port: &IpvlanParent, parent_ifindex: u32) -> bool {
    let Some(f) = neigh::solicitation(ctx) else {
        return false;
    };
    if lookup(ctx, parent_ifindex, &L3::v6(L3_V6, f.target)).is_none() {
        return false;
    }
    neigh::advertise(ctx, f, &port.mac, neigh::NA_SOLICITED_OVERRIDE)
}

/// Whether a multicast frame on an l2 port comes from outside
/// (`ipvlan_external_frame`): not one an endpoint sent (the parent's
/// source MAC and an endpoint's source address) and the wire reflected.
#[inline(always)]
pub fn external(ctx: &TcContext, port: &IpvlanParent, parent_ifindex: u32, eth: &EthHdr) -> bool {
    if !crate::eth::mac_eq(&eth.src, &port.mac) {
        return true;
    }
    lookup(ctx, parent_ifindex, &l3_addr(ctx, eth, false)).is_none()
}

/// Whether the port is in l2 mode.
#[inline(always)]
pub fn is_l2(port: &IpvlanParent) -> bool {
    port.mode == IPVL_MODE_L2
}
