//! Parent ingress (tcx): frames from the wire, switched by destination MAC.

use attach_common::{DATAPATH_MARK, Direction::Rx as DIR, Verdict};
use aya_ebpf::{
    EbpfContext,
    bindings::{__sk_buff, TC_ACT_REDIRECT, TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::{bpf_redirect, bpf_redirect_peer},
    programs::TcContext,
};

use crate::{
    eth,
    events::{NO_ENDPOINT, Pkt, report},
    flood::{Rule, flood},
    macvlan::{self, Rx},
    maps::PARENTS,
    stats,
};

pub fn run(ctx: &TcContext) -> i32 {
    let skb = ctx.as_ptr() as *mut __sk_buff;
    // SAFETY: the context is a valid __sk_buff.
    let (mark, ifindex) = unsafe { ((*skb).mark, (*skb).ifindex) };
    if mark == DATAPATH_MARK {
        // A container's frame we handed to the node's stack ourselves.
        ctx.set_mark(0);
        return TC_ACT_UNSPEC;
    }
    // SAFETY: copied out at once.
    let Some(cfg) = (unsafe { PARENTS.get(&ifindex) }).copied() else {
        stats::verdict(DIR, Verdict::NotOurs);
        return TC_ACT_UNSPEC;
    };
    let Some(eth) = eth::read_tc(ctx) else {
        stats::verdict(DIR, Verdict::Unparsed);
        return TC_ACT_UNSPEC;
    };
    let len = ctx.len();
    let pkt = |endpoint| Pkt {
        ifindex,
        endpoint,
        len,
        eth: &eth,
    };
    match macvlan::rx_decide(ifindex, &cfg, &eth) {
        Rx::Endpoint(ep) => {
            // SAFETY: plain helper call.
            let ret = unsafe { bpf_redirect_peer(ep.host_ifindex, 0) } as i32;
            if ret == TC_ACT_REDIRECT as i32 {
                report(DIR, Verdict::ToEndpoint, &pkt(ep.id));
                stats::rx(ep.id, len as u64, &eth);
                ret
            } else {
                aya_log_ebpf::warn!(ctx, "redirect to endpoint {} failed", ep.id);
                report(DIR, Verdict::DropRedirect, &pkt(ep.id));
                stats::rx_dropped(ep.id);
                TC_ACT_SHOT as i32
            }
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
        Rx::Flood { sender } => {
            flood(ctx, &cfg, &eth, Rule::Rx { sender });
            report(
                DIR,
                Verdict::Flood,
                &pkt(sender.map_or(NO_ENDPOINT, |s| s.id)),
            );
            TC_ACT_UNSPEC
        }
    }
}
