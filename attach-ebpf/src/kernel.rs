//! What older kernels lack, and the ways around it: each binary of the
//! crate is built for a kind of kernel (`crate::OPEN_WALK`), and the
//! loader picks the one for the kernel it runs on.

use core::ffi::c_void;

use attach_common::OPEN_WALK_MAX;
use aya_ebpf::{bindings::__sk_buff, helpers::bpf_loop};

use crate::proto::PACKET_HOST;

/// Into the container behind host-side veth `host_ifindex`, from a port's
/// (or a router's) ingress: `bpf_redirect_peer` straight into its namespace,
/// except in the build for kernels before 5.17, where a frame so redirected
/// from one endpoint's veth to another's was lost on 5.10 (from a parent it
/// arrives): there it goes out of the host side, and the veth carries it
/// across (one backlog pass more).
#[inline(always)]
pub fn redirect_into(host_ifindex: u32) -> i32 {
    // SAFETY: plain helper calls.
    unsafe {
        if crate::OPEN_WALK {
            aya_ebpf::helpers::bpf_redirect(host_ifindex, 0) as i32
        } else {
            aya_ebpf::helpers::bpf_redirect_peer(host_ifindex, 0) as i32
        }
    }
}

/// `bpf_redirect_peer` into the container behind host-side veth
/// `host_ifindex`, from a parent's (or an uplink's) ingress. Kernels before
/// 5.17 get the frame's packet type set to "for this host" first: 5.10
/// keeps the type the parent gave a frame for another MAC (other host) on
/// the peer redirect, and the container's IP layer drops such frames.
#[inline(always)]
pub fn peer_into(skb: *mut __sk_buff, host_ifindex: u32) -> aya_ebpf::cty::c_long {
    // SAFETY: plain helper calls on the program's context.
    unsafe {
        if crate::OPEN_WALK {
            aya_ebpf::helpers::bpf_skb_change_type(skb, PACKET_HOST);
        }
        aya_ebpf::helpers::bpf_redirect_peer(host_ifindex, 0)
    }
}

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

/// [`walk`] without `bpf_loop`, in the compat build only: unrolled, each
/// step a copy of its own with its index a constant. A loop (`while i < n`)
/// makes the verifier carry the counter as a precise value, so no two
/// steps' states are alike and it follows every path of the body once per
/// step and per way the walk got there: the 5.10 verifier took minutes
/// over a 16-step loop. Unrolled, the states at each step's end agree but
/// for counts it need not track, and the verifier's work grows with the
/// steps, one body each.
#[inline(always)]
fn open_walk<W: Walker>(n: u32, state: *mut c_void) {
    let n = if n < OPEN_WALK_MAX { n } else { OPEN_WALK_MAX };
    macro_rules! step {
        ($i:expr) => {
            if $i >= n || W::step($i, state) != 0 {
                return;
            }
        };
    }
    macro_rules! steps8 {
        ($b:expr) => {
            step!($b);
            step!($b + 1);
            step!($b + 2);
            step!($b + 3);
            step!($b + 4);
            step!($b + 5);
            step!($b + 6);
            step!($b + 7);
        };
    }
    steps8!(0);
    steps8!(8);
}

// The unrolled steps are exactly the row's limit.
const _: () = assert!(OPEN_WALK_MAX == 16);
