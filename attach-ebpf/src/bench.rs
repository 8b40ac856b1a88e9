//! Programs `attach bench` needs besides the datapath. None of them is
//! attached by the engine; the bench loads them from the same object.
//!
//! - `bench_tx` (XDP): the traffic generator. Run with BPF_PROG_TEST_RUN in
//!   live-frames mode on a wire veth, it writes the frame the bench set in
//!   `attach_gen_frm` and sends it out of that veth.
//! - `bench_bare_tx` (XDP): only XDP_TX; M6's reference for what a test run
//!   of an XDP program costs by itself.
//! - `bench_drop` (XDP): counts and drops; the receiving end of M2.
//! - `bench_peer` (tc): the `redirect-peer` contender: `bpf_redirect_peer` to
//!   one fixed veth, no lookup (what Cilium-style host routing costs).
//! - `bench_out` (tc): its way back: `bpf_redirect` out of one fixed device.

use attach_common::{GEN_FRAME_LEN, GEN_FRAME_WORDS};
use aya_ebpf::{
    bindings::xdp_action::{XDP_ABORTED, XDP_DROP, XDP_TX},
    btf_maps::{Array, PerCpuArray},
    helpers::{bpf_redirect, bpf_redirect_peer},
    macros::btf_map,
    programs::XdpContext,
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

/// The frame `bench_tx` sends, set by the bench before each generator run.
#[btf_map(name = "attach_gen_frm")]
pub static GEN_FRAME: Array<[u64; GEN_FRAME_WORDS], 1> = Array::new();
// `tx` copies whole words, then one 4-byte tail.
const _: () = assert!(GEN_FRAME_LEN % 8 == 4);

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

pub fn tx(ctx: &XdpContext) -> u32 {
    // Live frames recycle the generator's own pages, and a receiver may
    // rewrite headers in place before a page comes back (fraglist GRO's
    // re-segmentation renumbers the IP IDs): each frame is written afresh,
    // as every frame a sender puts on a wire is new.
    let dst = ctx.data();
    if dst + GEN_FRAME_LEN > ctx.data_end() {
        return XDP_ABORTED;
    }
    let Some(words) = GEN_FRAME.get(0) else {
        return XDP_ABORTED;
    };
    let (src, dst) = (words.as_ptr() as *const u8, dst as *mut u8);
    // SAFETY: `dst` has GEN_FRAME_LEN bytes (checked above), `src` is a
    // map value of GEN_FRAME_WORDS * 8 >= GEN_FRAME_LEN bytes.
    unsafe {
        for i in 0..GEN_FRAME_LEN / 8 {
            let w = core::ptr::read_unaligned((src as *const u64).add(i));
            core::ptr::write_unaligned((dst as *mut u64).add(i), w);
        }
        let tail = GEN_FRAME_LEN / 8 * 8;
        let w = core::ptr::read_unaligned(src.add(tail) as *const u32);
        core::ptr::write_unaligned(dst.add(tail) as *mut u32, w);
    }
    XDP_TX
}

pub fn bare_tx() -> u32 {
    XDP_TX
}

pub fn drop() -> u32 {
    if let Some(p) = DROPPED.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 }
    }
    XDP_DROP
}
