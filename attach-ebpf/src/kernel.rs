//! What older kernels lack, and the ways around it: each binary of the
//! crate is built for a kind of kernel (`crate::OPEN_WALK`), and the
//! loader picks the one for the kernel it runs on.

use core::ffi::c_void;

use attach_common::OPEN_WALK_MAX;
use aya_ebpf::helpers::bpf_loop;

/// A walk's state, and its step: `step(i, state)`, non-zero to stop. A
/// function of the state's type, so both ways of walking call it directly
/// (BPF has no indirect calls).
pub trait Walker {
    extern "C" fn step(i: u64, state: *mut c_void) -> i64;
}

/// Calls `W::step(i, state)` for `i` in `0..n` until it returns non-zero:
/// by `bpf_loop` (Linux 5.17), which the verifier checks once, or, in the
/// build for older kernels, open-coded for at most `OPEN_WALK_MAX` steps
/// (the engine keeps rows that long on such kernels).
#[inline(always)]
pub fn walk<W: Walker>(n: u32, state: &mut W) {
    let state = state as *mut W as *mut c_void;
    if !crate::OPEN_WALK {
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
