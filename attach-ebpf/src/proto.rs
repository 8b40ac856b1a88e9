//! Protocol numbers and headers every program reads: Ethernet types, IP
//! protocols, ICMPv6 types, address families, the ARP header.

use attach_common::MacAddr;

pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const NDISC_RS: u8 = 133;
pub const NDISC_RA: u8 = 134;
pub const NDISC_NS: u8 = 135;
pub const NDISC_NA: u8 = 136;
pub const NDISC_REDIRECT: u8 = 137;
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

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
