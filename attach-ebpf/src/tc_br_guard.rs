//! Native bridge ports with `--spoofchk on` (tc ingress on the host-side
//! veth): the source checks and the endpoint's transmit counters; the
//! kernel bridge (next) switches what passes.

use attach_common::{Direction::Tx, Verdict};
use aya_ebpf::{
    EbpfContext,
    bindings::{__sk_buff, TC_ACT_SHOT, TC_ACT_UNSPEC},
    programs::TcContext,
};

use crate::{
    admit::drop,
    eth,
    events::{Pkt, report},
    maps::SW_PORTS,
    stats,
    tc_switch::source_check,
};

pub fn run(ctx: &TcContext) -> i32 {
    let skb = ctx.as_ptr() as *mut __sk_buff;
    // SAFETY: the context is a valid __sk_buff.
    let ifindex = unsafe { (*skb).ifindex };
    // SAFETY: copied out at once.
    let Some(port) = (unsafe { SW_PORTS.get(&ifindex) }).copied() else {
        stats::verdict(Tx, Verdict::NotOurs);
        return TC_ACT_UNSPEC;
    };
    let Some(eth) = eth::read_tc(ctx) else {
        stats::verdict(Tx, Verdict::DropParse);
        stats::tx_dropped(port.id);
        return TC_ACT_SHOT as i32;
    };
    let len = ctx.len();
    let pkt = Pkt {
        ifindex,
        endpoint: port.id,
        len,
        eth: &eth,
    };
    if let Err(why) = source_check(ctx, &port, &eth) {
        return drop(&pkt, why);
    }
    stats::tx(port.id, len as u64, &eth);
    report(Tx, Verdict::ToParent, &pkt);
    TC_ACT_UNSPEC
}
