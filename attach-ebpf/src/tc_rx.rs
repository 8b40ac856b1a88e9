//! Parent ingress (tcx): frames from the wire, switched by destination MAC.

use attach_common::{
    DATAPATH_MARK, Direction::Rx as DIR, EP_F_NESTED, Endpoint, MODE_BRIDGE, Verdict,
};
use aya_ebpf::{
    bindings::{TC_ACT_REDIRECT, TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::bpf_redirect,
    programs::TcContext,
};

use crate::{
    bw::{self, Way},
    eth::{self, EthHdr},
    events::{NO_ENDPOINT, Pkt, report},
    flood::{Rule, flood},
    macvlan::{self, Rx},
    maps::PARENTS,
    nested, peers, skb, stats, swpeers,
};

pub fn run(ctx: &TcContext) -> i32 {
    let (mark, ifindex) = skb::mark_ifindex(ctx);
    if mark == DATAPATH_MARK {
        // A container's frame we handed to the node's stack ourselves; the
        // switch whose uplink this parent is, after us, clears the mark.
        if !swpeers::switch_follows(ifindex) {
            ctx.set_mark(0);
        }
        return TC_ACT_UNSPEC;
    }
    // Read in place: the hot path loads only the destination.
    let Some(eth) = eth::header_tc(ctx) else {
        // SAFETY: only tested for presence.
        let ours = unsafe { PARENTS.get(&ifindex) }.is_some();
        stats::verdict(
            DIR,
            if ours {
                Verdict::Unparsed
            } else {
                Verdict::NotOurs
            },
        );
        return TC_ACT_UNSPEC;
    };
    let len = ctx.len();
    // The hot path, one lookup: unicast to an endpoint of this parent.
    if !eth.is_multicast()
        && let Some(ep) = macvlan::rx_unicast(ifindex, eth)
    {
        let pkt = Pkt {
            ifindex,
            endpoint: ep.id,
            len,
            eth,
        };
        return to_endpoint(ctx, &ep, &pkt);
    }
    // The rest floods and pushes tags, which move packet data: a copy.
    let eth = *eth;
    let pkt = |endpoint| Pkt {
        ifindex,
        endpoint,
        len,
        eth: &eth,
    };
    // SAFETY: copied out at once.
    let Some(cfg) = (unsafe { PARENTS.get(&ifindex) }).copied() else {
        stats::verdict(DIR, Verdict::NotOurs);
        return TC_ACT_UNSPEC;
    };
    let decision = if eth.is_multicast() {
        if peers::sent_by_ipvlan_endpoint(ctx, &cfg, ifindex, &eth) {
            // The bridge ports had it on the ipvlan endpoint's transmit.
            Rx::Flood {
                sender_mode: MODE_BRIDGE,
                sender_id: macvlan::PEER_SENDER,
            }
        } else if swpeers::sent_by_switch_port(&cfg, ifindex, &eth) {
            // The bridge ports had it on the switch port's transmit.
            Rx::Host
        } else {
            macvlan::rx_multicast(ifindex, &eth)
        }
    } else {
        macvlan::rx_unicast_miss(&cfg)
    };
    match decision {
        Rx::Endpoint(ep) => to_endpoint(ctx, &ep, &pkt(ep.id)),
        Rx::Sender(ep) if ep.has(EP_F_NESTED) => {
            nested_delivery(ctx, &ep, &pkt(ep.id), Verdict::ToSender)
        }
        Rx::Host => {
            report(DIR, Verdict::ToHost, &pkt(NO_ENDPOINT));
            TC_ACT_UNSPEC
        }
        Rx::Sender(ep) => {
            report(DIR, Verdict::ToSender, &pkt(ep.id));
            stats::rx(ep.id, len as u64, &eth);
            // Egress of the host-side veth delivers into the container.
            // SAFETY: plain helper call.
            unsafe { bpf_redirect(ep.host_ifindex, 0) as i32 }
        }
        Rx::Flood {
            sender_mode,
            sender_id,
        } => {
            flood(
                ctx,
                &cfg,
                &eth,
                Rule::Rx {
                    mode: sender_mode,
                    id: sender_id,
                },
            );
            // NO_SENDER is NO_ENDPOINT: no endpoint; nor is an ipvlan one.
            let sender = if sender_id == macvlan::PEER_SENDER {
                NO_ENDPOINT
            } else {
                sender_id
            };
            report(DIR, Verdict::Flood, &pkt(sender));
            TC_ACT_UNSPEC
        }
    }
}

/// Unicast (only) into an endpoint: straight into its namespace (the peer
/// of its host-side veth), or, for a nested one, out of its VM's tap.
#[inline(always)]
fn to_endpoint(ctx: &TcContext, ep: &Endpoint, pkt: &Pkt) -> i32 {
    if !bw::pass(ep.id, Way::In, pkt.len) {
        report(DIR, Verdict::DropRateLimit, pkt);
        stats::rx_dropped(ep.id);
        return TC_ACT_SHOT as i32;
    }
    if ep.has(EP_F_NESTED) {
        return nested_delivery(ctx, ep, pkt, Verdict::ToEndpoint);
    }
    // It leaves packet data where it is.
    let ret = crate::kernel::peer_into(skb::raw(ctx), ep.host_ifindex);
    // Compared as returned (a long): no narrowing on the hot path.
    if ret == TC_ACT_REDIRECT.into() {
        report(DIR, Verdict::ToEndpoint, pkt);
        stats::rx_unicast(ep.id, pkt.len as u64);
        TC_ACT_REDIRECT as i32
    } else {
        aya_log_ebpf::warn!(ctx, "redirect to endpoint {} failed", ep.id);
        report(DIR, Verdict::DropRedirect, pkt);
        stats::rx_dropped(ep.id);
        TC_ACT_SHOT as i32
    }
}

/// To a nested endpoint (a container in a VM): its tags pushed, out of the
/// VM's tap.
#[inline(always)]
fn nested_delivery(ctx: &TcContext, ep: &Endpoint, pkt: &Pkt, v: Verdict) -> i32 {
    // The push moves packet data: the header is copied before it.
    let eth: EthHdr = *pkt.eth;
    let pkt = &Pkt { eth: &eth, ..*pkt };
    match nested::deliver(ctx, ep) {
        Ok(ret) => {
            report(DIR, v, pkt);
            stats::rx(ep.id, pkt.len as u64, &eth);
            ret
        }
        Err(why) => {
            report(DIR, why, pkt);
            stats::rx_dropped(ep.id);
            TC_ACT_SHOT as i32
        }
    }
}
