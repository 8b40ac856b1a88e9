//! Native bridge ports with `--spoofchk on` (tc ingress on the host-side
//! veth): the source checks and the endpoint's transmit counters; the
//! kernel bridge (next) switches what passes.

use attach_common::{Direction::Tx, SwPort, Verdict};
use aya_ebpf::{bindings::TC_ACT_UNSPEC, programs::TcContext};

use crate::{admit, events::report, stats};

pub fn run(ctx: &TcContext) -> i32 {
    let s = match admit::sent::<SwPort>(ctx) {
        Ok(s) => s,
        Err(ret) => return ret,
    };
    stats::tx(s.port.id, s.len as u64, &s.eth);
    report(Tx, Verdict::ToParent, &s.pkt(s.port.id));
    TC_ACT_UNSPEC
}
