//! Programs `attach bench` needs besides the datapath. None of them is
//! attached by the engine; the bench loads them from the same object.
//!
//! - `bench_tx` (XDP): the traffic generator. Run with BPF_PROG_TEST_RUN in
//!   live-frames mode on a wire veth, it sends every frame out of that veth.
//! - `bench_drop` (XDP): counts and drops; the receiving end of M2.
//! - `bench_peer` (tc): the `redirect-peer` contender: `bpf_redirect_peer` to
//!   one fixed veth, no lookup (what Cilium-style host routing costs).
//! - `bench_out` (tc): its way back: `bpf_redirect` out of one fixed device.

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_TX},
    btf_maps::PerCpuArray,
    helpers::{bpf_redirect, bpf_redirect_peer},
    macros::btf_map,
};

/// Target of `bench_peer` (a host-side veth), set at load time. Read-only
/// data: the verifier folds it into a constant.
#[unsafe(no_mangle)]
static BENCH_PEER_IF: u32 = 0;

/// Target of `bench_out` (the contender's parent), set at load time.
#[unsafe(no_mangle)]
static BENCH_OUT_IF: u32 = 0;

/// Frames `bench_drop` dropped (one per-CPU counter). Not pinned: the
/// bench reads it through the object it loaded.
#[btf_map(name = "attach_bench")]
pub static DROPPED: PerCpuArray<u64, 1> = PerCpuArray::new();

#[inline(always)]
fn global(v: &u32) -> u32 {
    // SAFETY: a plain read; volatile so the compiler keeps the load the
    // loader patches.
    unsafe { core::ptr::read_volatile(v) }
}

pub fn peer() -> i32 {
    // SAFETY: plain helper call.
    unsafe { bpf_redirect_peer(global(&BENCH_PEER_IF), 0) as i32 }
}

pub fn out() -> i32 {
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(global(&BENCH_OUT_IF), 0) as i32 }
}

pub fn tx() -> u32 {
    XDP_TX
}

pub fn drop() -> u32 {
    if let Some(p) = DROPPED.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 }
    }
    XDP_DROP
}
