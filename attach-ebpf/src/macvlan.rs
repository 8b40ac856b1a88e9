//! The kernel's macvlan rules (drivers/net/macvlan.c), as pure decisions over
//! the endpoint table. Both receive paths (tc and XDP) and the transmit path
//! act on these.

use core::ptr::read_volatile;

use attach_common::{
    EP_CACHE_WRITING, Endpoint, EndpointKey, MODE_ALL, MODE_BRIDGE, MODE_PASSTHRU, MODE_PRIVATE,
    MODE_VEPA, MacAddr, PARENT_F_PASSTHRU, ParentCfg, ep_cache_slot_words, mac_number,
};

use crate::{
    eth::EthHdr,
    maps::{ENDPOINTS, EP_CACHE},
};

/// What to do with a frame received on a parent.
pub enum Rx {
    /// Unicast for this endpoint.
    Endpoint(Endpoint),
    /// Not for an endpoint: the node's stack has it.
    Host,
    /// Broadcast/multicast: clone to the endpoints `rx_flood_accepts` allows,
    /// and the node's stack gets it too. The sender is the endpoint whose
    /// frame came back from the wire (`NO_SENDER` and mode 0: none). Plain
    /// integers, not an `Option<Endpoint>`: a `None`'s payload is undefined,
    /// and the verifier rejects a stack slot written from it.
    Flood { sender_mode: u8, sender_id: u32 },
    /// A private/passthru endpoint's own broadcast reflected back: to it alone.
    Sender(Endpoint),
}

/// The endpoint with `mac` (a field of an [`EthHdr`], so 2-byte aligned:
/// read as three 16-bit words) on this parent: from its cache slot, or
/// from the table.
#[inline(always)]
pub fn lookup(parent_ifindex: u32, mac: &MacAddr) -> Option<Endpoint> {
    // SAFETY: 6 readable bytes, 2-byte aligned (see above).
    let words: [u16; 3] = unsafe { core::ptr::read(mac.as_ptr().cast()) };
    if let Some(ep) = cached(parent_ifindex, words) {
        return Some(ep);
    }
    // SAFETY: the same bytes.
    let mac: MacAddr = unsafe { core::mem::transmute(words) };
    let key = EndpointKey::new(parent_ifindex, mac);
    // SAFETY: the value is copied out before any map update can reuse it.
    unsafe { ENDPOINTS.get(&key) }.copied()
}

/// The endpoint in the key's cache slot, if the slot holds this key and
/// was not being written while it was read (a seqlock: see
/// `attach_common::EpCacheSlot`). The slot is read with volatile loads,
/// which stay in this order: `seq`, the endpoint, `seq` again. The writer
/// stores `EP_CACHE_WRITING`, the endpoint, then a new `seq`; x86 keeps
/// stores in order with stores and loads with loads (user space fills the
/// cache only there), so a read that saw any of a write's endpoint stores
/// sees `seq` change.
#[inline(always)]
fn cached(parent_ifindex: u32, mac: [u16; 3]) -> Option<Endpoint> {
    let slot: *const u32 = EP_CACHE
        .get_ptr(ep_cache_slot_words(parent_ifindex, mac))?
        .cast();
    // SAFETY: a 24-byte, 8-aligned map value, valid for the program's run;
    // a concurrent write is detected by `seq`, not prevented.
    let (seq, host, parent, id, mac_rest, again) = unsafe {
        (
            read_volatile(slot),
            read_volatile(slot.add(1)),
            read_volatile(slot.add(2)),
            read_volatile(slot.add(3)),
            // The MAC's six bytes, mode and flags (little-endian).
            read_volatile(slot.add(4).cast::<u64>()),
            read_volatile(slot),
        )
    };
    let hit = seq != EP_CACHE_WRITING
        && seq == again
        && parent == parent_ifindex
        && (mac_rest ^ mac_number(mac)) << 16 == 0;
    let words = [host, parent, id, mac_rest as u32, (mac_rest >> 32) as u32];
    // SAFETY: `Endpoint` is five 32-bit words' worth of plain integers.
    hit.then(|| unsafe { core::mem::transmute::<[u32; 5], Endpoint>(words) })
}

/// macvlan_handle_frame, unicast: the endpoint owning the destination on
/// this parent. This is the whole hot path: an endpoint key carries its
/// parent, so a hit also says the parent is ours.
#[inline(always)]
pub fn rx_unicast(parent_ifindex: u32, eth: &EthHdr) -> Option<Endpoint> {
    lookup(parent_ifindex, &eth.dst)
}

/// macvlan_handle_frame, unicast that no endpoint owns: a passthru endpoint
/// takes every unicast frame (its own MAC was found by `rx_unicast` already),
/// else the node's stack has it.
#[inline(always)]
pub fn rx_unicast_miss(cfg: &ParentCfg) -> Rx {
    if cfg.flags & PARENT_F_PASSTHRU != 0 {
        Rx::Endpoint(cfg.passthru)
    } else {
        Rx::Host
    }
}

/// macvlan_handle_frame, broadcast/multicast: decided by the source.
#[inline(always)]
pub fn rx_multicast(parent_ifindex: u32, eth: &EthHdr) -> Rx {
    match lookup(parent_ifindex, &eth.src) {
        Some(src) if src.mode & (MODE_PRIVATE | MODE_PASSTHRU) != 0 => Rx::Sender(src),
        Some(src) => Rx::Flood {
            sender_mode: src.mode,
            sender_id: src.id,
        },
        None => Rx::Flood {
            sender_mode: 0,
            sender_id: NO_SENDER,
        },
    }
}

/// Sender id of a frame from outside (no endpoint has it).
pub const NO_SENDER: u32 = u32::MAX;
/// Sender id of a frame an ipvlan endpoint of the same parent sent and the
/// wire reflected: flooded as a bridge port's (`peers.rs`).
pub const PEER_SENDER: u32 = u32::MAX - 1;

/// macvlan_process_broadcast: who gets a flooded frame, by the sender's mode
/// (`sender_mode` 0 and `sender_id` NO_SENDER: from outside).
#[inline(always)]
pub fn rx_flood_accepts(sender_mode: u8, sender_id: u32, rcv: &Endpoint) -> bool {
    let modes = if sender_id == NO_SENDER {
        // From outside: everyone.
        MODE_ALL
    } else if sender_id == rcv.id {
        return false;
    } else if sender_mode == MODE_VEPA {
        // A VEPA port's frame came back from the switch: VEPA and bridge ports.
        MODE_VEPA | MODE_BRIDGE
    } else {
        // A bridge port's frame: bridge ports saw it on transmit already.
        MODE_VEPA
    };
    rcv.mode & modes != 0
}

/// macvlan_queue_xmit, bridge mode: a multicast goes to every other bridge port.
#[inline(always)]
pub fn tx_flood_accepts(sender_id: u32, rcv: &Endpoint) -> bool {
    rcv.mode == MODE_BRIDGE && rcv.id != sender_id
}

/// macvlan_queue_xmit, bridge mode: unicast to another bridge port stays local.
#[inline(always)]
pub fn tx_local_target(sender: &Endpoint, eth: &EthHdr) -> Option<Endpoint> {
    if sender.mode != MODE_BRIDGE {
        return None;
    }
    lookup(sender.parent_ifindex, &eth.dst).filter(|d| d.mode == MODE_BRIDGE)
}
