//! Router endpoint transmit (tcx ingress on the host-side veth): what a
//! routed container sends. Its ARP/ND for the gateway (or anything else it
//! believes on-link) is answered here; IP packets to the gateway's MAC are
//! forwarded by the node's tables without the node's forwarding path.

use attach_common::{Direction::Tx as DIR, RouterPort, Verdict};
use aya_ebpf::{bindings::TC_ACT_UNSPEC, helpers::bpf_redirect, programs::TcContext};

use crate::{
    bw::{self, Way},
    admit::{self, Sent, drop},
    eth::mac_eq,
    events::report,
    proto::{ETH_P_ARP, ETH_P_IPV6},
    router::{self, Fwd},
    stats,
};

pub fn run(ctx: &TcContext) -> i32 {
    match admit::sent::<RouterPort>(ctx) {
        Ok(s) => send(ctx, &s),
        Err(ret) => ret,
    }
}

/// Answered, forwarded, or left to the node's stack.
#[inline(always)]
fn send(ctx: &TcContext, s: &Sent<RouterPort>) -> i32 {
    let (ifindex, port, eth) = (s.ifindex, s.port, &s.eth);
    let ep = port.ep;
    let len = s.len;
    let pkt = s.pkt(ep.id);
    stats::tx(ep.id, len as u64, eth);
    let proto = u16::from_be(eth.proto);
    let answered = match proto {
        ETH_P_ARP => router::arp_reply(ctx, &port),
        ETH_P_IPV6 if eth.is_multicast() || mac_eq(&eth.dst, &port.gw_mac) => {
            router::na_reply(ctx, &port)
        }
        _ => false,
    };
    if answered {
        report(DIR, Verdict::NeighReply, &pkt);
        // Back out of the host side: into the container.
        // SAFETY: plain helper call.
        return unsafe { bpf_redirect(ifindex, 0) as i32 };
    }
    if !mac_eq(&eth.dst, &port.gw_mac) {
        // Multicast (MLD, router solicitations), ARP the node does not
        // answer, or another MAC: the node's stack has it.
        report(DIR, Verdict::ToHost, &pkt);
        return TC_ACT_UNSPEC;
    }
    match router::forward(ctx, eth, ifindex, true) {
        Fwd::Endpoint(id) => {
            if !bw::pass(id, Way::In, len) {
                stats::rx_dropped(id);
                return drop(&pkt, Verdict::DropRateLimit);
            }
            report(DIR, Verdict::ToEndpoint, &pkt);
            stats::rx(id, len as u64, eth);
            aya_ebpf::bindings::TC_ACT_REDIRECT as i32
        }
        Fwd::Routed => {
            report(DIR, Verdict::Routed, &pkt);
            aya_ebpf::bindings::TC_ACT_REDIRECT as i32
        }
        Fwd::Stack => {
            report(DIR, Verdict::ToHost, &pkt);
            TC_ACT_UNSPEC
        }
        Fwd::Failed => drop(&pkt, Verdict::DropRedirect),
    }
}
