//! Source address checks on what an endpoint sends: its MAC (done by the
//! caller) and, with `EP_F_IPCHK`, its IP addresses.

use attach_common::EpIpKey;
use aya_ebpf::programs::TcContext;

use crate::{
    eth::ETH_HLEN,
    maps::EP_IPS,
    proto::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6},
};

#[inline(always)]
fn owns(key: &EpIpKey) -> bool {
    // SAFETY: presence test only.
    unsafe { EP_IPS.get(key) }.is_some()
}

/// Whether the packet's source address is one of those of `owner` (the
/// anti-spoofing key: a host-side veth's ifindex, or `Endpoint::ip_owner`). Addresses
/// that carry no identity are allowed: 0.0.0.0 (DHCP, ARP probes), :: (DAD)
/// and IPv6 link-local (neighbour and router discovery). Other protocols
/// pass; a packet too short to read its source does not.
#[inline(always)]
pub fn source_allowed(ctx: &TcContext, owner: u32, proto_be: u16) -> bool {
    let mut proto = u16::from_be(proto_be);
    let mut l3 = ETH_HLEN;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        let Ok(inner) = ctx.load::<u16>(ETH_HLEN + 2) else {
            return false;
        };
        proto = u16::from_be(inner);
        l3 += 4;
    }
    let v4_at = match proto {
        ETH_P_IP => l3 + 12,
        ETH_P_ARP => l3 + 14,
        ETH_P_IPV6 => {
            let Ok(src) = ctx.load::<[u8; 16]>(l3 + 8) else {
                return false;
            };
            let unspecified = u128::from_ne_bytes(src) == 0;
            let link_local = src[0] == 0xfe && src[1] & 0xc0 == 0x80;
            return unspecified || link_local || owns(&EpIpKey::v6(owner, src));
        }
        _ => return true,
    };
    let Ok(src) = ctx.load::<[u8; 4]>(v4_at) else {
        return false;
    };
    u32::from_ne_bytes(src) == 0 || owns(&EpIpKey::v4(owner, src))
}
