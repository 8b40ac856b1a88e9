//! The anti-spoofing rules for what an endpoint sends, written from the
//! rules (a port sends only from its own MAC and addresses, and no one
//! else's neighbour, router or DHCP server answers), not from the program:
//! what `attach_tx` must do with a frame before switching it.
//!
//! The frame is parsed as a receiver would: under up to two VLAN tags, ARP
//! for Ethernet/IPv4, IPv4 and its first fragment's UDP ports, IPv6 with
//! its extension-header chain and every neighbour-discovery option. The
//! policy the rules leave open is the documented one: a frame too short to
//! read what is checked is dropped (`drop_parse`), as is one hiding its
//! upper layer behind more headers than are walked
//! ([`IPV6_EXT_WALKED`] extension headers, two VLAN tags,
//! [`ND_OPTS_WALKED`] neighbour-discovery options: dropped as a spoof). A frame every
//! receiver discards anyway (a malformed IPv4, IPv6 or ARP header) may
//! pass or be dropped: the model then allows both; so may a neighbour
//! discovery message whose last option runs past its end.

use std::net::IpAddr;

use attach_common::{EP_F_DHCP_SERVER, EP_F_IPCHK, EP_F_ROUTER, EP_F_SPOOFCHK, MacAddr, Verdict};

use super::{fuzz::eui64_ll, lab::Lab};

/// Extension headers walked to the upper layer before giving up.
pub const IPV6_EXT_WALKED: usize = 4;

/// Neighbour-discovery options read before giving up.
pub const ND_OPTS_WALKED: usize = 16;

/// Acceptable answers: `None` passes, `Some(v)` drops with reason `v`.
pub type Answers = Vec<Option<Verdict>>;

fn be16(f: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(f.get(at..at + 2)?.try_into().ok()?))
}

struct Port<'a> {
    mac: MacAddr,
    flags: u8,
    ips: &'a [IpAddr],
}

impl Port<'_> {
    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
    fn owns4(&self, a: [u8; 4]) -> bool {
        self.ips.contains(&IpAddr::from(a))
    }
    fn owns6(&self, a: [u8; 16]) -> bool {
        self.ips.contains(&IpAddr::from(a))
    }
}

/// A single answer; `loose` adds passing (a frame receivers discard).
fn one(v: Result<(), Verdict>, loose: bool) -> Answers {
    let mut a = vec![v.err()];
    if loose && a[0].is_some() {
        a.push(None);
    }
    a
}

impl Lab {
    /// What the guard of endpoint `i` must do with `f` (at least 14 bytes).
    pub fn model_guard(&self, i: usize, f: &[u8]) -> Answers {
        let ep = &self.eps[i];
        let port = Port {
            mac: ep.mac,
            flags: ep.flags,
            ips: &self.ips[i],
        };
        if !port.has(EP_F_SPOOFCHK | EP_F_IPCHK) {
            return vec![None];
        }
        if port.has(EP_F_SPOOFCHK) && f[6..12] != port.mac {
            return vec![Some(Verdict::DropSpoofed)];
        }
        let mut ty = be16(f, 12).unwrap();
        let mut l3 = 14;
        for _ in 0..2 {
            if ty != 0x8100 && ty != 0x88a8 {
                break;
            }
            let Some(inner) = be16(f, l3 + 2) else {
                return vec![Some(Verdict::DropParse)];
            };
            ty = inner;
            l3 += 4;
        }
        let b = &f[l3.min(f.len())..];
        match ty {
            0x8100 | 0x88a8 => vec![Some(Verdict::DropParse)],
            0x0806 => arp(&port, b),
            0x0800 => ipv4(&port, b),
            0x86dd => ipv6(&port, b),
            _ => vec![None],
        }
    }
}

fn arp(p: &Port, b: &[u8]) -> Answers {
    // Receivers take Ethernet (1, or IEEE 802: 6) hardware, IPv4, 6 and 4
    // byte addresses only.
    let valid = b.len() >= 8
        && matches!(be16(b, 0), Some(1 | 6))
        && be16(b, 2) == Some(0x0800)
        && b[4] == 6
        && b[5] == 4;
    let r = (|| {
        let s = b.get(8..18).ok_or(Verdict::DropParse)?;
        if p.has(EP_F_SPOOFCHK) && s[..6] != p.mac {
            return Err(Verdict::DropSpoofedArp);
        }
        let spa: [u8; 4] = s[6..10].try_into().unwrap();
        if p.has(EP_F_IPCHK) && spa != [0; 4] && !p.owns4(spa) {
            return Err(Verdict::DropSpoofed);
        }
        Ok(())
    })();
    one(r, !valid)
}

