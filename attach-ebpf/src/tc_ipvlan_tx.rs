//! Endpoint transmit (tcx ingress on the host-side veth), ipvlan ports:
//! `ipvlan_xmit_mode_l2/l3`. The sender's port decides: local delivery by
//! destination IP (unless private or VEPA), the node's stack, flooding,
//! routing through the node's tables, or out of the parent. An l2 port that
//! is neither private nor VEPA also reaches the macvlan bridge ports of its
//! parent locally (`peers.rs`).

use attach_common::{
    DATAPATH_MARK, Direction::Tx as DIR, Endpoint, IPVL_F_PRIVATE, IPVL_F_VEPA, IPVL_MODE_L3S,
    Verdict,
};
use aya_ebpf::{
    bindings::{BPF_F_INGRESS, TC_ACT_REDIRECT, TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::bpf_redirect,
    programs::TcContext,
};

use crate::{
    bw::{self, Way},
    eth::{self, EthHdr, mac_eq},
    fib::redirect_neigh,
    flood::flood_ipvlan,
    ipvlan::{self, Route},
    l3::{l3_addr, route_addrs},
    maps::{IPVL_PARENTS, PORTS},
    peers, skb, stats,
};

pub fn run(ctx: &TcContext) -> i32 {
    let (mark, ifindex) = skb::mark_ifindex(ctx);
    if mark == DATAPATH_MARK {
        // l3s ingress the parent's program routes through the node: the
        // mark stays, for the node's rule that selects the endpoint table.
        return TC_ACT_UNSPEC;
    }
    // SAFETY: copied out at once.
    let Some(ep) = (unsafe { PORTS.get(&ifindex) }).copied() else {
        stats::verdict(DIR, Verdict::NotOurs);
        return TC_ACT_UNSPEC;
    };
    let Some(eth) = eth::read_tc(ctx) else {
        return drop(ep.id, Verdict::DropParse);
    };
    // SAFETY: copied out at once.
    let Some(port) = (unsafe { IPVL_PARENTS.get(&ep.parent_ifindex) }).copied() else {
        return drop(ep.id, Verdict::DropRedirect);
    };
    let len = ctx.len() as u64;
    if !bw::pass(ep.id, Way::Out, len as u32) {
        return drop(ep.id, Verdict::DropRateLimit);
    }
    stats::tx(ep.id, len, &eth);
    let vepa = port.flags & IPVL_F_VEPA != 0;
    let private = port.flags & IPVL_F_PRIVATE != 0;

    if ipvlan::is_l2(&port) {
        if !vepa && mac_eq(&eth.dst, &eth.src) {
            // To the shared MAC: another endpoint, else the node.
            let dst = l3_addr(ctx, &eth, true);
            if let Some(dest) = ipvlan::lookup(ctx, ep.parent_ifindex, &dst) {
                return deliver(&ep, &dest, private, len, &eth);
            }
            ctx.set_mark(DATAPATH_MARK);
            stats::verdict(DIR, Verdict::ToHost);
            // SAFETY: plain helper call.
            return unsafe { bpf_redirect(ep.parent_ifindex, BPF_F_INGRESS as u64) as i32 };
        }
        let peers = peers::port_is_bridge_like(&port);
        if eth.is_multicast() {
            // The other endpoints (private or not), the macvlan bridge
            // ports of a bridge-like port, then the wire.
            let mut copies = flood_ipvlan(ctx, port.slot, port.nports, &eth, ep.id);
            if peers {
                copies += peers::flood_to_macvlan(ctx, ep.parent_ifindex, &eth);
            }
            stats::flood_copies(ep.id, copies);
        } else if peers && let Some(dest) = peers::macvlan_target(ep.parent_ifindex, &eth) {
            // A macvlan bridge port of this parent.
            return deliver(&ep, &dest, false, len, &eth);
        }
        return out_parent(ctx, &ep);
    }

    // l3, l3s.
    let dst = l3_addr(ctx, &eth, true);
    if !vepa && let Some(dest) = ipvlan::lookup(ctx, ep.parent_ifindex, &dst) {
        return deliver(&ep, &dest, private, len, &eth);
    }
    if eth.is_multicast() {
        return drop(ep.id, Verdict::DropMulticast);
    }
    let Some((src, dst)) = route_addrs(ctx, &eth, &dst) else {
        // Not IPv4/IPv6 (or unreadable): nothing to route.
        return drop(ep.id, Verdict::DropParse);
    };
    if port.mode == IPVL_MODE_L3S {
        // Through the node's stack: routed, its netfilter hooks see it.
        stats::verdict(DIR, Verdict::ToHost);
        return TC_ACT_UNSPEC;
    }
    match ipvlan::route(ctx, &ep, &src, &dst) {
        Route::Via(nh) => {
            let ret = redirect_neigh(ep.parent_ifindex, &nh);
            if ret == TC_ACT_REDIRECT as i32 {
                stats::verdict(DIR, Verdict::Routed);
                ret
            } else {
                drop(ep.id, Verdict::DropRedirect)
            }
        }
        Route::Node => {
            ctx.set_mark(DATAPATH_MARK);
            stats::verdict(DIR, Verdict::ToHost);
            // SAFETY: plain helper call.
            unsafe { bpf_redirect(ep.parent_ifindex, BPF_F_INGRESS as u64) as i32 }
        }
        Route::None => drop(ep.id, Verdict::DropNoRoute),
    }
}

/// To another endpoint of the port, unless the port is private.
#[inline(always)]
fn deliver(ep: &Endpoint, dest: &Endpoint, private: bool, len: u64, eth: &EthHdr) -> i32 {
    if private {
        return drop(ep.id, Verdict::DropPrivate);
    }
    if !bw::pass(dest.id, Way::In, len as u32) {
        stats::rx_dropped(dest.id);
        return drop(ep.id, Verdict::DropRateLimit);
    }
    let ret = crate::kernel::redirect_into(dest.host_ifindex);
    if ret != TC_ACT_REDIRECT as i32 {
        return drop(ep.id, Verdict::DropRedirect);
    }
    stats::verdict(DIR, Verdict::ToEndpoint);
    stats::rx(dest.id, len, eth);
    ret
}

/// Out of the parent, marked so the parent's egress passes it unswitched.
#[inline(always)]
fn out_parent(ctx: &TcContext, ep: &Endpoint) -> i32 {
    ctx.set_mark(DATAPATH_MARK);
    stats::verdict(DIR, Verdict::ToParent);
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(ep.parent_ifindex, 0) as i32 }
}

#[inline(always)]
fn drop(id: u32, why: Verdict) -> i32 {
    stats::verdict(DIR, why);
    stats::tx_dropped(id);
    TC_ACT_SHOT as i32
}
