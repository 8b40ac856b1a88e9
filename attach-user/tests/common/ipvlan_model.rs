//! The kernel's ipvlan rules for one frame (`drivers/net/ipvlan/
//! ipvlan_core.c` and semantics.md), written independently of the programs,
//! plus the documented deviations (docs/datapath.md, ipvlan): what
//! `attach_ipvl_rx` on the parent and `attach_ipvl_tx` on an endpoint's
//! host-side veth must do, for the fuzzer.
//!
//! The address a frame is demuxed by is `ipvlan_get_L3_hdr` +
//! `ipvlan_addr_lookup`: untagged frames only; ARP's target (or sender)
//! address at its fixed offset once 28 bytes are there; IPv4 with a
//! version 4, a header length of 5 words or more and a total length
//! between the header's and the frame's; IPv6 with version 6, and an
//! ICMPv6 message from `::` looked up by a solicitation's target only. An
//! address counts while its endpoint is up. ipvlan has no source checks.

use std::net::IpAddr;

use attach_common::{
    Direction::{Rx as RX, Tx as TX},
    EndpointStats, IPVL_F_PRIVATE, IPVL_F_VEPA, IPVL_MODE_L2, IPVL_MODE_L3S, MacAddr, Verdict,
};

use super::{frames::BROADCAST, lab::Lab, outcome::*, *};

/// An ipvlan port's mode (`IPVL_MODE_*`) and flag (`IPVL_F_*`).
#[derive(Clone, Copy, Debug)]
pub struct Port {
    pub mode: u8,
    pub flags: u8,
}

/// What `ipvlan_get_L3_hdr` makes of a frame, and the address looked up.
#[derive(Clone, Copy, Debug, PartialEq)]
enum L3 {
    /// Not ARP, IPv4 or IPv6 (tagged frames included): no header.
    Other,
    /// ARP, IPv4 or IPv6 failing the kernel's checks: no header.
    Malformed,
    Arp([u8; 4]),
    V4([u8; 4]),
    V6([u8; 16]),
    /// A neighbour solicitation from `::`: its target.
    Dad([u8; 16]),
    /// Another ICMPv6 message from `::`: nothing looked up.
    Unlooked,
}

