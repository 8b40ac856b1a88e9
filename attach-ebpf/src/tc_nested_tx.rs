//! Nested endpoint transmit, in the VM (tcx ingress on the container's
//! host-side veth): what the container sends leaves by the VM's uplink
//! tagged with its VLAN, inside the uplink's 802.1ad S-tag with QinQ.

use attach_common::{DATAPATH_MARK, Direction::Tx as DIR, NestedEp, Verdict};
use aya_ebpf::{helpers::bpf_redirect, programs::TcContext};

use crate::{
    admit::{self, Sent, drop},
    events::report,
    nested, skb, stats,
};

pub fn run(ctx: &TcContext) -> i32 {
    match admit::sent::<NestedEp>(ctx) {
        Ok(s) => send(ctx, &s),
        Err(ret) => ret,
    }
}

/// Tagged, out of the VM's uplink.
#[inline(always)]
fn send(ctx: &TcContext, s: &Sent<NestedEp>) -> i32 {
    let n = s.port;
    let ep = n.ep;
    let len = s.len;
    let pkt = s.pkt(ep.id);
    stats::tx(ep.id, len as u64, &s.eth);
    let skb = skb::raw(ctx);
    if !nested::push(skb, false, n.vid) {
        return drop(&pkt, Verdict::DropRedirect);
    }
    if n.outer != 0 && !nested::push(skb, true, n.outer) {
        return drop(&pkt, Verdict::DropRedirect);
    }
    // Marked, so the uplink's own egress programs pass it unswitched.
    ctx.set_mark(DATAPATH_MARK);
    report(DIR, Verdict::ToParent, &pkt);
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(ep.parent_ifindex, 0) as i32 }
}
