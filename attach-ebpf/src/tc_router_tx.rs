//! Router endpoint transmit (tcx ingress on the host-side veth): what a
//! routed container sends. Its ARP/ND for the gateway (or anything else it
//! believes on-link) is answered here; IP packets to the gateway's MAC are
//! forwarded by the node's tables without the node's forwarding path.

use attach_common::{Direction::Tx as DIR, Verdict};
use aya_ebpf::{bindings::TC_ACT_UNSPEC, helpers::bpf_redirect, programs::TcContext};

use crate::{
    admit::{admit, drop},
    eth::mac_eq,
    events::{Pkt, report},
    maps::RT_PORTS,
    proto::{ETH_P_ARP, ETH_P_IPV6},
    router::{self, Fwd},
    stats,
};

pub fn run(ctx: &TcContext) -> i32 {
    let (_, ifindex, _) = router::skb_fields(ctx);
    // SAFETY: copied out at once.
    let Some(port) = (unsafe { RT_PORTS.get(&ifindex) }).copied() else {
        stats::verdict(DIR, Verdict::NotOurs);
        return TC_ACT_UNSPEC;
    };
    let ep = port.ep;
    let eth = match admit(ctx, ifindex, &ep) {
        Ok(eth) => eth,
        Err(ret) => return ret,
    };
    let len = ctx.len();
    let pkt = Pkt {
        ifindex,
        endpoint: ep.id,
        len,
        eth: &eth,
    };
    stats::tx(ep.id, len as u64, &eth);
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
    match router::forward(ctx, &eth, ifindex, true) {
        Fwd::Endpoint(id) => {
            report(DIR, Verdict::ToEndpoint, &pkt);
            stats::rx(id, len as u64, &eth);
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
