//! Per-endpoint rate limits: a token bucket per direction, by endpoint id
//! (`attach_bw`), taken from on every unicast delivery into a container and
//! every frame it sends. An endpoint without limits costs an array lookup
//! and a compare. Frames past the limit are dropped (`rate_limited`): a
//! policer, as the delivery into a container (`bpf_redirect_peer`) passes
//! no qdisc that could queue them.
//!
//! Buckets are shared by the CPUs without a lock: two CPUs taking from one
//! bucket at once may both pass a frame the bucket held one of, which lets
//! a little more through, never less.

use attach_common::{BW_MAX_IDLE_NS, Bucket};
use aya_ebpf::helpers::bpf_ktime_get_ns;

use crate::maps::BW;

/// Which of an endpoint's buckets.
#[derive(Clone, Copy)]
pub enum Way {
    /// Into the container.
    In,
    /// Sent by the container.
    Out,
}

/// Whether a frame of `len` bytes for endpoint `id` is within its limit in
/// direction `way` (and if so, takes it from the bucket).
#[inline(always)]
pub fn pass(id: u32, way: Way, len: u32) -> bool {
    let Some(limits) = BW.get_ptr_mut(id) else {
        return true;
    };
    // SAFETY: an array slot, valid for the program's run; see the module's
    // note on concurrent writers.
    let b = unsafe {
        match way {
            Way::In => &mut (*limits).ingress,
            Way::Out => &mut (*limits).egress,
        }
    };
    if b.rate == 0 {
        return true;
    }
    take(b, len)
}

#[inline(always)]
fn take(b: &mut Bucket, len: u32) -> bool {
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let idle = now.wrapping_sub(b.stamp);
    let idle = if idle > BW_MAX_IDLE_NS {
        BW_MAX_IDLE_NS
    } else {
        idle
    };
    // Bytes earned since the last refill; a refill of less than one byte
    // leaves the stamp, so slow trickles add up.
    let earned = idle * b.rate / 1_000_000_000;
    let mut tokens = b.tokens;
    if earned > 0 {
        tokens += earned as i64;
        if tokens > b.burst as i64 {
            tokens = b.burst as i64;
        }
        b.stamp = now;
    }
    let ok = tokens > 0;
    if ok {
        tokens -= len as i64;
    }
    b.tokens = tokens;
    ok
}
