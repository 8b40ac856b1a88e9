//! Our eBPF L2 switch: the rules of a Linux bridge (learning, flooding,
//! VLAN access ports, isolated ports) as decisions over the switch maps.
//!
//! - Learning: a unicast source MAC is entered as (switch, VLAN, MAC) →
//!   port, with the time; a MAC seen on another port moves there. Entries
//!   the engine made for ports whose MAC it enforces are static: they never
//!   age and never move.
//! - Forwarding: a known unicast destination, learned less than the
//!   switch's ageing time ago and still a port of the switch in the same
//!   VLAN (or its uplink), gets the frame; anything else is flooded to the
//!   switch's other ports of that VLAN.
//! - Isolation (the kernel's `isolated` port flag): an isolated port talks
//!   to non-isolated ports only; the uplink is not isolated.

use core::ffi::c_void;

use attach_common::{
    Direction, FDB_F_STATIC, FdbEntry, FdbKey, MAX_PORTS_PER_SWITCH, MacAddr, SW_F_GUARD,
    SW_F_ISOLATED, SW_F_UPLINK, SW_REFRESH_NS, SwPort, Switch, Verdict,
};
use aya_ebpf::{
    EbpfContext,
    bindings::__sk_buff,
    helpers::{bpf_clone_redirect, bpf_ktime_get_ns},
    programs::TcContext,
};

use crate::{
    eth::EthHdr,
    maps::{SW_FDB, SW_FLOOD, SW_PORTS},
    stats,
};

#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: plain helper call.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
fn is_zero(mac: &MacAddr) -> bool {
    let p = mac.as_ptr();
    // SAFETY: 6 readable bytes.
    unsafe {
        core::ptr::read_unaligned(p as *const u32) == 0
            && core::ptr::read_unaligned(p.add(4) as *const u16) == 0
    }
}

/// Learns that `mac` is behind `port` in (`switch_id`, `vlan`). Group and
/// zero addresses are never learned; static entries stay as they are; an
/// entry already right is refreshed at most every `SW_REFRESH_NS`.
#[inline(always)]
pub fn learn(switch_id: u32, vlan: u16, mac: &MacAddr, port: u32, now: u64) {
    if mac[0] & 1 != 0 || is_zero(mac) {
        return;
    }
    let key = FdbKey {
        switch_id,
        vlan,
        mac: *mac,
    };
    // SAFETY: copied out at once.
    if let Some(e) = unsafe { SW_FDB.get(&key) }.copied() {
        if e.flags & FDB_F_STATIC != 0 {
            return;
        }
        if e.port == port && now.wrapping_sub(e.seen_ns) < SW_REFRESH_NS {
            return;
        }
    }
    let entry = FdbEntry {
        port,
        flags: 0,
        seen_ns: now,
    };
    // A full table evicts its least recently used entry (LRU map).
    let _ = SW_FDB.insert(&key, &entry, 0);
}

/// The port `mac` is behind in (`switch_id`, `vlan`): a static entry, or a
/// learned one younger than the switch's ageing time, whose port still
/// belongs to the switch (in that VLAN, or as its uplink).
#[inline(always)]
pub fn lookup(sw: &Switch, switch_id: u32, vlan: u16, mac: &MacAddr, now: u64) -> Option<SwPort> {
    let key = FdbKey {
        switch_id,
        vlan,
        mac: *mac,
    };
    // SAFETY: copied out at once.
    let e = unsafe { SW_FDB.get(&key) }.copied()?;
    if e.flags & FDB_F_STATIC == 0 && now.wrapping_sub(e.seen_ns) > sw.ageing_ns {
        return None;
    }
    // SAFETY: copied out at once.
    let p = unsafe { SW_PORTS.get(&e.port) }.copied()?;
    if p.switch_id != switch_id || p.has(SW_F_GUARD) {
        return None;
    }
    if !p.has(SW_F_UPLINK) && p.vlan != vlan {
        return None;
    }
    Some(p)
}

/// Whether a frame from a port with `from_isolated` may reach `to`.
#[inline(always)]
pub fn may_reach(from_isolated: bool, to: &SwPort) -> bool {
    !(from_isolated && to.has(SW_F_ISOLATED))
}

/// The flood, flattened to integers for the loop context.
#[repr(C)]
struct Walk {
    skb: *mut __sk_buff,
    base: u32,
    nports: u32,
    /// The port the frame came in on.
    from: u32,
    vlan: u32,
    /// 1 when the sender is isolated.
    isolated: u32,
    /// 1 when the frame came from the uplink (the wire).
    from_uplink: u32,
    len: u64,
    copies: u64,
    eth: EthHdr,
}

/// Where a flooded frame comes from: the port's device, the VLAN it is
/// flooded in, whether the sender is isolated, whether it is the uplink.
pub struct Source {
    pub ifindex: u32,
    pub vlan: u16,
    pub isolated: bool,
    pub uplink: bool,
}

/// Clones the frame to the egress of every container port of switch
/// `switch_id` (row of `nports`) in the source's VLAN but the source, that
/// the source may reach; returns the number of copies. Packet pointers are
/// invalid afterwards: callers hold a copy of the header.
#[inline(always)]
pub fn flood(ctx: &TcContext, switch_id: u32, nports: u32, from: &Source, eth: &EthHdr) -> u64 {
    let nports = if nports < MAX_PORTS_PER_SWITCH {
        nports
    } else {
        MAX_PORTS_PER_SWITCH
    };
    let mut walk = Walk {
        skb: ctx.as_ptr() as *mut __sk_buff,
        base: switch_id.wrapping_mul(MAX_PORTS_PER_SWITCH),
        nports,
        from: from.ifindex,
        vlan: u32::from(from.vlan),
        isolated: u32::from(from.isolated),
        from_uplink: u32::from(from.uplink),
        len: ctx.len() as u64,
        copies: 0,
        eth: *eth,
    };
    crate::kernel::walk(nports, &mut walk);
    walk.copies
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
    let Some(p) = SW_FLOOD.get(walk.base.wrapping_add(i as u32)) else {
        return 1;
    };
    if p.ifindex == walk.from || u32::from(p.vlan) != walk.vlan || !may_reach(walk.isolated != 0, p)
    {
        return 0;
    }
    // SAFETY: the skb pointer is the program's context.
    if unsafe { bpf_clone_redirect(walk.skb, p.ifindex, 0) } == 0 {
        walk.copies += 1;
        stats::rx(p.id, walk.len, &walk.eth);
    } else {
        // Counted on the port and by its reason, in the direction of the
        // flooded frame (from the uplink: rx; from a port: tx).
        stats::rx_dropped(p.id);
        let dir = if walk.from_uplink != 0 {
            Direction::Rx
        } else {
            Direction::Tx
        };
        stats::verdict(dir, Verdict::DropFloodCopy);
    }
    0
}
