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

/// A walk's state, and its step: `step(i, state)`, non-zero to stop. A
/// function of the state's type, so both ways of walking call it directly
/// (BPF has no indirect calls).
pub trait Walker {
    extern "C" fn step(i: u64, state: *mut c_void) -> i64;
}

/// Calls `W::step(i, state)` for `i` in `0..n` until it returns non-zero:
/// by `bpf_loop` (Linux 5.17), which the verifier checks once, else
/// open-coded for at most `OPEN_WALK_MAX` steps (the engine keeps rows that
/// long on such kernels).
#[inline(always)]
pub fn walk<W: Walker>(n: u32, state: &mut W) {
    let state = state as *mut W as *mut c_void;
    if ATTACH_KERNEL.load() & KERNEL_NO_BPF_LOOP == 0 {
        // SAFETY: `state` outlives the call; `step` only touches it.
        unsafe { bpf_loop(n, W::step as *mut c_void, state, 0) };
        return;
    }
    open_walk::<W>(n, state);
}

/// [`walk`] without `bpf_loop`. A function of its own (a BPF-to-BPF call):
/// inlined, its loop changed the register allocation of the programs'
/// other paths, the hot ones included.
#[inline(never)]
fn open_walk<W: Walker>(n: u32, state: *mut c_void) {
    let n = if n < OPEN_WALK_MAX { n } else { OPEN_WALK_MAX };
    let mut i = 0;
    while i < n {
        if W::step(u64::from(i), state) != 0 {
            break;
        }
        i += 1;
    }
}
