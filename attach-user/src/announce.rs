//! Gratuitous ARP and unsolicited neighbour advertisements, sent when an
//! endpoint comes up so neighbours learn (or relearn) where its addresses
//! are. The kernel sends them, asked per interface:
//!
//! - `arp_notify` (IPv4) and `ndisc_notify` (IPv6) are turned on for the
//!   interface, so an address change of the device announces every address
//!   (a gratuitous ARP request; an unsolicited NA with the override flag, to
//!   all nodes). IPv4's is set over rtnetlink (IFLA_AF_SPEC), not through
//!   `/proc/sys/net/ipv4/conf/eth0/...`: every network namespace's `eth0`
//!   is a dentry of the same name under the same sysctl directory, so the
//!   path walk compared the name against one per container of the machine
//!   (`proc_sys_compare`, 4-6% of an add with a thousand containers).
//!   IPv6's has no rtnetlink setter and stays a sysctl write;
//! - then the interface's MAC is set to the MAC it already has: the kernel
//!   treats that as an address change (NETDEV_CHANGEADDR) and announces.
//!
//! No packet socket: closing an AF_PACKET socket waits for an RCU grace
//! period (`synchronize_net`), 8-20 ms on a small VM, which was a quarter of
//! an attach (`attach bench`, M7). The kernel also knows what a device can
//! send: a NOARP device (ipvlan l3) sends no ARP; tentative addresses are
//! not advertised (ours skip DAD).

use std::io;

use netlink_packet_core::NLM_F_ACK;
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{AfSpecInet, AfSpecUnspec, InetDevConf, LinkAttribute, LinkMessage},
};

use crate::{nlsync, sys::renotify_mac};

/// Announces `ifname`'s addresses (in the calling thread's namespace).
pub fn announce(ifname: &str, v4: bool, v6: bool) -> io::Result<()> {
    if v4 {
        arp_notify(ifname)?;
    }
    if v6 {
        enable(&format!("/proc/sys/net/ipv6/conf/{ifname}/ndisc_notify"))?;
    }
    renotify_mac(ifname)
}

fn enable(path: &str) -> io::Result<()> {
    std::fs::write(path, "1").map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

/// Turns `arp_notify` on for `ifname` with one RTM_SETLINK carrying only
/// that setting (IFLA_AF_SPEC / AF_INET / IFLA_INET_CONF): the kernel sets
/// the settings a request names and leaves the others as they are.
fn arp_notify(ifname: &str) -> io::Result<()> {
    let name = std::ffi::CString::new(ifname)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name with a NUL"))?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{ifname}: {e}")));
    }
    let mut conf = InetDevConf::default();
    conf.arp_notify = 1;
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
            AfSpecInet::DevConfRequest(conf),
        ])]));
    nlsync::request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), format!("arp_notify on {ifname}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a namespace of its own: the setting reads back as 1 from the
    /// sysctl, and its neighbour (arp_accept) is left as it was.
    #[test]
    fn arp_notify_is_set_over_rtnetlink() {
        if !nix_is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let got = std::thread::spawn(|| -> io::Result<(String, String)> {
            // SAFETY: unshare of the calling thread's network namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let read = |k: &str| std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/lo/{k}"));
            std::fs::write("/proc/sys/net/ipv4/conf/lo/arp_accept", "1")?;
            arp_notify("lo")?;
            Ok((read("arp_notify")?, read("arp_accept")?))
        })
        .join()
        .unwrap()
        .unwrap();
        assert_eq!(got.0.trim(), "1");
        assert_eq!(got.1.trim(), "1");
    }

    fn nix_is_root() -> bool {
        // SAFETY: no arguments.
        unsafe { libc::geteuid() == 0 }
    }
}
