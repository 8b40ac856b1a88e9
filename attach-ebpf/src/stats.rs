//! Counters: verdicts by direction, events lost, and per-endpoint traffic.

use attach_common::{Direction, EndpointStats, Verdict};

use crate::{
    eth::EthHdr,
    maps::{EP_STATS, VERDICTS},
};

#[inline(always)]
pub fn verdict(dir: Direction, v: Verdict) {
    if let Some(p) = VERDICTS.get_ptr_mut(v.slot(dir)) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 }
    }
}

/// An event the ring buffer had no room for.
#[inline(always)]
pub fn events_lost(dir: Direction) {
    if let Some(p) = VERDICTS.get_ptr_mut(attach_common::events_lost_slot(dir)) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 }
    }
}

#[inline(always)]
fn endpoint(id: u32) -> Option<&'static mut EndpointStats> {
    // SAFETY: per-CPU slot, no concurrent writer on this CPU.
    EP_STATS.get_ptr_mut(id).map(|p| unsafe { &mut *p })
}

/// A frame delivered to endpoint `id`.
#[inline(always)]
pub fn rx(id: u32, len: u64, eth: &EthHdr) {
    if let Some(s) = endpoint(id) {
        s.rx_packets += 1;
        s.rx_bytes += len;
        if eth.is_multicast() {
            if eth.is_broadcast() {
                s.rx_broadcast += 1;
            } else {
                s.rx_multicast += 1;
            }
        }
    }
}

/// A unicast frame delivered to endpoint `id`: [`rx`] without the group
/// check, for paths that decided on a unicast destination (with the header
/// read in place, the compiler cannot reuse that decision after a helper
/// call and would read the destination again).
#[inline(always)]
pub fn rx_unicast(id: u32, len: u64) {
    if let Some(s) = endpoint(id) {
        s.rx_packets += 1;
        s.rx_bytes += len;
    }
}

/// A frame sent by endpoint `id`.
#[inline(always)]
pub fn tx(id: u32, len: u64, eth: &EthHdr) {
    if let Some(s) = endpoint(id) {
        s.tx_packets += 1;
        s.tx_bytes += len;
        if eth.is_multicast() {
            if eth.is_broadcast() {
                s.tx_broadcast += 1;
            } else {
                s.tx_multicast += 1;
            }
        }
    }
}

#[inline(always)]
pub fn flood_copies(id: u32, copies: u64) {
    if let Some(s) = endpoint(id) {
        s.flood_copies += copies;
    }
}

#[inline(always)]
pub fn rx_dropped(id: u32) {
    if let Some(s) = endpoint(id) {
        s.rx_dropped += 1;
    }
}

#[inline(always)]
pub fn tx_dropped(id: u32) {
    if let Some(s) = endpoint(id) {
        s.tx_dropped += 1;
    }
}
