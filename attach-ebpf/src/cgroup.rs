//! `host` attachments: counting a cgroup's traffic. The container shares the
//! node's namespace, so no device is its own; its sockets are, through its
//! cgroup (v2). Each attachment loads these programs with its own counter
//! slot in the read-only global `ATTACH_CG_COUNTER`, and attaches them to its
//! cgroup: the kernel runs them for every socket in it and its descendants.
//! They only count: every packet is allowed.

use aya_ebpf::{Global, programs::SkBuffContext};

use crate::maps::CG_STATS;

/// The slot of [`CG_STATS`] this loaded instance counts into (set by the
/// loader: `attach_common::CG_COUNTER_GLOBAL`).
#[unsafe(no_mangle)]
static ATTACH_CG_COUNTER: Global<u32> = Global::new(0);

/// cgroup_skb verdict: let the packet through.
const ALLOW: i32 = 1;

/// A packet delivered to a socket of the cgroup.
#[inline(always)]
pub fn ingress(ctx: &SkBuffContext) -> i32 {
    if let Some(p) = CG_STATS.get_ptr_mut(ATTACH_CG_COUNTER.load()) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        let s = unsafe { &mut *p };
        s.rx_packets += 1;
        s.rx_bytes += u64::from(ctx.len());
    }
    ALLOW
}

/// A packet sent by a socket of the cgroup.
#[inline(always)]
pub fn egress(ctx: &SkBuffContext) -> i32 {
    if let Some(p) = CG_STATS.get_ptr_mut(ATTACH_CG_COUNTER.load()) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        let s = unsafe { &mut *p };
        s.tx_packets += 1;
        s.tx_bytes += u64::from(ctx.len());
    }
    ALLOW
}
