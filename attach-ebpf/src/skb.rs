//! The `__sk_buff` fields the tc programs decide by: the device a frame
//! came in on, our own mark, the packet type.

use aya_ebpf::{EbpfContext, bindings::__sk_buff, programs::TcContext};

/// The program's context as the kernel's `__sk_buff`, for its fields and
/// the helpers that take it.
#[inline(always)]
pub fn raw(ctx: &TcContext) -> *mut __sk_buff {
    ctx.as_ptr() as *mut __sk_buff
}

/// The device the frame is on.
#[inline(always)]
pub fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: the context is a valid __sk_buff.
    unsafe { (*raw(ctx)).ifindex }
}

/// The frame's mark and device.
#[inline(always)]
pub fn mark_ifindex(ctx: &TcContext) -> (u32, u32) {
    let skb = raw(ctx);
    // SAFETY: the context is a valid __sk_buff.
    unsafe { ((*skb).mark, (*skb).ifindex) }
}

/// The frame's mark, device and packet type (`PACKET_*`).
#[inline(always)]
pub fn mark_ifindex_type(ctx: &TcContext) -> (u32, u32, u32) {
    let skb = raw(ctx);
    // SAFETY: the context is a valid __sk_buff.
    unsafe { ((*skb).mark, (*skb).ifindex, (*skb).pkt_type) }
}
