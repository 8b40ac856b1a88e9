//! What the kernel the programs run on lacks, and the ways around it.
//!
//! The loader sets [`ATTACH_KERNEL`] from its probes before the programs
//! are verified. The value is read-only and known to the verifier, so a
//! branch on it is decided at load time: the other kernels' branch is dead
//! code, neither checked (its helpers may not exist here) nor run, and
//! costs nothing on the path that is.

use core::ffi::c_void;

use attach_common::{KERNEL_NO_BPF_LOOP, OPEN_WALK_MAX};
use aya_ebpf::{Global, helpers::bpf_loop};

/// `attach_common::KERNEL_*` bits (`attach_common::KERNEL_GLOBAL`).
#[unsafe(no_mangle)]
static ATTACH_KERNEL: Global<u32> = Global::new(0);

/// A walk's step: `(i, state)`, non-zero to stop.
pub type Step = extern "C" fn(u64, *mut c_void) -> i64;

/// Calls `step(i, state)` for `i` in `0..n` until it returns non-zero: by
/// `bpf_loop` (Linux 5.17), which the verifier checks once, else open-coded
/// for at most [`OPEN_WALK_MAX`] steps (the engine keeps rows that long on
/// such kernels).
#[inline(always)]
pub fn walk<T>(n: u32, step: Step, state: &mut T) {
    let state = state as *mut T as *mut c_void;
    if ATTACH_KERNEL.load() & KERNEL_NO_BPF_LOOP == 0 {
        // SAFETY: `state` outlives the call; `step` only touches it.
        unsafe { bpf_loop(n, step as *mut c_void, state, 0) };
        return;
    }
    let n = if n < OPEN_WALK_MAX { n } else { OPEN_WALK_MAX };
    let mut i = 0;
    while i < n {
        if step(u64::from(i), state) != 0 {
            break;
        }
        i += 1;
    }
}
