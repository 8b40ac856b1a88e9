//! Parent ingress (tcx), ipvlan ports: frames from the wire, demuxed by
//! destination IP (`ipvlan_handle_mode_l2/l3`). Attached before the macvlan
//! program, so it sees every frame first and passes on ("next") whatever is
//! not for an ipvlan endpoint.

use attach_common::{DATAPATH_MARK, Direction::Rx as DIR, IPVL_MODE_L3S, Verdict};
use aya_ebpf::{
    bindings::{BPF_F_INGRESS, TC_ACT_REDIRECT, TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::bpf_redirect,
    programs::TcContext,
};

use crate::{
    bw::{self, Way},
    eth::{self, mac_eq},
    flood::flood_ipvlan,
    ipvlan,
    l3::{L3_MALFORMED, l3_addr},
    macvlan::NO_SENDER,
    maps::{IPVL_PARENTS, PARENTS},
    peers,
    proto::{ETH_P_ARP, ETH_P_IPV6},
    skb, stats,
};

pub fn run(ctx: &TcContext) -> i32 {
    let (mark, ifindex) = skb::mark_ifindex(ctx);
    if mark == DATAPATH_MARK {
        // An endpoint's frame handed to the node: the macvlan program after
        // us clears the mark, or, with none on this parent, we do.
        // SAFETY: lookup only.
        if unsafe { PARENTS.get(&ifindex) }.is_none() {
            ctx.set_mark(0);
        }
        return TC_ACT_UNSPEC;
    }
    // SAFETY: copied out at once.
    let Some(port) = (unsafe { IPVL_PARENTS.get(&ifindex) }).copied() else {
        stats::verdict(DIR, Verdict::NotOurs);
        return TC_ACT_UNSPEC;
    };
    let Some(eth) = eth::read_tc(ctx) else {
        stats::verdict(DIR, Verdict::Unparsed);
        return TC_ACT_UNSPEC;
    };
    let l2 = ipvlan::is_l2(&port);
    if eth.is_multicast() {
        if l2 {
            // Cloned to the endpoints unless an endpoint, or a macvlan
            // bridge port of this parent, sent it (they had it on
            // transmit); the node always gets it.
            if ipvlan::external(ctx, &port, ifindex, &eth)
                && !(peers::port_is_bridge_like(&port)
                    && peers::sent_by_macvlan_bridge_port(ifindex, &eth))
            {
                flood_ipvlan(ctx, port.slot, port.nports, &eth, NO_SENDER);
                stats::verdict(DIR, Verdict::Flood);
            } else {
                stats::verdict(DIR, Verdict::ToHost);
            }
            return TC_ACT_UNSPEC;
        }
        // l3: multicast is demuxed like unicast (ARP by target, DAD by target).
    } else if !mac_eq(&eth.dst, &port.mac) {
        // Another MAC (a macvlan endpoint's, or none here): not ipvlan's.
        return TC_ACT_UNSPEC;
    }
    let proto = u16::from_be(eth.proto);
    if !l2 && !mac_eq(&eth.src, &port.mac) {
        // Another host asks for an l3 endpoint's address: the node answers.
        let answered = match proto {
            ETH_P_ARP => ipvlan::arp_reply(ctx, &port, ifindex),
            ETH_P_IPV6 => ipvlan::na_reply(ctx, &port, ifindex),
            _ => false,
        };
        if answered {
            stats::verdict(DIR, Verdict::NeighReply);
            // SAFETY: plain helper call.
            return unsafe { bpf_redirect(ifindex, 0) as i32 };
        }
    }
    let addr = l3_addr(ctx, &eth, true);
    let Some(ep) = ipvlan::lookup(ctx, ifindex, &addr) else {
        // The node's stack has it, and drops what it cannot parse.
        let v = if addr.kind == L3_MALFORMED {
            Verdict::Unparsed
        } else {
            Verdict::ToHost
        };
        stats::verdict(DIR, v);
        return TC_ACT_UNSPEC;
    };
    let len = ctx.len() as u64;
    if !bw::pass(ep.id, Way::In, len as u32) {
        stats::verdict(DIR, Verdict::DropRateLimit);
        stats::rx_dropped(ep.id);
        return TC_ACT_SHOT as i32;
    }
    if port.mode == IPVL_MODE_L3S && addr.is_ip() {
        // l3s: through the node's stack (its netfilter hooks see it),
        // entering from the endpoint's veth; the mark selects the table
        // with the endpoint's route.
        ctx.set_mark(DATAPATH_MARK);
        stats::verdict(DIR, Verdict::ToHost);
        stats::rx(ep.id, len, &eth);
        // SAFETY: plain helper call.
        return unsafe { bpf_redirect(ep.host_ifindex, BPF_F_INGRESS as u64) as i32 };
    }
    let ret = crate::kernel::peer_into(skb::raw(ctx), ep.host_ifindex) as i32;
    if ret == TC_ACT_REDIRECT as i32 {
        stats::verdict(DIR, Verdict::ToEndpoint);
        stats::rx(ep.id, len, &eth);
        ret
    } else {
        stats::verdict(DIR, Verdict::DropRedirect);
        stats::rx_dropped(ep.id);
        TC_ACT_SHOT as i32
    }
}
