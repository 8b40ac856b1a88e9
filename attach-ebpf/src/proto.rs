//! Protocol numbers and headers every program reads: Ethernet types, IP
//! protocols, IPv6 extension headers, ICMPv6 types, UDP ports, address
//! families, packet types, the ARP header. A leaf: the one place each
//! number is written (the Ethernet header itself is `eth.rs`'s).

use attach_common::MacAddr;

// Ethernet types (linux/if_ether.h), host order.
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;

// IP protocols and IPv6 extension headers (linux/in.h, net/ipv6.h).
pub const NEXTHDR_HOP: u8 = 0;
pub const IPPROTO_UDP: u8 = 17;
pub const NEXTHDR_ROUTING: u8 = 43;
pub const NEXTHDR_FRAGMENT: u8 = 44;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const NEXTHDR_DEST: u8 = 60;

// ICMPv6 neighbour discovery (net/ndisc.h).
pub const NDISC_RS: u8 = 133;
pub const NDISC_RA: u8 = 134;
pub const NDISC_NS: u8 = 135;
pub const NDISC_NA: u8 = 136;
pub const NDISC_REDIRECT: u8 = 137;

/// UDP ports DHCP and DHCPv6 servers (and relays) send from.
pub const DHCP_SERVER_PORT: u16 = 67;
pub const DHCP6_SERVER_PORT: u16 = 547;

// Address families (linux/socket.h), as `bpf_fib_lookup` takes them.
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// `skb->pkt_type` of a frame to the device's own MAC (linux/if_packet.h).
pub const PACKET_HOST: u32 = 0;

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
