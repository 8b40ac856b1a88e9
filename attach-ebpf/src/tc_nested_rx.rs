//! The VM's uplink, in the VM (tcx ingress, first): frames tagged with a
//! nested container's VLAN (inside the uplink's S-tag with QinQ) lose their
//! tags and go into that container (`bpf_redirect_peer`). Untagged frames
//! and other VLANs are not ours: passed on untouched, uncounted.

use attach_common::{DATAPATH_MARK, Direction::Rx as DIR, NEST_F_HOST, Verdict};
use aya_ebpf::{
    bindings::{TC_ACT_REDIRECT, TC_ACT_SHOT, TC_ACT_UNSPEC},
    programs::TcContext,
};

use crate::{
    bw::{self, Way},
    eth,
    events::{Pkt, report},
    nested, skb, stats,
};

pub fn run(ctx: &TcContext) -> i32 {
    let skb = skb::raw(ctx);
    let (mark, ifindex) = skb::mark_ifindex(ctx);
    if mark == DATAPATH_MARK {
        return TC_ACT_UNSPEC;
    }
    let (outer, inner) = nested::tags(ctx);
    if outer.tpid == 0 {
        return TC_ACT_UNSPEC;
    }
    let found = nested::key(ifindex, &outer, &inner).and_then(|k| nested::lookup(&k));
    let Some(n) = found.filter(|n| n.flags & NEST_F_HOST == 0) else {
        return TC_ACT_UNSPEC;
    };
    let ep = n.ep;
    let pops = 1 + u32::from(n.outer != 0);
    let Some(eth) = (if nested::pop_n(skb, pops) {
        eth::read_tc(ctx)
    } else {
        None
    }) else {
        stats::verdict(DIR, Verdict::DropParse);
        stats::rx_dropped(ep.id);
        return TC_ACT_SHOT as i32;
    };
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
        return TC_ACT_SHOT as i32;
    }
    let ret = crate::kernel::peer_into(skb, ep.host_ifindex) as i32;
    if ret == TC_ACT_REDIRECT as i32 {
        report(DIR, Verdict::ToEndpoint, &pkt);
        stats::rx(ep.id, len as u64, &eth);
        ret
    } else {
        report(DIR, Verdict::DropRedirect, &pkt);
        stats::rx_dropped(ep.id);
        TC_ACT_SHOT as i32
    }
}
