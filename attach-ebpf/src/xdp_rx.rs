//! Parent XDP (`xdp` datapath): unicast to an endpoint is redirected through
//! the devmap before an skb exists. Everything else passes to the tc program,
//! because a broadcast must reach the node's stack too and XDP cannot both
//! redirect and pass one frame.

use attach_common::{Direction::Rx as DIR, PARENT_F_PASSTHRU, Verdict};
use aya_ebpf::{bindings::xdp_action::XDP_PASS, programs::XdpContext};

use crate::{
    eth,
    events::{Pkt, report},
    macvlan,
    maps::{DEVS, PARENTS},
    stats,
};

pub fn run(ctx: &XdpContext) -> u32 {
    let Some(eth) = eth::read(ctx.data(), ctx.data_end()) else {
        return XDP_PASS;
    };
    if eth.is_multicast() {
        return XDP_PASS;
    }
    let ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: copied out at once.
    let Some(cfg) = (unsafe { PARENTS.get(&ifindex) }).copied() else {
        return XDP_PASS;
    };
    let target = if cfg.flags & PARENT_F_PASSTHRU != 0 {
        cfg.passthru
    } else {
        match macvlan::lookup(ifindex, &eth.dst) {
            Some(ep) => ep,
            None => return XDP_PASS,
        }
    };
    match DEVS.redirect(target.host_ifindex, XDP_PASS as u64) {
        Ok(action) => {
            let len = (ctx.data_end() - ctx.data()) as u32;
            let pkt = Pkt {
                ifindex,
                endpoint: target.id,
                len,
                eth: &eth,
            };
            report(DIR, Verdict::ToEndpoint, &pkt);
            stats::rx(target.id, len as u64, &eth);
            action
        }
        Err(action) => action,
    }
}
