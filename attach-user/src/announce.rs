//! Announcing an endpoint's addresses when it comes up, so neighbours learn
//! (or relearn) where they are. The kernel does it, asked per interface
//! before the interface comes up:
//!
//! - IPv4, `arp_notify`: bringing the interface up sends a gratuitous ARP
//!   for every address;
//! - IPv6, `ndisc_notify`: an unsolicited neighbour advertisement (override)
//!   for every address once it is usable; our addresses skip DAD, so that is
//!   as soon as IPv6 is configured on the link.
//!
//! No packet socket: closing an AF_PACKET socket waits for an RCU grace
//! period (`synchronize_net`), 8-20 ms on a small VM, more than all the rest
//! of an attach together (`attach bench`, M7). The kernel also sends at the
//! right moment, which a socket cannot know for IPv6 (the link's multicast
//! route appears only when the carrier change has been processed).

use std::io;

fn set(family: &str, ifname: &str, knob: &str) -> io::Result<()> {
    std::fs::write(format!("/proc/sys/net/{family}/conf/{ifname}/{knob}"), "1")
}

/// The kernel announces `ifname`'s IPv4 addresses when it comes up (in the
/// calling thread's namespace).
pub fn arp_notify(ifname: &str) -> io::Result<()> {
    set("ipv4", ifname, "arp_notify")
}

/// The kernel announces `ifname`'s IPv6 addresses when they become usable
/// (in the calling thread's namespace).
pub fn ndisc_notify(ifname: &str) -> io::Result<()> {
    set("ipv6", ifname, "ndisc_notify")
}
