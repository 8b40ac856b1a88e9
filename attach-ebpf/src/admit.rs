//! What every endpoint's transmit hook does first: read the frame the
//! container sent and apply the endpoint's source checks. Whatever fails
//! is dropped here, reported and counted on the endpoint.

use attach_common::{Direction::Tx as DIR, Endpoint, Verdict};
use aya_ebpf::{bindings::TC_ACT_SHOT, programs::TcContext};

use crate::{
    eth::{self, EthHdr},
    events::{Pkt, report},
    spoof, stats,
};

/// The header of what `ep` sent on `ifindex`, if the frame passes its
/// source checks; else the program's return for the dropped frame.
#[inline(always)]
pub fn admit(ctx: &TcContext, ifindex: u32, ep: &Endpoint) -> Result<EthHdr, i32> {
    let Some(eth) = eth::read_tc(ctx) else {
        stats::verdict(DIR, Verdict::DropParse);
        stats::tx_dropped(ep.id);
        return Err(TC_ACT_SHOT as i32);
    };
    let guard = spoof::Guard {
        mac: ep.mac,
        owner: ep.ip_owner(),
        flags: ep.flags,
    };
    if let Err(why) = spoof::check(ctx, &guard, &eth) {
        let pkt = Pkt {
            ifindex,
            endpoint: ep.id,
            len: ctx.len(),
            eth: &eth,
        };
        return Err(drop(&pkt, why));
    }
    Ok(eth)
}

/// Drops what an endpoint sent: reported, and counted on the endpoint.
#[inline(always)]
pub fn drop(pkt: &Pkt, why: Verdict) -> i32 {
    report(DIR, why, pkt);
    stats::tx_dropped(pkt.endpoint);
    TC_ACT_SHOT as i32
}
