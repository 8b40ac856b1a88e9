//! Address conflict detection before an endpoint takes its addresses: an
//! ARP probe (RFC 5227) for each IPv4 address and a duplicate address
//! detection solicitation (RFC 4862) for each IPv6 one, sent from the
//! endpoint's MAC on its wire; another host that answers for one (or probes
//! for it at the same time) owns it.
//!
//! RFC 5227 waits up to 7 s (three probes 1-2 s apart, then 2 s); a node
//! attaching containers cannot, so the window is short ([`WINDOW`]: two
//! probes 20 ms apart, answers awaited for 60 ms): a host on the same
//! segment answers in well under a millisecond (a few under emulation), a
//! busy or remote one may be missed. The wire is watched in promiscuous mode while it lasts, since
//! answers go to the endpoint's MAC, which the NIC may not accept yet.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use crate::{
    addr::Mac,
    checksum,
    packet_socket::{PacketSocket, Tag},
};

/// How long answers are awaited.
pub const WINDOW: Duration = Duration::from_millis(60);
/// Probes per address, and the gap between them.
const PROBES: u32 = 2;
const GAP: Duration = Duration::from_millis(20);

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ICMPV6: u8 = 58;
const NDISC_NS: u8 = 135;
const NDISC_NA: u8 = 136;

/// An address another host answered for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub addr: IpAddr,
    /// The MAC that answered (or probed for it too).
    pub mac: Mac,
}

/// Probes `addrs` on device `ifindex` (of the calling thread's namespace),
/// in frames tagged `tags` (outermost first; none: untagged), as `mac`:
/// the first address another host on that VLAN answers for, if any.
pub fn probe(
    ifindex: u32,
    tags: &[Tag],
    mac: Mac,
    addrs: &[IpAddr],
    window: Duration,
) -> io::Result<Option<Conflict>> {
    if addrs.is_empty() {
        return Ok(None);
    }
    let sock = PacketSocket::open(ifindex, tags)?;
    let frames: Vec<Vec<u8>> = addrs
        .iter()
        .map(|a| match a {
            IpAddr::V4(v4) => arp_probe(mac, *v4),
            IpAddr::V6(v6) => dad_solicitation(mac, *v6),
        })
        .collect();
    let start = Instant::now();
    let mut sent = 0;
    let mut buf = [0u8; 2048];
    loop {
        let due = start + GAP * sent;
        if sent < PROBES && Instant::now() >= due {
            for f in &frames {
                match sock.send(f) {
                    // A device that cannot send has nobody to answer.
                    Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => return Ok(None),
                    r => r?,
                }
            }
            sent += 1;
        }
        let deadline = if sent < PROBES {
            (start + GAP * sent).min(start + window)
        } else {
            start + window
        };
        let Some(n) = sock.recv(&mut buf, deadline)? else {
            if Instant::now() >= start + window && sent >= PROBES {
                return Ok(None);
            }
            continue;
        };
        if let Some(c) = answer(&buf[..n], mac, addrs) {
            return Ok(Some(c));
        }
    }
}

