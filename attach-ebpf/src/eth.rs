//! Ethernet header access.

use attach_common::MacAddr;
use aya_ebpf::programs::TcContext;

pub const ETH_HLEN: usize = 14;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct EthHdr {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub proto: u16,
}

impl EthHdr {
    /// Group bit: broadcast or multicast.
    #[inline(always)]
    pub fn is_multicast(&self) -> bool {
        self.dst[0] & 1 != 0
    }

    #[inline(always)]
    pub fn is_broadcast(&self) -> bool {
        mac_eq(&self.dst, &[0xff; 6])
    }
}

/// Compares two MACs as a u32 and a u16: a byte-array `==` may become a
/// `memcmp` call, which BPF cannot make.
#[inline(always)]
pub fn mac_eq(a: &MacAddr, b: &MacAddr) -> bool {
    let (a, b) = (a.as_ptr(), b.as_ptr());
    // SAFETY: both point at 6 readable bytes.
    unsafe {
        core::ptr::read_unaligned(a as *const u32) == core::ptr::read_unaligned(b as *const u32)
            && core::ptr::read_unaligned(a.add(4) as *const u16)
                == core::ptr::read_unaligned(b.add(4) as *const u16)
    }
}

/// Reads the header from packet memory `[data, data_end)`, bounds-checked.
///
/// An aligned read (of 2-byte units): packet data starts at an even offset
/// in skbs and XDP buffers alike (headroom is even, NET_IP_ALIGN 0 or 2), and
/// it lets the compiler load the header in 16-bit words instead of 14 byte
/// loads reassembled by shifts.
#[inline(always)]
pub fn read(data: usize, data_end: usize) -> Option<EthHdr> {
    if data + ETH_HLEN > data_end {
        return None;
    }
    // SAFETY: the verifier-visible check above keeps the read in bounds;
    // the start of a frame is 2-byte aligned (see above).
    Some(unsafe { core::ptr::read(data as *const EthHdr) })
}

/// The header of an skb: direct access, or a copy when it is not linear.
#[inline(always)]
pub fn read_tc(ctx: &TcContext) -> Option<EthHdr> {
    read(ctx.data(), ctx.data_end()).or_else(|| ctx.load::<EthHdr>(0).ok())
}

/// The header in packet memory `[data, data_end)`, bounds-checked, read in
/// place: a hot path then loads only the fields it uses (the destination
/// for its lookup) where a copy loads all 14 bytes up front.
///
/// The reference dies with the packet pointers: after a helper that may
/// move packet data (`bpf_clone_redirect`, a VLAN push) the verifier
/// rejects a read through it, so such paths copy the header first. And a
/// path that reads the header again after such a helper uses [`read`] /
/// [`read_tc`] for both reads: the compiler takes memory behind a shared
/// reference as unchanged and may reuse the first read's values (seen: a
/// `read_tc` written as `header(..).copied()` broke the nested tap, which
/// reads the header before and after popping its tags).
#[inline(always)]
pub fn header<'a>(data: usize, data_end: usize) -> Option<&'a EthHdr> {
    if data + ETH_HLEN > data_end {
        return None;
    }
    // SAFETY: in bounds (checked above) and 2-byte aligned (see `read`).
    Some(unsafe { &*(data as *const EthHdr) })
}

/// [`header`] of an skb; a header that is not in the linear part is pulled
/// into it first (rare: drivers and veth deliver it linear).
#[inline(always)]
pub fn header_tc<'a>(ctx: &TcContext) -> Option<&'a EthHdr> {
    header(ctx.data(), ctx.data_end()).or_else(|| {
        ctx.pull_data(ETH_HLEN as u32).ok()?;
        header(ctx.data(), ctx.data_end())
    })
}
