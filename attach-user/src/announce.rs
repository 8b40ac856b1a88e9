//! Gratuitous ARP and unsolicited neighbour advertisements, sent when an
//! endpoint comes up so neighbours learn (or relearn) where its addresses are.
//! Sent from a packet socket in the calling thread's namespace.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use crate::addr::Mac;

/// A broadcast ARP request for our own address (sender = target).
pub fn garp_frame(mac: Mac, ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip.octets());
    f
}

/// An unsolicited neighbour advertisement (override flag) to all nodes.
pub fn unsolicited_na_frame(mac: Mac, ip: Ipv6Addr) -> Vec<u8> {
    let all_nodes: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[136, 0, 0, 0]); // type NA, code, checksum
    icmp.extend_from_slice(&0x2000_0000u32.to_be_bytes()); // O flag
    icmp.extend_from_slice(&ip.octets());
    icmp.extend_from_slice(&[2, 1]); // target link-layer address option
    icmp.extend_from_slice(&mac.0);
    let csum = icmpv6_checksum(&ip, &all_nodes, &icmp);
    icmp[2..4].copy_from_slice(&csum.to_be_bytes());

    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&all_nodes.octets());
    f.extend_from_slice(&icmp);
    f
}

fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, payload: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(payload.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(payload);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends one announcement per address out of `ifindex`.
pub fn announce(ifindex: u32, mac: Mac, ips: &[IpAddr]) -> io::Result<()> {
    // SAFETY: plain socket call; protocol 0 means we receive nothing.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut result = Ok(());
    for ip in ips {
        let frame = match ip {
            IpAddr::V4(v4) => garp_frame(mac, *v4),
            IpAddr::V6(v6) => unsolicited_na_frame(mac, *v6),
        };
        // SAFETY: sockaddr_ll is plain data.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = ifindex as i32;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: valid fd, buffer and address.
        let n = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            result = Err(io::Error::last_os_error());
        }
    }
    // SAFETY: closing our fd.
    unsafe { libc::close(fd) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_layout() {
        let mac = Mac([2, 0, 0, 0, 0, 1]);
        let f = garp_frame(mac, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(f.len(), 42);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[28..32], &[10, 0, 0, 2]); // sender ip
        assert_eq!(&f[38..42], &[10, 0, 0, 2]); // target ip
    }

    #[test]
    fn na_checksum_verifies() {
        let mac = Mac([2, 0, 0, 0, 0, 1]);
        let ip: Ipv6Addr = "fd00::2".parse().unwrap();
        let f = unsolicited_na_frame(mac, ip);
        let icmp = &f[54..];
        // Summing a packet with its checksum in place gives zero.
        let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        assert_eq!(icmpv6_checksum(&ip, &dst, icmp), 0);
        assert_eq!(icmp[0], 136);
    }
}
