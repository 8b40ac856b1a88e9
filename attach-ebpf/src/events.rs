//! Events for `attach monitor`: every drop, and every decision while
//! tracing is switched on (`attach_config[0] & CFG_TRACE`, the global
//! `ATTACH_CONFIG`).

use attach_common::{CFG_TRACE, Direction, Event, Verdict};
use aya_ebpf::helpers::bpf_ktime_get_ns;

use crate::{
    eth::EthHdr,
    maps::{ATTACH_CONFIG, EVENTS},
    stats,
};

/// What an event says about its frame.
pub struct Pkt<'a> {
    pub ifindex: u32,
    pub endpoint: u32,
    pub len: u32,
    pub eth: &'a EthHdr,
}

pub const NO_ENDPOINT: u32 = u32::MAX;

#[inline(always)]
fn tracing() -> bool {
    ATTACH_CONFIG.load() & CFG_TRACE != 0
}

/// Counts the verdict, and emits an event when it is a drop or tracing is on.
#[inline(always)]
pub fn report(dir: Direction, v: Verdict, p: &Pkt) {
    stats::verdict(dir, v);
    if v.is_drop() || tracing() {
        let e = Event {
            // SAFETY: plain helper call.
            ktime_ns: unsafe { bpf_ktime_get_ns() },
            ifindex: p.ifindex,
            len: p.len,
            endpoint: p.endpoint,
            direction: dir as u8,
            verdict: v as u8,
            proto: p.eth.proto,
            src: p.eth.src,
            dst: p.eth.dst,
            _pad: [0; 4],
        };
        // A full buffer loses the event, never the frame; the loss is
        // counted, so `attach monitor`, `attach stats` and the metrics can
        // say how many events they did not see.
        if EVENTS.output(&e, 0).is_err() {
            stats::events_lost(dir);
        }
    }
}