impl L3 {
    fn is_ip(&self) -> bool {
        matches!(self, L3::V4(_) | L3::V6(_))
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// `ipvlan_get_L3_hdr` and the address `ipvlan_addr_lookup` takes from it
/// (the destination, or with `dest` false the source).
fn l3(f: &[u8], dest: bool) -> L3 {
    let b = &f[14..];
    match be16(f, 12) {
        // arp_hdr_len(): 8 + 2 * (6 + 4); the addresses at fixed offsets.
        0x0806 if b.len() < 28 => L3::Malformed,
        0x0806 => L3::Arp(b[if dest { 24 } else { 14 }..][..4].try_into().unwrap()),
        0x0800 => {
            if b.len() < 20 || b[0] >> 4 != 4 || b[0] & 0xf < 5 {
                return L3::Malformed;
            }
            let tot = usize::from(be16(b, 2));
            if b.len() < tot || tot < usize::from(b[0] & 0xf) * 4 {
                return L3::Malformed;
            }
            L3::V4(b[if dest { 16 } else { 12 }..][..4].try_into().unwrap())
        }
        0x86dd => {
            if b.len() < 40 || b[0] >> 4 != 6 {
                return L3::Malformed;
            }
            if b[8..24] == [0; 16] && b[6] == 58 {
                // The ICMPv6 header (8 bytes), a solicitation's target.
                if b.len() < 48 || (b[40] == 135 && b.len() < 64) {
                    return L3::Malformed;
                }
                if b[40] == 135 {
                    return L3::Dad(b[48..64].try_into().unwrap());
                }
                return L3::Unlooked;
            }
            L3::V6(b[if dest { 24 } else { 8 }..][..16].try_into().unwrap())
        }
        _ => L3::Other,
    }
}

/// The receiver's counters for a frame to `dst` of `len` bytes.
fn rx_of(dst: &MacAddr, len: u64) -> EndpointStats {
    if *dst == BROADCAST {
        rx_bc(len)
    } else if dst[0] & 1 != 0 {
        rx_mc(len)
    } else {
        rx_uc(len)
    }
}

/// The sender's counters, with `copies` flood copies.
fn tx_of(dst: &MacAddr, len: u64, copies: u64) -> EndpointStats {
    if *dst == BROADCAST {
        tx_bc(len, copies)
    } else if dst[0] & 1 != 0 {
        tx_mc(len, copies)
    } else {
        tx_uc(len)
    }
}

fn dropped(s: EndpointStats) -> EndpointStats {
    EndpointStats { tx_dropped: 1, ..s }
}

/// The documented deviation: an ARP request (Ethernet/IPv4, 42 bytes at
/// least) or a neighbour solicitation (not DAD: the exact 86-byte message
/// with one source link-layer option) from another host; its target.
fn neigh_request(f: &[u8]) -> Option<IpAddr> {
    let b = &f[14..];
    match be16(f, 12) {
        0x0806 if b.len() >= 28 && b[..8] == [0, 1, 8, 0, 6, 4, 0, 1] => {
            Some(IpAddr::from(<[u8; 4]>::try_from(&b[24..28]).unwrap()))
        }
        0x86dd
            if b.len() == 72
                && b[0] >> 4 == 6
                && b[4..8] == [0, 32, 58, 255]
                && b[40..42] == [135, 0]
                && b[64..66] == [1, 1]
                && b[8..24] != [0; 16] =>
        {
            Some(IpAddr::from(<[u8; 16]>::try_from(&b[48..64]).unwrap()))
        }
        _ => None,
    }
}

fn one(
    ret: u32,
    verdicts: Vec<(attach_common::Direction, Verdict, u64)>,
    eps: Vec<(usize, EndpointStats)>,
) -> Vec<Expect> {
    vec![Expect { ret, verdicts, eps }]
}

impl Lab {
    /// The up endpoint owning `a` (`ipvlan_ht_addr_lookup`: a slave's
    /// addresses are hashed only while it is up).
    fn ipvl_owner(&self, a: IpAddr) -> Option<usize> {
        (0..self.eps.len()).find(|&i| self.up[i] && self.ips[i].contains(&a))
    }

    fn ipvl_owner_of(&self, a: L3) -> Option<usize> {
        match a {
            L3::Arp(v) | L3::V4(v) => self.ipvl_owner(IpAddr::from(v)),
            L3::V6(v) | L3::Dad(v) => self.ipvl_owner(IpAddr::from(v)),
            _ => None,
        }
    }

    /// The copies of a multicast frame to every endpoint but `sender`
    /// (`ipvlan_process_multicast`), and how many fail. The kernel skips a
    /// down slave; the datapath cannot tell a down container side until
    /// the copy fails, and counts that (`rx_dropped`, `flood_copy_failed`),
    /// as for macvlan.
    fn ipvl_copies(
        &self,
        sender: Option<usize>,
        dst: &MacAddr,
        len: u64,
    ) -> (Vec<(usize, EndpointStats)>, u64) {
        let mut failed = 0;
        let eps = (0..self.eps.len())
            .filter(|&j| Some(j) != sender)
            .map(|j| {
                if self.up[j] {
                    (j, rx_of(dst, len))
                } else {
                    failed += 1;
                    let d = EndpointStats {
                        rx_dropped: 1,
                        ..Default::default()
                    };
                    (j, d)
                }
            })
            .collect();
        (eps, failed)
    }

    /// What `attach_ipvl_rx` may do with `f` from the wire on parent 0.
    pub fn model_ipvl_rx(&self, port: Port, f: &[u8]) -> Vec<Expect> {
        let pmac = self.parents[0].mac;
        let len = f.len() as u64;
        let dst: MacAddr = f[0..6].try_into().unwrap();
        let src: MacAddr = f[6..12].try_into().unwrap();
        let mc = dst[0] & 1 != 0;
        if !mc && dst != pmac {
            // Another MAC: not ipvlan's (left to the macvlan program).
            return one(TC_ACT_UNSPEC, vec![], vec![]);
        }
        let to_host = |a: L3| {
            let mut v = one(TC_ACT_UNSPEC, vec![(RX, Verdict::ToHost, 1)], vec![]);
            if a == L3::Malformed {
                // The kernel hands it to the master too: which verdict
                // counts it is ours.
                v.extend(one(TC_ACT_UNSPEC, vec![(RX, Verdict::Unparsed, 1)], vec![]));
            }
            v
        };
        if port.mode == IPVL_MODE_L2 && mc {
            // ipvlan_handle_mode_l2: external multicast is queued for every
            // up slave (ipvlan_process_multicast) and passed to the master;
            // ipvlan_external_frame: not the master's MAC with a slave's
            // source address. Pause frames are never queued.
            let own = src == pmac && self.ipvl_owner_of(l3(f, false)).is_some();
            if own || be16(f, 12) == 0x8808 {
                return one(TC_ACT_UNSPEC, vec![(RX, Verdict::ToHost, 1)], vec![]);
            }
            let (eps, failed) = self.ipvl_copies(None, &dst, len);
            let mut v = vec![(RX, Verdict::Flood, 1)];
            if failed > 0 {
                v.push((RX, Verdict::DropFloodCopy, failed));
            }
            return one(TC_ACT_UNSPEC, v, eps);
        }
        if port.mode != IPVL_MODE_L2
            && src != pmac
            && let Some(t) = neigh_request(f)
            && self.ipvl_owner(t).is_some()
        {
            // Deviation: the node answers for its l3/l3s endpoints.
            return one(TC_ACT_REDIRECT, vec![(RX, Verdict::NeighReply, 1)], vec![]);
        }
        // ipvlan_handle_mode_l3 (l2 unicast too): by destination address.
        let a = l3(f, true);
        let Some(i) = self.ipvl_owner_of(a) else {
            return to_host(a);
        };
        // Deviation: l3s demuxes here too, IP through the node's stack.
        let v = if port.mode == IPVL_MODE_L3S && a.is_ip() {
            Verdict::ToHost
        } else {
            Verdict::ToEndpoint
        };
        one(
            TC_ACT_REDIRECT,
            vec![(RX, v, 1)],
            vec![(i, rx_of(&dst, len))],
        )
    }

    /// What `attach_ipvl_tx` may do with `f` sent by endpoint `i`.
    pub fn model_ipvl_tx(&self, port: Port, i: usize, f: &[u8]) -> Vec<Expect> {
        let len = f.len() as u64;
        let dst: MacAddr = f[0..6].try_into().unwrap();
        let src: MacAddr = f[6..12].try_into().unwrap();
        let mc = dst[0] & 1 != 0;
        let vepa = port.flags & IPVL_F_VEPA != 0;
        let private = port.flags & IPVL_F_PRIVATE != 0;
        let tx = tx_of(&dst, len, 0);
        let drop = |why| one(TC_ACT_SHOT, vec![(TX, why, 1)], vec![(i, dropped(tx))]);
        // ipvlan_rcv_frame(local): to slave j; private drops first.
        let deliver = |j: usize| {
            if private {
                return drop(Verdict::DropPrivate);
            }
            one(
                TC_ACT_REDIRECT,
                vec![(TX, Verdict::ToEndpoint, 1)],
                vec![(i, tx), (j, rx_of(&dst, len))],
            )
        };
        let a = l3(f, true);
        if port.mode == IPVL_MODE_L2 {
            // ipvlan_xmit_mode_l2.
            if !vepa && dst == src {
                if let Some(j) = self.ipvl_owner_of(a) {
                    return deliver(j);
                }
                // dev_forward_skb(phy_dev): the node's stack.
                return one(
                    TC_ACT_REDIRECT,
                    vec![(TX, Verdict::ToHost, 1)],
                    vec![(i, tx)],
                );
            }
            if mc {
                // Every other up slave, then out of the master.
                let (mut eps, failed) = self.ipvl_copies(Some(i), &dst, len);
                let copies = eps.len() as u64 - failed;
                eps.push((i, tx_of(&dst, len, copies)));
                let mut v = vec![(TX, Verdict::ToParent, 1)];
                if failed > 0 {
                    v.push((TX, Verdict::DropFloodCopy, failed));
                }
                return one(TC_ACT_REDIRECT, v, eps);
            }
            return one(
                TC_ACT_REDIRECT,
                vec![(TX, Verdict::ToParent, 1)],
                vec![(i, tx)],
            );
        }
        // ipvlan_xmit_mode_l3: the lookup first, whatever the MAC.
        if !vepa && let Some(j) = self.ipvl_owner_of(a) {
            return deliver(j);
        }
        // ipvlan_process_outbound.
        if mc {
            return drop(Verdict::DropMulticast);
        }
        // The kernel routes by the protocol: any IPv6 packet (an ICMPv6
        // message from `::` too, demuxed or not), IPv4 whatever its header.
        let b = &f[14..];
        let (src_ip, dst_ip) = match (be16(f, 12), a) {
            (0x0800, L3::V4(d)) => (None, IpAddr::from(d)),
            (0x86dd, _) if b.len() >= 40 && b[0] >> 4 == 6 => (
                Some(IpAddr::from(<[u8; 16]>::try_from(&b[8..24]).unwrap())),
                IpAddr::from(<[u8; 16]>::try_from(&b[24..40]).unwrap()),
            ),
            // Deviation (documented): not IPv4/IPv6, or an IP header of
            // the wrong version or lengths, is not routed.
            _ => return drop(Verdict::DropParse),
        };
        if port.mode == IPVL_MODE_L3S {
            return one(TC_ACT_UNSPEC, vec![(TX, Verdict::ToHost, 1)], vec![(i, tx)]);
        }
        let to_node = || {
            one(
                TC_ACT_REDIRECT,
                vec![(TX, Verdict::ToHost, 1)],
                vec![(i, tx)],
            )
        };
        let routed = || {
            one(
                TC_ACT_REDIRECT,
                vec![(TX, Verdict::Routed, 1)],
                vec![(i, tx)],
            )
        };
        match node_route(dst_ip, src_ip) {
            Route::Parent => routed(),
            Route::Node => to_node(),
            Route::Either => {
                let mut v = routed();
                v.extend(to_node());
                v
            }
            Route::None => drop(Verdict::DropNoRoute),
        }
    }
}

enum Route {
    /// A unicast route out of the parent.
    Parent,
    /// Not forwarded: the node's own, broadcast, anycast, or no route.
    Node,
    /// Either of those (the subnet's network address).
    Either,
    /// A blackhole.
    None,
}

/// The node's tables in an ipvlan lab (common/ipvlan.rs): 10.77.0.254/24
/// and fd77::fe/64 on the parent, a blackhole for 192.0.2.0/24, nothing
/// else; as `bpf_fib_lookup` sees them (the node's local, broadcast and
/// anycast routes, and what needs a strict lookup, are not forwarded).
fn node_route(d: IpAddr, s: Option<IpAddr>) -> Route {
    // bpf_ipv6_fib_lookup: link-local (multicast, loopback) sources and
    // destinations are never forwarded.
    let strict = |a: IpAddr| match a {
        IpAddr::V6(a) => {
            let o = a.octets();
            o[0] == 0xff || (o[0] == 0xfe && o[1] & 0xc0 == 0x80) || a.is_loopback()
        }
        IpAddr::V4(_) => false,
    };
    if s.is_some_and(strict) || strict(d) {
        return Route::Node;
    }
    match d {
        IpAddr::V4(a) => {
            let o = a.octets();
            if o[..3] == [192, 0, 2] {
                Route::None
            } else if o[..3] == [10, 77, 0] {
                match o[3] {
                    254 | 255 => Route::Node,
                    0 => Route::Either,
                    _ => Route::Parent,
                }
            } else {
                Route::Node
            }
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            if o[..8] == [0xfd, 0x77, 0, 0, 0, 0, 0, 0] {
                if o[8..] == [0; 8] || o[8..] == [0, 0, 0, 0, 0, 0, 0, 0xfe] {
                    Route::Node
                } else {
                    Route::Parent
                }
            } else {
                Route::Node
            }
        }
    }
}
