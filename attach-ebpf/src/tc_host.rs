//! Parent egress (tcx): the node's own frames. Native macvlan never lets the
//! node reach its endpoints (its frames leave by the wire); endpoints with
//! host access get them here instead.

use attach_common::{
    DATAPATH_MARK, Direction::Host as DIR, EP_F_HOST_ACCESS, EP_F_NESTED, Verdict,
};
use aya_ebpf::{bindings::TC_ACT_UNSPEC, helpers::bpf_redirect, programs::TcContext};

use crate::{
    bw::{self, Way},
    eth,
    events::{Pkt, report},
    flood::{Rule, flood},
    macvlan,
    maps::PARENTS,
    nested, skb, stats,
};

pub fn run(ctx: &TcContext) -> i32 {
    let (mark, ifindex) = skb::mark_ifindex(ctx);
    if mark == DATAPATH_MARK {
        // An endpoint's frame on its way out: already switched.
        ctx.set_mark(0);
        return TC_ACT_UNSPEC;
    }
    // SAFETY: copied out at once.
    let Some(cfg) = (unsafe { PARENTS.get(&ifindex) }).copied() else {
        stats::verdict(DIR, Verdict::NotOurs);
        return TC_ACT_UNSPEC;
    };
    let Some(eth) = eth::read_tc(ctx) else {
        return TC_ACT_UNSPEC;
    };
    if eth.is_multicast() {
        // The copy count is not branched on: that would make the verifier
        // track it precisely and walk every loop iteration separately.
        flood(ctx, &cfg, &eth, Rule::HostAccess);
        stats::verdict(DIR, Verdict::Flood);
        return TC_ACT_UNSPEC;
    }
    if let Some(ep) = macvlan::lookup(ifindex, &eth.dst)
        && ep.has(EP_F_HOST_ACCESS)
    {
        let len = ctx.len();
        let pkt = Pkt {
            ifindex,
            endpoint: ep.id,
            len,
            eth: &eth,
        };
        if !bw::pass(ep.id, Way::In, len) {
            report(DIR, Verdict::DropRateLimit, &pkt);
            stats::rx_dropped(ep.id);
            return aya_ebpf::bindings::TC_ACT_SHOT as i32;
        }
        if ep.has(EP_F_NESTED) {
            return match nested::deliver(ctx, &ep) {
                Ok(ret) => {
                    report(DIR, Verdict::ToEndpoint, &pkt);
                    stats::rx(ep.id, len as u64, &eth);
                    ret
                }
                Err(why) => {
                    report(DIR, why, &pkt);
                    stats::rx_dropped(ep.id);
                    aya_ebpf::bindings::TC_ACT_SHOT as i32
                }
            };
        }
        report(DIR, Verdict::ToEndpoint, &pkt);
        stats::rx(ep.id, len as u64, &eth);
        // SAFETY: plain helper call.
        return unsafe { bpf_redirect(ep.host_ifindex, 0) as i32 };
    }
    stats::verdict(DIR, Verdict::ToParent);
    TC_ACT_UNSPEC
}
