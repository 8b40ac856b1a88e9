//! A VM's tap, host side (tcx ingress, first): frames a nested container
//! sends arrive tagged with its VLAN (inside the VM uplink's S-tag with
//! QinQ). Each (tap, S-tag, VLAN) is an endpoint of a parent's macvlan
//! switch: its tags come off (all of them, or the S-tag only with
//! `--keep-tag`) and the frame is switched as that endpoint sends it.
//! Untagged frames are the VM's own: passed on. A VLAN the tap has no
//! endpoint for is dropped.

use attach_common::{Direction::Tx as DIR, NEST_F_HOST, NEST_F_KEEP_TAG, Verdict};
use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    programs::TcContext,
};

use crate::{
    admit::admit,
    eth,
    events::{NO_ENDPOINT, Pkt, report},
    nested, skb, stats, xmit,
};

pub fn run(ctx: &TcContext) -> i32 {
    let skb = skb::raw(ctx);
    let ifindex = skb::ifindex(ctx);
    let Some(eth) = eth::read_tc(ctx) else {
        return TC_ACT_UNSPEC;
    };
    let (outer, inner) = nested::tags(ctx);
    if outer.tpid == 0 {
        stats::verdict(DIR, Verdict::NotOurs);
        return TC_ACT_UNSPEC;
    }
    let found = nested::key(ifindex, &outer, &inner).and_then(|k| nested::lookup(&k));
    let Some(n) = found.filter(|n| n.flags & NEST_F_HOST != 0) else {
        let pkt = Pkt {
            ifindex,
            endpoint: NO_ENDPOINT,
            len: ctx.len(),
            eth: &eth,
        };
        report(DIR, Verdict::DropVlanUnknown, &pkt);
        return TC_ACT_SHOT as i32;
    };
    let pops = u32::from(n.outer != 0) + u32::from(n.flags & NEST_F_KEEP_TAG == 0);
    if !nested::pop_n(skb, pops) {
        stats::verdict(DIR, Verdict::DropParse);
        stats::tx_dropped(n.ep.id);
        return TC_ACT_SHOT as i32;
    }
    match admit(ctx, ifindex, &n.ep) {
        Ok((eth, _)) => xmit::switch(ctx, ifindex, &n.ep, &eth),
        Err(ret) => ret,
    }
}
