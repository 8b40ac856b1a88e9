//! The node's forwarding table from a program: `bpf_fib_lookup`, and
//! `bpf_redirect_neigh` to the next hop it gives.

use attach_common::MacAddr;
use aya_ebpf::{
    EbpfContext,
    bindings::{bpf_fib_lookup as FibLookupC, bpf_redir_neigh as RedirNeighC},
    helpers::{bpf_fib_lookup, bpf_redirect_neigh},
    programs::TcContext,
};

use crate::{
    l3::L3,
    proto::{AF_INET, AF_INET6},
};

/// `struct bpf_fib_lookup` (UAPI, 64 bytes), with the unions flattened.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Fib {
    pub family: u8,
    pub l4_protocol: u8,
    pub sport: u16,
    pub dport: u16,
    pub tot_len: u16,
    pub ifindex: u32,
    pub flowinfo: u32,
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// `tbid` as input (with `BPF_FIB_LOOKUP_TBID`), VLAN as output.
    pub tbid: u32,
    pub smac: MacAddr,
    pub dmac: MacAddr,
}
const _: () = assert!(core::mem::size_of::<Fib>() == 64);

pub const FIB_LOOKUP_DIRECT: u32 = 1;
pub const FIB_LOOKUP_SKIP_NEIGH: u32 = 4;
pub const FIB_LOOKUP_TBID: u32 = 8;
pub const FIB_SUCCESS: i64 = 0;
pub const FIB_BLACKHOLE: i64 = 1;
pub const FIB_UNREACHABLE: i64 = 2;
pub const FIB_PROHIBIT: i64 = 3;
pub const FIB_NOT_FWDED: i64 = 4;
pub const FIB_NO_NEIGH: i64 = 7;

impl Fib {
    #[inline(always)]
    pub fn with_dst(addr: &L3) -> Option<Fib> {
        let mut p = Fib::default();
        if addr.is_none() {
            return None;
        } else if addr.is_v4() {
            p.family = AF_INET;
            p.dst[0] = u32::from_ne_bytes(addr.v4_addr());
        } else {
            p.family = AF_INET6;
            // SAFETY: [u8; 16] and [u32; 4] have the same size.
            p.dst = unsafe { core::mem::transmute::<[u8; 16], [u32; 4]>(addr.addr) };
        }
        Some(p)
    }

    #[inline(always)]
    pub fn run(&mut self, ctx: &TcContext, flags: u32) -> i64 {
        // SAFETY: `self` is a complete bpf_fib_lookup of the size given.
        unsafe {
            bpf_fib_lookup(
                ctx.as_ptr(),
                self as *mut Fib as *mut FibLookupC,
                core::mem::size_of::<Fib>() as i32,
                flags,
            )
        }
    }
}

/// `struct bpf_redir_neigh` (UAPI).
#[repr(C)]
struct RedirNeigh {
    family: u32,
    nh: [u32; 4],
}

/// `bpf_redirect_neigh` out of `ifindex` to next hop `nh`.
#[inline(always)]
pub fn redirect_neigh(ifindex: u32, nh: &L3) -> i32 {
    let Some(p) = Fib::with_dst(nh) else {
        return aya_ebpf::bindings::TC_ACT_SHOT as i32;
    };
    let mut r = RedirNeigh {
        family: u32::from(p.family),
        nh: p.dst,
    };
    // SAFETY: a complete bpf_redir_neigh of the size given.
    let ret = unsafe {
        bpf_redirect_neigh(
            ifindex,
            &mut r as *mut RedirNeigh as *mut RedirNeighC,
            core::mem::size_of::<RedirNeigh>() as i32,
            0,
        ) as i32
    };
    if ret != aya_ebpf::bindings::TC_ACT_SHOT as i32 {
        return ret;
    }
    // Refused: only a kernel without the next-hop argument (before 5.11,
    // which reads it as flags) refuses these arguments. Without it the
    // helper finds the next hop by a route lookup out of `ifindex` itself.
    // SAFETY: no parameters, as that kernel's helper takes them.
    unsafe { bpf_redirect_neigh(ifindex, core::ptr::null_mut(), 0, 0) as i32 }
}
