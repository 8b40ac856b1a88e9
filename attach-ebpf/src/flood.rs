//! Flooding from tc: one clone per accepted port of the parent's flood row.
//!
//! A row holds endpoint ids, each looked up in `FLOOD_EPS`. The row is
//! walked with `bpf_loop`, which the verifier checks once; an open-coded
//! loop over 256 ports exceeds its one-million-instruction budget
//! (kernels without `bpf_loop` walk a shorter row: [`crate::kernel::walk`]).

use core::ffi::c_void;

use attach_common::{Direction, EP_F_NESTED, Endpoint, MAX_PORTS_PER_PARENT, ParentCfg, Verdict};
use aya_ebpf::{
    EbpfContext, bindings::__sk_buff, helpers::bpf_clone_redirect, programs::TcContext,
};

use crate::{
    eth::EthHdr,
    macvlan,
    maps::{FLOOD, FLOOD_EPS},
    nested::{self, Tag},
    stats,
};

/// Who receives a copy.
pub enum Rule {
    /// A frame from the wire (the endpoint it came back from: its mode and
    /// id, or 0 and `NO_SENDER`).
    Rx { mode: u8, id: u32 },
    /// A bridge-mode endpoint's transmit: the other bridge ports.
    Tx { sender: Endpoint },
    /// The node's own frame: endpoints with host access.
    HostAccess,
    /// An ipvlan endpoint's transmit on the same parent: every bridge port
    /// (`peers.rs`).
    Peer,
}

/// `Rule` flattened to plain integers: an enum copied into the loop context
/// can carry uninitialised payload bytes, which the verifier rejects.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Sender {
    pub rule: u8,
    pub mode: u8,
    pub _pad: [u8; 2],
    pub id: u32,
}

const RULE_RX: u8 = 0;
const RULE_TX: u8 = 1;
const RULE_HOST: u8 = 2;
const RULE_IPVLAN: u8 = 3;

impl Rule {
    #[inline(always)]
    fn flatten(&self) -> Sender {
        let (rule, mode, id) = match self {
            Rule::Rx { mode, id } => (RULE_RX, *mode, *id),
            Rule::Tx { sender } => (RULE_TX, sender.mode, sender.id),
            Rule::HostAccess => (RULE_HOST, 0, macvlan::NO_SENDER),
            Rule::Peer => (RULE_TX, 0, macvlan::NO_SENDER),
        };
        Sender {
            rule,
            mode,
            _pad: [0; 2],
            id,
        }
    }
}

#[repr(C)]
struct Walk {
    skb: *mut __sk_buff,
    sender: Sender,
    base: u32,
    nports: u32,
    len: u64,
    copies: u64,
    eth: EthHdr,
    /// The frame's outermost VLAN tag, for nested endpoints' copies.
    tag: Tag,
}

/// Clones the frame to the egress of every accepted port's host-side veth
/// (which delivers it into the container); returns the number of copies.
/// Packet pointers are invalid afterwards: callers hold a copy of the header.
#[inline(always)]
pub fn flood(ctx: &TcContext, cfg: &ParentCfg, eth: &EthHdr, rule: Rule) -> u64 {
    flood_row(ctx, cfg.slot, cfg.nports, eth, rule.flatten())
}

/// ipvlan: [`flood`] to every endpoint of the port in row `slot` (of
/// `nports`) but the sender (`NO_SENDER`: from outside).
#[inline(always)]
pub fn flood_ipvlan(ctx: &TcContext, slot: u32, nports: u32, eth: &EthHdr, sender_id: u32) -> u64 {
    let sender = Sender {
        rule: RULE_IPVLAN,
        mode: 0,
        _pad: [0; 2],
        id: sender_id,
    };
    flood_row(ctx, slot, nports, eth, sender)
}

#[inline(always)]
fn flood_row(ctx: &TcContext, slot: u32, nports: u32, eth: &EthHdr, sender: Sender) -> u64 {
    let nports = if nports < MAX_PORTS_PER_PARENT {
        nports
    } else {
        MAX_PORTS_PER_PARENT
    };
    let mut walk = Walk {
        skb: ctx.as_ptr() as *mut __sk_buff,
        sender,
        base: slot.wrapping_mul(MAX_PORTS_PER_PARENT),
        nports,
        len: ctx.len() as u64,
        copies: 0,
        eth: *eth,
        tag: nested::tags(ctx).0,
    };
    crate::kernel::walk(nports, &mut walk);
    walk.copies
}

#[inline(always)]
fn accepts(s: &Sender, rcv: &Endpoint) -> bool {
    match s.rule {
        RULE_RX => macvlan::rx_flood_accepts(s.mode, s.id, rcv),
        RULE_TX => macvlan::tx_flood_accepts(s.id, rcv),
        RULE_IPVLAN => rcv.id != s.id,
        _ => rcv.has(attach_common::EP_F_HOST_ACCESS),
    }
}

impl crate::kernel::Walker for Walk {
    extern "C" fn step(i: u64, walk: *mut c_void) -> i64 {
        flood_one(i, walk)
    }
}

#[inline(always)]
fn flood_one(i: u64, walk: *mut c_void) -> i64 {
    // SAFETY: the walk passes back the pointer `flood` gave it.
    let walk = unsafe { &mut *(walk as *mut Walk) };
    let Some(&id) = FLOOD.get(walk.base.wrapping_add(i as u32)) else {
        return 1;
    };
    let Some(entry) = FLOOD_EPS.get(id) else {
        return 0;
    };
    let ep = &entry.ep;
    // Never written, or another endpoint's since: no copy.
    if ep.id != id || ep.host_ifindex == 0 {
        return 0;
    }
    if !accepts(&walk.sender, ep) {
        return 0;
    }
    if ep.has(EP_F_NESTED) {
        nested_copy(walk, ep);
        return 0;
    }
    // SAFETY: the skb pointer is the program's context.
    if unsafe { bpf_clone_redirect(walk.skb, ep.host_ifindex, 0) } == 0 {
        walk.copies += 1;
        stats::rx(ep.id, walk.len, &walk.eth);
    } else {
        copy_failed(&walk.sender, ep.id);
    }
    0
}

/// A copy the clone helper could not make (a storm can exhaust memory, a
/// device can be going away): counted on the endpoint and by its reason,
/// in the direction of the frame that was flooded.
#[inline(always)]
fn copy_failed(s: &Sender, id: u32) {
    stats::rx_dropped(id);
    let dir = match s.rule {
        RULE_TX => Direction::Tx,
        RULE_HOST => Direction::Host,
        RULE_IPVLAN if s.id != macvlan::NO_SENDER => Direction::Tx,
        _ => Direction::Rx,
    };
    stats::verdict(dir, Verdict::DropFloodCopy);
}

/// A copy for a nested endpoint: its tags pushed for the clone, popped
/// again for the next one. Not in its VLAN: no copy (not a drop: a flood
/// reaches the members of the frame's VLAN).
#[inline(always)]
fn nested_copy(walk: &mut Walk, ep: &Endpoint) {
    let Some(cfg) = nested::host_cfg(ep.id) else {
        stats::rx_dropped(ep.id);
        return;
    };
    let Ok(pushed) = nested::push_for(walk.skb, &walk.tag, &cfg) else {
        return;
    };
    // SAFETY: the skb pointer is the program's context.
    if unsafe { bpf_clone_redirect(walk.skb, ep.host_ifindex, 0) } == 0 {
        walk.copies += 1;
        stats::rx(ep.id, walk.len, &walk.eth);
    } else {
        copy_failed(&walk.sender, ep.id);
    }
    nested::pop_n(walk.skb, pushed);
}