/// Whether `frame` says another host has (or wants) one of `addrs`.
fn answer(frame: &[u8], ours: Mac, addrs: &[IpAddr]) -> Option<Conflict> {
    let src = Mac(frame.get(6..12)?.try_into().ok()?);
    let ethertype = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
    match ethertype {
        ETH_P_ARP => {
            let arp = frame.get(14..42)?;
            let sha = Mac(arp[8..14].try_into().ok()?);
            let spa = Ipv4Addr::from(<[u8; 4]>::try_from(&arp[14..18]).ok()?);
            let tpa = Ipv4Addr::from(<[u8; 4]>::try_from(&arp[24..28]).ok()?);
            if sha == ours {
                return None;
            }
            // Someone using it, or probing for it at the same time.
            let claimed = if spa.is_unspecified() { tpa } else { spa };
            addrs.contains(&IpAddr::V4(claimed)).then_some(Conflict {
                addr: IpAddr::V4(claimed),
                mac: sha,
            })
        }
        ETH_P_IPV6 => {
            let ip = frame.get(14..54)?;
            if ip[6] != ICMPV6 || src == ours {
                return None;
            }
            let icmp = frame.get(54..78)?;
            let target = Ipv6Addr::from(<[u8; 16]>::try_from(&icmp[8..24]).ok()?);
            let from_unspecified = ip[8..24].iter().all(|b| *b == 0);
            let claims = match icmp[0] {
                NDISC_NA => true,
                // Another host's duplicate address detection.
                NDISC_NS => from_unspecified,
                _ => false,
            };
            (claims && addrs.contains(&IpAddr::V6(target))).then_some(Conflict {
                addr: IpAddr::V6(target),
                mac: src,
            })
        }
        _ => None,
    }
}

/// An ARP probe: who has `target`, from `mac`, sender address 0.0.0.0.
fn arp_probe(mac: Mac, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// A neighbour solicitation for `target` from the unspecified address to
/// its solicited-node group, as duplicate address detection sends it.
fn dad_solicitation(mac: Mac, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let mut icmp = vec![NDISC_NS, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&t);
    let sum = icmpv6_checksum(&Ipv6Addr::UNSPECIFIED, &group, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&[0x33, 0x33, 0xff, t[13], t[14], t[15]]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[ICMPV6, 255]);
    f.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets());
    f.extend_from_slice(&group.octets());
    f.extend_from_slice(&icmp);
    f
}

/// The ICMPv6 checksum of `icmp` (its checksum field zero) from `src` to
/// `dst`.
fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, icmp: &[u8]) -> u16 {
    let pseudo = checksum::ipv6_pseudo_header(*src, *dst, icmp.len(), ICMPV6);
    checksum::internet(&[pseudo.as_slice(), icmp].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const THEM: Mac = Mac([2, 0, 0, 0, 0, 2]);

    #[test]
    fn an_arp_reply_or_a_rival_probe_is_a_conflict() {
        let want: IpAddr = "10.0.0.5".parse().unwrap();
        let mut reply = arp_probe(THEM, Ipv4Addr::new(10, 0, 0, 9));
        reply[28..32].copy_from_slice(&[10, 0, 0, 5]);
        reply[21] = 2;
        assert_eq!(
            answer(&reply, US, &[want]),
            Some(Conflict {
                addr: want,
                mac: THEM
            })
        );
        let rival = arp_probe(THEM, Ipv4Addr::new(10, 0, 0, 5));
        assert!(answer(&rival, US, &[want]).is_some());
        // Our own probe, and someone else's address, are not.
        assert!(answer(&arp_probe(US, Ipv4Addr::new(10, 0, 0, 5)), US, &[want]).is_none());
        assert!(answer(&arp_probe(THEM, Ipv4Addr::new(10, 0, 0, 6)), US, &[want]).is_none());
    }

    #[test]
    fn a_rival_dad_solicitation_is_a_conflict_and_its_checksum_is_right() {
        let target: Ipv6Addr = "fd00::5".parse().unwrap();
        let ns = dad_solicitation(THEM, target);
        assert_eq!(&ns[..6], &[0x33, 0x33, 0xff, 0, 0, 5]);
        // A correct checksum sums (with the pseudo-header) to all ones.
        let (src, dst) = (Ipv6Addr::UNSPECIFIED, "ff02::1:ff00:5".parse().unwrap());
        assert_eq!(icmpv6_checksum(&src, &dst, &ns[54..]), 0);
        assert_eq!(
            answer(&ns, US, &[IpAddr::V6(target)]).map(|c| c.mac),
            Some(THEM)
        );
        assert!(answer(&dad_solicitation(US, target), US, &[IpAddr::V6(target)]).is_none());
    }
}
