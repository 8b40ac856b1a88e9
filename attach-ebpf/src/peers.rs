//! Kinds sharing a parent: macvlan and ipvlan endpoints on one parent reach
//! each other as hosts of one subnet on one switch would, without the wire.
//!
//! The kernel cannot put both drivers on one device, so there is no rule to
//! mirror; each kind's own local-delivery rule is kept: a macvlan endpoint
//! in bridge mode and an ipvlan port in l2 mode that is neither private nor
//! VEPA (a "bridge-like" port) deliver to each other locally — unicast by
//! destination MAC (a macvlan endpoint's) or by destination IP (the shared
//! MAC: an ipvlan endpoint's), broadcast/multicast cloned to the other
//! kind's bridge-like side. Every other pairing leaves by the parent, and
//! the wire decides (a reflecting switch brings it back), as between two
//! endpoints of one kind. Frames one side already delivered locally and the
//! wire reflects are not delivered again.
//!
//! Not in the compat build (kernels without `bpf_loop`): a second
//! open-coded flood walk in one program takes their verifier minutes, so
//! there the kinds meet through the wire only, as before.

use attach_common::{
    EP_F_NESTED, Endpoint, IPVL_F_PRIVATE, IPVL_F_VEPA, IpvlanParent, MODE_BRIDGE, ParentCfg,
};
use aya_ebpf::programs::TcContext;

use crate::{
    eth::{EthHdr, mac_eq},
    flood::{Rule, flood, flood_ipvlan},
    ipvlan, macvlan,
    l3::l3_addr,
    maps::{IPVL_PARENTS, PARENTS},
};

/// The parent's ipvlan port, if it is bridge-like (l2, neither private nor
/// VEPA).
#[inline(always)]
fn bridge_like_port(parent_ifindex: u32) -> Option<IpvlanParent> {
    if crate::OPEN_WALK {
        return None;
    }
    // SAFETY: copied out at once.
    (unsafe { IPVL_PARENTS.get(&parent_ifindex) })
        .copied()
        .filter(port_is_bridge_like)
}

/// Whether a port's flags let its endpoints reach the other kind locally.
#[inline(always)]
pub fn port_is_bridge_like(port: &IpvlanParent) -> bool {
    !crate::OPEN_WALK && ipvlan::is_l2(port) && port.flags & (IPVL_F_PRIVATE | IPVL_F_VEPA) == 0
}

/// macvlan transmit, unicast to the parent's MAC (which the ipvlan
/// endpoints share): the up ipvlan endpoint owning the destination
/// address, if the sender is a bridge port and the port bridge-like. The
/// parent's MAC (`cfg`, already read) is compared first, so a frame for
/// any other MAC costs no lookup.
#[inline(always)]
pub fn ipvlan_target(
    ctx: &TcContext,
    sender: &Endpoint,
    cfg: &ParentCfg,
    eth: &EthHdr,
) -> Option<Endpoint> {
    if sender.mode != MODE_BRIDGE || !mac_eq(&eth.dst, &cfg.mac) {
        return None;
    }
    bridge_like_port(sender.parent_ifindex)?;
    ipvlan::lookup(ctx, sender.parent_ifindex, &l3_addr(ctx, eth, true))
}

/// macvlan transmit, broadcast/multicast of a bridge port: a copy to every
/// endpoint of a bridge-like ipvlan port; the number of copies.
#[inline(always)]
pub fn flood_to_ipvlan(ctx: &TcContext, sender: &Endpoint, eth: &EthHdr) -> u64 {
    if sender.mode != MODE_BRIDGE {
        return 0;
    }
    match bridge_like_port(sender.parent_ifindex) {
        // The sender's id is no ipvlan endpoint's: every one gets a copy,
        // and a failed copy counts as transmit.
        Some(port) => flood_ipvlan(ctx, port.slot, port.nports, eth, sender.id),
        None => 0,
    }
}

/// ipvlan transmit from a bridge-like port, unicast to another MAC: the
/// macvlan bridge port owning it (a nested endpoint is left to the wire).
#[inline(always)]
pub fn macvlan_target(parent_ifindex: u32, eth: &EthHdr) -> Option<Endpoint> {
    if crate::OPEN_WALK {
        return None;
    }
    macvlan::lookup(parent_ifindex, &eth.dst)
        .filter(|d| d.mode == MODE_BRIDGE && !d.has(EP_F_NESTED))
}

/// ipvlan transmit from a bridge-like port, broadcast/multicast: a copy to
/// every macvlan bridge port of the parent; the number of copies.
#[inline(always)]
pub fn flood_to_macvlan(ctx: &TcContext, parent_ifindex: u32, eth: &EthHdr) -> u64 {
    if crate::OPEN_WALK {
        return 0;
    }
    // SAFETY: copied out at once.
    match (unsafe { PARENTS.get(&parent_ifindex) }).copied() {
        Some(cfg) => flood(ctx, &cfg, eth, Rule::Peer),
        None => 0,
    }
}

/// ipvlan receive, multicast on a bridge-like port: whether a macvlan
/// bridge port sent it (it cloned it to the port's endpoints on transmit;
/// this is the wire's reflection).
#[inline(always)]
pub fn sent_by_macvlan_bridge_port(parent_ifindex: u32, eth: &EthHdr) -> bool {
    if crate::OPEN_WALK {
        return false;
    }
    macvlan::lookup(parent_ifindex, &eth.src).is_some_and(|s| s.mode == MODE_BRIDGE)
}

/// macvlan receive, multicast from the parent's own MAC: whether an
/// endpoint of a bridge-like ipvlan port sent it (it cloned it to the
/// bridge ports on transmit; this is the wire's reflection).
#[inline(always)]
pub fn sent_by_ipvlan_endpoint(ctx: &TcContext, cfg: &ParentCfg, ifindex: u32, eth: &EthHdr) -> bool {
    if !mac_eq(&eth.src, &cfg.mac) {
        return false;
    }
    match bridge_like_port(ifindex) {
        Some(port) => !ipvlan::external(ctx, &port, ifindex, eth),
        None => false,
    }
}
