//! The kernel's ipvlan rules (drivers/net/ipvlan/), as decisions over the
//! address tables: which L3 address a frame is demuxed by, who owns it (and
//! whether that endpoint is up), routing through the node's tables, and the
//! node's answers for l3 endpoints.

use attach_common::{
    EP_F_DOWN, Endpoint, IPVL_ROUTE_TABLE, Ip4Key, Ip6Key, IpvlanParent, MacAddr,
    ipvlan::IPVL_MODE_L2,
};
use aya_ebpf::{
    EbpfContext,
    bindings::{bpf_fib_lookup as FibLookupC, bpf_redir_neigh as RedirNeighC},
    helpers::{bpf_fib_lookup, bpf_redirect_neigh},
    programs::TcContext,
};

use crate::{
    eth::{ETH_HLEN, EthHdr},
    maps::{IP4_EPS, IP6_EPS},
    neigh,
};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const NDISC_NS: u8 = 135;
pub const NDISC_NA: u8 = 136;
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// The address a frame is demuxed by (`ipvlan_get_L3_hdr` +
/// `ipvlan_addr_lookup`). A plain struct, always fully written: an enum
/// with payloads of different sizes leaves bytes the verifier sees as
/// uninitialised.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct L3 {
    /// One of the `L3_*` kinds.
    pub kind: u8,
    pub _pad: [u8; 3],
    /// IPv4 in the first 4 bytes, IPv6 in all 16.
    pub addr: [u8; 16],
}

/// Nothing ipvlan looks up (another protocol, malformed, or an ICMPv6
/// message from `::` that is not a solicitation).
pub const L3_NONE: u8 = 0;
/// IPv4 source or destination.
pub const L3_V4: u8 = 1;
/// ARP sender or target address.
pub const L3_ARP: u8 = 2;
/// IPv6 source or destination.
pub const L3_V6: u8 = 3;
/// The target of a duplicate address detection solicitation (`::` source):
/// looked up for source and destination alike.
pub const L3_DAD: u8 = 4;

impl L3 {
    pub const NONE: L3 = L3 {
        kind: L3_NONE,
        _pad: [0; 3],
        addr: [0; 16],
    };

    #[inline(always)]
    pub fn v4(kind: u8, a: [u8; 4]) -> L3 {
        let mut l = L3 { kind, ..L3::NONE };
        l.addr[0] = a[0];
        l.addr[1] = a[1];
        l.addr[2] = a[2];
        l.addr[3] = a[3];
        l
    }

    #[inline(always)]
    pub fn v6(kind: u8, addr: [u8; 16]) -> L3 {
        L3 {
            kind,
            _pad: [0; 3],
            addr,
        }
    }

    #[inline(always)]
    pub fn is_v4(&self) -> bool {
        self.kind == L3_V4 || self.kind == L3_ARP
    }

    #[inline(always)]
    pub fn v4_addr(&self) -> [u8; 4] {
        [self.addr[0], self.addr[1], self.addr[2], self.addr[3]]
    }

