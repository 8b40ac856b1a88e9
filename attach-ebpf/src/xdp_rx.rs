//! Parent XDP (`xdp` datapath): unicast to an endpoint is redirected through
//! the devmap before an skb exists. Everything else passes to the tc program,
//! because a broadcast must reach the node's stack too and XDP cannot both
//! redirect and pass one frame.
//!
//! The hot path is one hash lookup: an endpoint key carries its parent's
//! ifindex, so a hit means this is a managed parent and the frame is that
//! endpoint's. Only a miss consults the parent's configuration (passthru
//! takes every unicast; not a parent of ours: pass).

use attach_common::{Direction::Rx as DIR, PARENT_F_PASSTHRU, Verdict};
use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_REDIRECT},
    helpers::bpf_redirect_map,
    programs::XdpContext,
};

use crate::{
    bw::{self, Way},
    eth,
    events::{Pkt, report},
    macvlan,
    maps::{DEVS, PARENTS},
    stats,
};

pub fn run(ctx: &XdpContext) -> u32 {
    // Read in place: the hot path loads only the destination.
    let Some(eth) = eth::header(ctx.data(), ctx.data_end()) else {
        return XDP_PASS;
    };
    if eth.is_multicast() {
        return XDP_PASS;
    }
    let ifindex = ctx.ingress_ifindex() as u32;
    let target = match macvlan::lookup(ifindex, &eth.dst) {
        Some(ep) => ep,
        None => {
            // SAFETY: copied out at once.
            match unsafe { PARENTS.get(&ifindex) } {
                Some(cfg) if cfg.flags & PARENT_F_PASSTHRU != 0 => cfg.passthru,
                _ => return XDP_PASS,
            }
        }
    };
    // The helper's own return value: XDP_REDIRECT, or the fallback action
    // (XDP_PASS) when the devmap has no entry.
    // SAFETY: the map pointer is the devmap's definition.
    let action = unsafe {
        bpf_redirect_map(
            core::ptr::from_ref(&DEVS).cast_mut().cast(),
            u64::from(target.host_ifindex),
            u64::from(XDP_PASS),
        )
    };
    // Compared as returned (a long): no narrowing on the hot path.
    if action != XDP_REDIRECT.into() {
        return XDP_PASS;
    }
    let len = (ctx.data_end() - ctx.data()) as u64;
    let pkt = Pkt {
        ifindex,
        endpoint: target.id,
        len: len as u32,
        eth,
    };
    if !bw::pass(target.id, Way::In, len as u32) {
        report(DIR, Verdict::DropRateLimit, &pkt);
        stats::rx_dropped(target.id);
        return XDP_DROP;
    }
    report(DIR, Verdict::ToEndpoint, &pkt);
    stats::rx_unicast(target.id, len);
    XDP_REDIRECT
}
