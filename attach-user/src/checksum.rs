//! The Internet checksum (RFC 1071) and the pseudo-headers the UDP and
//! ICMPv6 checksums cover, for the frames the engine (DHCP, address probes)
//! and the benchmark build themselves.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The one's-complement sum of `data` as 16-bit big-endian words (an odd
/// last byte padded with zero), folded to 16 bits.
pub fn ones_sum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The UDP/IPv4 pseudo-header a UDP checksum covers: addresses, protocol,
/// and the datagram's length.
pub fn udp_pseudo_header(sip: Ipv4Addr, dip: Ipv4Addr, udp_len: usize) -> [u8; 12] {
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&sip.octets());
    pseudo[4..8].copy_from_slice(&dip.octets());
    pseudo[9] = 17;
    pseudo[10..].copy_from_slice(&(udp_len as u16).to_be_bytes());
    pseudo
}

/// The checksum field's value for `data`: the complement of its sum.
pub fn internet(data: &[u8]) -> u16 {
    !ones_sum(data)
}

/// The IPv6 pseudo-header an upper layer's checksum covers: addresses,
/// length and next header.
pub fn ipv6_pseudo_header(src: Ipv6Addr, dst: Ipv6Addr, len: usize, next: u8) -> [u8; 40] {
    let mut pseudo = [0u8; 40];
    pseudo[..16].copy_from_slice(&src.octets());
    pseudo[16..32].copy_from_slice(&dst.octets());
    pseudo[32..36].copy_from_slice(&(len as u32).to_be_bytes());
    pseudo[39] = next;
    pseudo
}