    /// An IP packet (what l3 routes), as opposed to ARP/ND.
    #[inline(always)]
    pub fn is_ip(&self) -> bool {
        self.kind == L3_V4 || self.kind == L3_V6
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ArpHdr {
    pub htype: [u8; 2],
    pub ptype: [u8; 2],
    pub hlen: u8,
    pub plen: u8,
    pub op: [u8; 2],
    pub sha: MacAddr,
    pub spa: [u8; 4],
    pub tha: MacAddr,
    pub tpa: [u8; 4],
}

impl ArpHdr {
    /// Ethernet/IPv4 ARP, the only kind ipvlan reads.
    #[inline(always)]
    pub fn is_eth_ip(&self) -> bool {
        self.htype[0] == 0
            && self.htype[1] == 1
            && self.ptype[0] == 8
            && self.ptype[1] == 0
            && self.hlen == 6
            && self.plen == 4
    }
}

#[inline(always)]
pub fn is_zero16(a: &[u8; 16]) -> bool {
    let p = a.as_ptr() as *const u64;
    // SAFETY: 16 readable bytes.
    unsafe { core::ptr::read_unaligned(p) | core::ptr::read_unaligned(p.add(1)) == 0 }
}

/// `ipvlan_get_L3_hdr` of an untagged frame: the destination (or, with
/// `dest` false, the source) address ipvlan looks up. 802.1Q frames are
/// not demuxed (the kernel's ipvlan reads untagged frames only).
#[inline(always)]
pub fn l3_addr(ctx: &TcContext, eth: &EthHdr, dest: bool) -> L3 {
    match u16::from_be(eth.proto) {
        ETH_P_IP => {
            let Ok(vihl) = ctx.load::<u8>(ETH_HLEN) else {
                return L3::NONE;
            };
            if vihl >> 4 != 4 || vihl & 0xf < 5 {
                return L3::NONE;
            }
            let off = ETH_HLEN + if dest { 16 } else { 12 };
            ctx.load::<[u8; 4]>(off)
                .map_or(L3::NONE, |a| L3::v4(L3_V4, a))
        }
        ETH_P_ARP => match ctx.load::<ArpHdr>(ETH_HLEN) {
            Ok(a) if a.is_eth_ip() => L3::v4(L3_ARP, if dest { a.tpa } else { a.spa }),
            _ => L3::NONE,
        },
        ETH_P_IPV6 => {
            let Ok(hdr) = ctx.load::<[u8; 8]>(ETH_HLEN) else {
                return L3::NONE;
            };
            if hdr[0] >> 4 != 6 {
                return L3::NONE;
            }
            let Ok(saddr) = ctx.load::<[u8; 16]>(ETH_HLEN + 8) else {
                return L3::NONE;
            };
            if is_zero16(&saddr) && hdr[6] == IPPROTO_ICMPV6 {
                // ICMPv6 from `::`: only a solicitation is looked up, by target.
                return match ctx.load::<u8>(ETH_HLEN + 40) {
                    Ok(NDISC_NS) => ctx
                        .load::<[u8; 16]>(ETH_HLEN + 48)
                        .map_or(L3::NONE, |a| L3::v6(L3_DAD, a)),
                    _ => L3::NONE,
                };
            }
            if !dest {
                return L3::v6(L3_V6, saddr);
            }
            ctx.load::<[u8; 16]>(ETH_HLEN + 24)
                .map_or(L3::NONE, |a| L3::v6(L3_V6, a))
        }
        _ => L3::NONE,
    }
}

/// The endpoint of port `parent_ifindex` owning `addr`, if it is up
/// (`ipvlan_addr_lookup`: the kernel hashes a slave's addresses only while
/// it is up).
#[inline(always)]
pub fn lookup(ctx: &TcContext, parent_ifindex: u32, addr: &L3) -> Option<Endpoint> {
    let ep = if addr.kind == L3_NONE {
        return None;
    } else if addr.is_v4() {
        let key = Ip4Key {
            parent_ifindex,
            addr: addr.v4_addr(),
        };
        // SAFETY: copied out at once.
        unsafe { IP4_EPS.get(&key) }.copied()?
    } else {
        let key = Ip6Key {
            parent_ifindex,
            addr: addr.addr,
        };
        // SAFETY: copied out at once.
        unsafe { IP6_EPS.get(&key) }.copied()?
    };
    is_up(ctx, &ep, addr).then_some(ep)
}

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

const FIB_LOOKUP_DIRECT: u32 = 1;
const FIB_LOOKUP_SKIP_NEIGH: u32 = 4;
const FIB_LOOKUP_TBID: u32 = 8;
pub const FIB_SUCCESS: i64 = 0;
pub const FIB_BLACKHOLE: i64 = 1;
pub const FIB_UNREACHABLE: i64 = 2;
pub const FIB_PROHIBIT: i64 = 3;
pub const FIB_NOT_FWDED: i64 = 4;
pub const FIB_NO_NEIGH: i64 = 7;

impl Fib {
    #[inline(always)]
    fn with_dst(addr: &L3) -> Option<Fib> {
        let mut p = Fib::default();
        if addr.kind == L3_NONE {
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

/// Whether `ep` is up: its host route for `addr` in [`IPVL_ROUTE_TABLE`]
/// matches, which it stops doing when the veth loses carrier (the
/// container's side went down) since the engine sets
/// `ignore_routes_with_linkdown` on it.
#[inline(always)]
fn is_up(ctx: &TcContext, ep: &Endpoint, addr: &L3) -> bool {
    let Some(mut p) = Fib::with_dst(addr) else {
        return false;
    };
    p.ifindex = ep.host_ifindex;
    p.tbid = IPVL_ROUTE_TABLE;
    let r = p.run(
        ctx,
        FIB_LOOKUP_DIRECT | FIB_LOOKUP_TBID | FIB_LOOKUP_SKIP_NEIGH,
    );
    if r < 0 {
        // A kernel without these flags (TBID: 6.8): the engine keeps the
        // endpoint's state in its flags instead.
        return !ep.has(EP_F_DOWN);
    }
    (r == FIB_SUCCESS || r == FIB_NO_NEIGH) && p.ifindex == ep.host_ifindex
}

/// Where an l3 endpoint's packet for `addr` goes (`ipvlan_process_outbound`:
/// the route of the node, with the parent as output device).
pub enum Route {
    /// Out of the parent to this next hop (resolved by the node's
    /// neighbour table).
    Via(L3),
    /// Not forwarded by the node's tables: one of the node's own addresses,
    /// or no route at all; the node's stack decides (delivers, or drops).
    Node,
    /// No route.
    None,
}

/// Looks `addr` up in the node's tables, as a packet arriving on the
/// endpoint's host-side veth: a route out of the parent gives its next
/// hop; one out of another device falls back to `addr` on the parent's
/// link, as the kernel does for a lookup bound to the parent
/// (`ip_route_output` with the parent as `oif`). `bpf_fib_lookup` says
/// "not forwarded" both for the node's own addresses and for no route:
/// those go to the node's stack, which delivers the first (as the kernel
/// does) and drops the second (where the kernel would try the parent's
/// link).
#[inline(always)]
pub fn route(ctx: &TcContext, ep: &Endpoint, src: &L3, dst: &L3) -> Route {
    let Some(mut p) = Fib::with_dst(dst) else {
        return Route::None;
    };
    if let Some(s) = Fib::with_dst(src) {
        p.src = s.dst;
    }
    p.ifindex = ep.host_ifindex;
    match p.run(ctx, 0) {
        FIB_SUCCESS | FIB_NO_NEIGH if p.ifindex == ep.parent_ifindex => {
            Route::Via(if dst.is_v4() {
                L3::v4(L3_V4, p.dst[0].to_ne_bytes())
            } else {
                // SAFETY: same size.
                L3::v6(L3_V6, unsafe {
                    core::mem::transmute::<[u32; 4], [u8; 16]>(p.dst)
                })
            })
        }
        FIB_BLACKHOLE | FIB_UNREACHABLE | FIB_PROHIBIT => Route::None,
        FIB_NOT_FWDED => Route::Node,
        _ => Route::Via(*dst),
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

/// An ARP request from another host for the address of an up endpoint of
/// an l3/l3s port: turned into the reply, from the parent's MAC. Returns
/// whether the frame now is that reply (the caller sends it back out).
#[inline(always)]
pub fn arp_reply(ctx: &TcContext, port: &IpvlanParent, parent_ifindex: u32) -> bool {
    let Some(f) = neigh::arp_request(ctx) else {
        return false;
    };
    if lookup(ctx, parent_ifindex, &L3::v4(L3_ARP, f.arp.tpa)).is_none() {
        return false;
    }
    neigh::reply_arp(ctx, f, &port.mac)
}

/// A neighbour solicitation (not DAD) from another host for an up
/// endpoint's address on an l3/l3s port: turned into a solicited,
/// overriding advertisement from the parent's MAC. Returns whether the
/// frame now is that advertisement.
#[inline(always)]
pub fn na_reply(ctx: &TcContext, port: &IpvlanParent, parent_ifindex: u32) -> bool {
    let Some(f) = neigh::solicitation(ctx) else {
        return false;
    };
    if lookup(ctx, parent_ifindex, &L3::v6(L3_V6, f.target)).is_none() {
        return false;
    }
    neigh::advertise(ctx, f, &port.mac, neigh::NA_SOLICITED_OVERRIDE)
}

/// Whether a multicast frame on an l2 port comes from outside
/// (`ipvlan_external_frame`): not one an endpoint sent (the parent's
/// source MAC and an endpoint's source address) and the wire reflected.
#[inline(always)]
pub fn external(ctx: &TcContext, port: &IpvlanParent, parent_ifindex: u32, eth: &EthHdr) -> bool {
    if !crate::eth::mac_eq(&eth.src, &port.mac) {
        return true;
    }
    lookup(ctx, parent_ifindex, &l3_addr(ctx, eth, false)).is_none()
}

/// Whether the port is in l2 mode.
#[inline(always)]
pub fn is_l2(port: &IpvlanParent) -> bool {
    port.mode == IPVL_MODE_L2
}
