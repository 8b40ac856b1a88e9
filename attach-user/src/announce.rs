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

use std::io;

use crate::sys::renotify_mac;

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
