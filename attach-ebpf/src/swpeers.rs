//! A NIC that is both the uplink of an eBPF switch and the parent of
//! macvlan endpoints: the switch's untagged ports and the parent's bridge
//! ports reach each other as hosts of one subnet on one switch, without the
//! wire.
//!
//! - A bridge port's unicast to a MAC the switch has behind one of its
//!   untagged container ports goes into that port; its broadcast/multicast
//!   is cloned to every untagged port (`xmit.rs`).
//! - A switch port's unicast to a bridge port's MAC goes into it; its
//!   broadcast/multicast is cloned to every bridge port
//!   (`tc_switch.rs`).
//! - Private and VEPA endpoints leave by the wire, as between two macvlan
//!   endpoints; VLAN ports of the switch are their own LANs.
//! - What one side delivered locally and the wire reflects is not delivered
//!   again: the parent's receive skips multicast from a switch port's MAC,
//!   the switch's uplink multicast from a bridge port's.
//!
//! The macvlan side looks into the switch only when the parent's config
//! carries `PARENT_F_SWITCH` (no extra lookup otherwise). Not in the compat
//! build (kernels without `bpf_loop`): a third flood walk in one program
//! takes their verifier minutes; the engine refuses the pairing there.

use attach_common::{
    EP_F_NESTED, Endpoint, MODE_BRIDGE, PARENT_F_SWITCH, ParentCfg, SW_F_UPLINK, SwPort,
};
use aya_ebpf::programs::TcContext;

use crate::{
    eth::EthHdr,
    flood::{Rule, flood},
    macvlan,
    maps::{PARENTS, SW_PORTS, SWITCHES},
    switch::{self, Source},
};

/// The switch whose uplink `parent` is: its id and row length, when the
/// parent's config says there is one.
#[inline(always)]
fn switch_of(cfg: &ParentCfg, parent: u32) -> Option<(u32, attach_common::Switch)> {
    if crate::OPEN_WALK || cfg.flags & PARENT_F_SWITCH == 0 {
        return None;
    }
    // SAFETY: copied out at once.
    let up = (unsafe { SW_PORTS.get(&parent) }).copied()?;
    if !up.has(SW_F_UPLINK) {
        return None;
    }
    // SAFETY: copied out at once.
    let sw = (unsafe { SWITCHES.get(&up.switch_id) }).copied()?;
    Some((up.switch_id, sw))
}

/// The untagged container port of the switch that `mac` is behind.
#[inline(always)]
fn untagged_port(cfg: &ParentCfg, parent: u32, mac: &attach_common::MacAddr) -> Option<SwPort> {
    let (id, sw) = switch_of(cfg, parent)?;
    switch::lookup(&sw, id, 0, mac, switch::now()).filter(|p| !p.has(SW_F_UPLINK))
}

/// macvlan transmit, unicast not for the parent's own endpoints: the
/// switch port it is for, if the sender is a bridge port.
#[inline(always)]
pub fn port_target(cfg: &ParentCfg, sender: &Endpoint, eth: &EthHdr) -> Option<SwPort> {
    if sender.mode != MODE_BRIDGE {
        return None;
    }
    untagged_port(cfg, sender.parent_ifindex, &eth.dst)
}

/// macvlan transmit, broadcast/multicast of a bridge port: a copy to every
/// untagged port of the switch; the number of copies.
#[inline(always)]
pub fn flood_to_ports(ctx: &TcContext, cfg: &ParentCfg, sender: &Endpoint, eth: &EthHdr) -> u64 {
    if sender.mode != MODE_BRIDGE {
        return 0;
    }
    let Some((id, sw)) = switch_of(cfg, sender.parent_ifindex) else {
        return 0;
    };
    // From no port of the switch: every untagged port may get it.
    let from = Source {
        ifindex: 0,
        vlan: 0,
        isolated: false,
        uplink: false,
    };
    switch::flood(ctx, id, sw.nports, &from, eth)
}

/// macvlan receive, multicast: whether an untagged port of the switch sent
/// it (the bridge ports had it on its transmit; this is the wire's
/// reflection).
#[inline(always)]
pub fn sent_by_switch_port(cfg: &ParentCfg, parent: u32, eth: &EthHdr) -> bool {
    untagged_port(cfg, parent, &eth.src).is_some()
}

/// The parent's config, if the switch's `uplink` is also a macvlan parent
/// with the pairing on.
#[inline(always)]
fn parent_of_uplink(uplink: u32) -> Option<ParentCfg> {
    if crate::OPEN_WALK {
        return None;
    }
    // SAFETY: copied out at once.
    (unsafe { PARENTS.get(&uplink) })
        .copied()
        .filter(|c| c.flags & PARENT_F_SWITCH != 0)
}

/// Whether the switch's `uplink` is also a macvlan parent with the pairing
/// on.
#[inline(always)]
pub fn shares(uplink: u32) -> bool {
    parent_of_uplink(uplink).is_some()
}

/// macvlan receive, a frame marked as an endpoint's on its way to the
/// node: whether the switch's program follows on this parent (and clears
/// the mark there, so it does not take the frame for the wire's).
#[inline(always)]
pub fn switch_follows(parent: u32) -> bool {
    parent_of_uplink(parent).is_some()
}

/// Switch, from an untagged port, unicast the switch does not deliver to a
/// port: the bridge port of the uplink's parent that owns the destination
/// (a nested endpoint is left to the wire).
#[inline(always)]
pub fn bridge_port_target(uplink: u32, eth: &EthHdr) -> Option<Endpoint> {
    parent_of_uplink(uplink)?;
    macvlan::lookup(uplink, &eth.dst).filter(|d| d.mode == MODE_BRIDGE && !d.has(EP_F_NESTED))
}

/// Switch, from an untagged port, broadcast/multicast: a copy to every
/// bridge port of the uplink's parent; the number of copies.
#[inline(always)]
pub fn flood_to_bridge_ports(ctx: &TcContext, uplink: u32, eth: &EthHdr) -> u64 {
    match parent_of_uplink(uplink) {
        Some(cfg) => flood(ctx, &cfg, eth, Rule::Peer),
        None => 0,
    }
}

/// Switch uplink, from the wire: whether the frame is one the parent's
/// endpoints deal with — multicast a bridge port sent (the switch's ports
/// had it on its transmit; this is the wire's reflection or the node's
/// copy), or unicast to an endpoint (the macvlan program delivers it, also
/// when it runs after the switch's).
#[inline(always)]
pub fn parents_own(uplink: u32, eth: &EthHdr) -> bool {
    if parent_of_uplink(uplink).is_none() {
        return false;
    }
    if eth.is_multicast() {
        macvlan::lookup(uplink, &eth.src).is_some_and(|s| s.mode == MODE_BRIDGE)
    } else {
        macvlan::lookup(uplink, &eth.dst).is_some()
    }
}
