//! Nested endpoint transmit, in the VM (tcx ingress on the container's
//! host-side veth): what the container sends leaves by the VM's uplink
//! tagged with its VLAN, inside the uplink's 802.1ad S-tag with QinQ.

use attach_common::{DATAPATH_MARK, Direction::Tx as DIR, NEST_F_HOST, Verdict};
use aya_ebpf::{
    EbpfContext,
    bindings::{__sk_buff, TC_ACT_UNSPEC},
    helpers::bpf_redirect,
    programs::TcContext,
};

use crate::{
    admit::{admit, drop},
    events::{Pkt, report},
    maps::NEST_PORTS,
    nested, stats,
};

pub fn run(ctx: &TcContext) -> i32 {
    let skb = ctx.as_ptr() as *mut __sk_buff;
    // SAFETY: the context is a valid __sk_buff.
    let ifindex = unsafe { (*skb).ifindex };
    // SAFETY: copied out at once.
    let port = unsafe { NEST_PORTS.get(&ifindex) }.copied();
    let Some(n) = port.filter(|n| n.flags & NEST_F_HOST == 0) else {
        stats::verdict(DIR, Verdict::NotOurs);
        return TC_ACT_UNSPEC;
    };
    let ep = n.ep;
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
