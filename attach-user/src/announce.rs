//! Gratuitous ARP and unsolicited neighbour advertisements, sent when an
//! endpoint comes up so neighbours learn (or relearn) where its addresses
//! are. The kernel sends them, asked per interface:
//!
//! - `arp_notify` (IPv4) and `ndisc_notify` (IPv6) are turned on for the
//!   interface, so an address change of the device announces every address
//!   (a gratuitous ARP request; an unsolicited NA with the override flag, to
//!   all nodes);
//! - then the interface's MAC is set to the MAC it already has: the kernel
//!   treats that as an address change (NETDEV_CHANGEADDR) and announces.
//!
//! No packet socket: closing an AF_PACKET socket waits for an RCU grace
//! period (`synchronize_net`), 8-20 ms on a small VM, which was a quarter of
//! an attach (`attach bench`, M7). The kernel also knows what a device can
//! send: a NOARP device (ipvlan l3) sends no ARP; tentative addresses are
//! not advertised (ours skip DAD).

use std::{io, os::fd::AsRawFd};

const SIOCGIFHWADDR: libc::c_ulong = 0x8927;
const SIOCSIFHWADDR: libc::c_ulong = 0x8924;

/// Announces `ifname`'s addresses (in the calling thread's namespace).
pub fn announce(ifname: &str, v4: bool, v6: bool) -> io::Result<()> {
    if v4 {
        enable(&format!("/proc/sys/net/ipv4/conf/{ifname}/arp_notify"))?;
    }
    if v6 {
        enable(&format!("/proc/sys/net/ipv6/conf/{ifname}/ndisc_notify"))?;
    }
    renotify_mac(ifname)
}

fn enable(path: &str) -> io::Result<()> {
    std::fs::write(path, "1").map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

#[repr(C)]
struct HwAddrReq {
    name: [u8; libc::IFNAMSIZ],
    addr: libc::sockaddr,
    _pad: [u8; 8],
}

/// Sets the interface's MAC to the one it has (SIOCGIFHWADDR, then
/// SIOCSIFHWADDR): the kernel notifies an address change all the same.
fn renotify_mac(ifname: &str) -> io::Result<()> {
    let sock =
        std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"))?;
    // SAFETY: plain data, valid when zero.
    let mut req: HwAddrReq = unsafe { std::mem::zeroed() };
    let n = ifname.len().min(libc::IFNAMSIZ - 1);
    req.name[..n].copy_from_slice(&ifname.as_bytes()[..n]);
    for op in [SIOCGIFHWADDR, SIOCSIFHWADDR] {
        // SAFETY: valid socket and request struct for both requests; the
        // get fills in the address the set then gives back.
        if unsafe { libc::ioctl(sock.as_raw_fd(), op, &mut req) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