fn ipv4(p: &Port, b: &[u8]) -> Answers {
    let Some(h) = b.get(..20) else {
        return vec![Some(Verdict::DropParse)];
    };
    let ihl = usize::from(h[0] & 0xf) * 4;
    let valid = h[0] >> 4 == 4 && ihl >= 20;
    let r = (|| {
        let src: [u8; 4] = h[12..16].try_into().unwrap();
        if p.has(EP_F_IPCHK) && src != [0; 4] && !p.owns4(src) {
            return Err(Verdict::DropSpoofed);
        }
        let offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
        if h[9] == 17 && offset == 0 && !p.has(EP_F_DHCP_SERVER) {
            let sport = be16(b, ihl).ok_or(Verdict::DropParse)?;
            if sport == 67 {
                return Err(Verdict::DropRogueDhcp);
            }
        }
        Ok(())
    })();
    if valid {
        return one(r, false);
    }
    // A header length under 20: where the ports are is anyone's guess.
    let mut a = one(r, true);
    a.extend([Some(Verdict::DropRogueDhcp), Some(Verdict::DropParse)]);
    a
}

fn ipv6(p: &Port, b: &[u8]) -> Answers {
    if b.len() < 40 {
        // A header cut short: no receiver takes it.
        return vec![None, Some(Verdict::DropParse), Some(Verdict::DropSpoofed)];
    }
    let valid = b[0] >> 4 == 6;
    // Whether an ND option runs past the end: the message is invalid.
    let mut overrun = false;
    let r = (|| {
        let src: [u8; 16] = b[8..24].try_into().unwrap();
        let link_local = src[0] == 0xfe && src[1] & 0xc0 == 0x80;
        if p.has(EP_F_IPCHK) && src != [0; 16] && !link_local && !p.owns6(src) {
            return Err(Verdict::DropSpoofed);
        }
        let mut next = b[6];
        let mut off = 40;
        let mut walked = 0;
        loop {
            match next {
                0 | 43 | 60 | 44 if walked == IPV6_EXT_WALKED => {
                    return Err(Verdict::DropParse);
                }
                0 | 43 | 60 => {
                    let e = b.get(off..off + 2).ok_or(Verdict::DropParse)?;
                    next = e[0];
                    off += (usize::from(e[1]) + 1) * 8;
                }
                44 => {
                    let e = b.get(off..off + 4).ok_or(Verdict::DropParse)?;
                    if u16::from_be_bytes([e[2], e[3]]) >> 3 != 0 {
                        // A later fragment: no upper-layer header.
                        return Ok(());
                    }
                    next = e[0];
                    off += 8;
                }
                _ => break,
            }
            walked += 1;
        }
        match next {
            58 => icmp6(p, b, off, &mut overrun),
            17 if !p.has(EP_F_DHCP_SERVER) => {
                if be16(b, off).ok_or(Verdict::DropParse)? == 547 {
                    return Err(Verdict::DropRogueDhcp);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    })();
    let mut a = one(r, !valid);
    if overrun {
        a.extend([None, Some(Verdict::DropSpoofedNd)]);
    }
    a
}

fn icmp6(p: &Port, b: &[u8], off: usize, overrun: &mut bool) -> Result<(), Verdict> {
    let ty = *b.get(off).ok_or(Verdict::DropParse)?;
    let opts = match ty {
        134 | 137 if !p.has(EP_F_ROUTER) => return Err(Verdict::DropRogueRouter),
        133 => 8,
        134 => 16,
        135 | 136 => 24,
        137 => 40,
        _ => return Ok(()),
    };
    if ty == 136 && p.has(EP_F_IPCHK) {
        let t: [u8; 16] = b
            .get(off + 8..off + 24)
            .ok_or(Verdict::DropParse)?
            .try_into()
            .unwrap();
        if t != eui64_ll(&p.mac) && !p.owns6(t) {
            return Err(Verdict::DropSpoofedNd);
        }
    }
    if !p.has(EP_F_SPOOFCHK) {
        return Ok(());
    }
    // Every option: a zero length makes the message invalid; source and
    // target link-layer addresses must be the port's.
    let mut at = off + opts;
    let mut walked = 0;
    while let Some(o) = b.get(at..at + 8) {
        if walked == ND_OPTS_WALKED {
            return Err(Verdict::DropSpoofedNd);
        }
        walked += 1;
        if o[1] == 0 {
            return Err(Verdict::DropSpoofedNd);
        }
        if matches!(o[0], 1 | 2) && o[2..8] != p.mac {
            return Err(Verdict::DropSpoofedNd);
        }
        at += usize::from(o[1]) * 8;
    }
    *overrun = at > b.len();
    Ok(())
}
