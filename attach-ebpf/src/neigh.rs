//! Answering neighbour resolution in place: an ARP request turned into its
//! reply, a neighbour solicitation into the advertisement, both sent back
//! by the caller. Shared by ipvlan l3 ports (answering for their endpoints)
//! and router endpoints (answering for the node); each decides whom it
//! answers for.

use attach_common::MacAddr;
use aya_ebpf::{helpers::bpf_csum_diff, programs::TcContext};

use crate::{
    eth::EthHdr,
    proto::{ArpHdr, IPPROTO_ICMPV6, NDISC_NA, NDISC_NS, is_zero16},
};

/// An ARP frame, request or reply.
#[repr(C)]
pub struct ArpFrame {
    pub eth: EthHdr,
    pub arp: ArpHdr,
}

/// The frame, if it is an Ethernet/IPv4 ARP request.
#[inline(always)]
pub fn arp_request(ctx: &TcContext) -> Option<ArpFrame> {
    let f = ctx.load::<ArpFrame>(0).ok()?;
    (f.arp.is_eth_ip() && f.arp.op == [0, 1]).then_some(f)
}

/// Turns request `f` into the reply from `mac` and stores it over the
/// frame. Returns whether the frame now is that reply.
#[inline(always)]
pub fn reply_arp(ctx: &TcContext, mut f: ArpFrame, mac: &MacAddr) -> bool {
    f.eth.dst = f.eth.src;
    f.eth.src = *mac;
    f.arp.op = [0, 2];
    f.arp.tha = f.arp.sha;
    f.arp.sha = *mac;
    core::mem::swap(&mut f.arp.tpa, &mut f.arp.spa);
    ctx.store(0, &f, 0).is_ok()
}

/// A neighbour solicitation with its source link-layer option, and the
/// advertisement it becomes (same length).
#[repr(C)]
pub struct NdFrame {
    eth: EthHdr,
    /// version/class/flow (4), payload length (2), next header, hop limit.
    ip6_head: [u8; 8],
    saddr: [u8; 16],
    daddr: [u8; 16],
    icmp_type: u8,
    icmp_code: u8,
    csum: [u8; 2],
    flags: [u8; 4],
    pub target: [u8; 16],
    opt_type: u8,
    opt_len: u8,
    lladdr: MacAddr,
}
const ND_FRAME_LEN: usize = 14 + 40 + 32;
const _: () = assert!(core::mem::size_of::<NdFrame>() == ND_FRAME_LEN);

/// The ICMPv6 pseudo-header and message, for the checksum.
#[repr(C)]
struct NdSum {
    saddr: [u8; 16],
    daddr: [u8; 16],
    len: [u8; 4],
    next: [u8; 4],
    msg: [u8; 32],
}

/// NA flags: solicited, override.
pub const NA_SOLICITED_OVERRIDE: u8 = 0x60;
/// NA flags: router, solicited, override.
pub const NA_ROUTER_SOLICITED_OVERRIDE: u8 = 0xe0;

/// The frame, if it is a neighbour solicitation (not DAD: it has a source
/// address) with a source link-layer option and nothing else.
#[inline(always)]
pub fn solicitation(ctx: &TcContext) -> Option<NdFrame> {
    if ctx.len() as usize != ND_FRAME_LEN {
        return None;
    }
    let f = ctx.load::<NdFrame>(0).ok()?;
    let h = f.ip6_head;
    let ns = h[0] >> 4 == 6
        && h[4] == 0
        && h[5] == 32
        && h[6] == IPPROTO_ICMPV6
        && h[7] == 255
        && f.icmp_type == NDISC_NS
        && f.icmp_code == 0
        && f.opt_type == 1
        && f.opt_len == 1
        && !is_zero16(&f.saddr);
    ns.then_some(f)
}

/// Turns solicitation `f` into the advertisement of its target from `mac`
/// with NA `flags`, checksummed, and stores it over the frame. Returns
/// whether the frame now is that advertisement.
#[inline(always)]
pub fn advertise(ctx: &TcContext, mut f: NdFrame, mac: &MacAddr, flags: u8) -> bool {
    f.eth.dst = f.eth.src;
    f.eth.src = *mac;
    f.daddr = f.saddr;
    f.saddr = f.target;
    f.icmp_type = NDISC_NA;
    f.csum = [0, 0];
    f.flags = [flags, 0, 0, 0];
    f.opt_type = 2;
    f.lladdr = *mac;
    let mut sum = NdSum {
        saddr: f.saddr,
        daddr: f.daddr,
        len: [0, 0, 0, 32],
        next: [0, 0, 0, IPPROTO_ICMPV6],
        msg: [0; 32],
    };
    // SAFETY: the 32 bytes of the message start at icmp_type.
    sum.msg = unsafe { core::ptr::read_unaligned(&f.icmp_type as *const u8 as *const [u8; 32]) };
    // SAFETY: `sum` is readable for its size, a multiple of 4.
    let s = unsafe {
        bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            &mut sum as *mut NdSum as *mut u32,
            core::mem::size_of::<NdSum>() as u32,
            0,
        )
    };
    if s < 0 {
        return false;
    }
    let mut s = s as u64;
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    f.csum = (!(s as u16)).to_ne_bytes();
    ctx.store(0, &f, 0).is_ok()
}
