//! Uplink ingress (tcx), router endpoints: packets from the wire the node
//! routes to a router endpoint go straight into the container (MACs and
//! TTL rewritten, `bpf_redirect_peer`); everything else is passed on
//! untouched and uncounted (the node's own traffic, other kinds'
//! programs after us). Attached after the other programs of the device.

use attach_common::{DATAPATH_MARK, Direction::Rx as DIR, Verdict};
use aya_ebpf::{
    bindings::{TC_ACT_REDIRECT, TC_ACT_SHOT, TC_ACT_UNSPEC},
    programs::TcContext,
};

use crate::{
    bw::{self, Way},
    eth,
    events::{NO_ENDPOINT, Pkt, report},
    proto::PACKET_HOST,
    router::{self, Fwd},
    skb, stats,
};

pub fn run(ctx: &TcContext) -> i32 {
    let (mark, ifindex, pkt_type) = skb::mark_ifindex_type(ctx);
    if mark == DATAPATH_MARK || pkt_type != PACKET_HOST {
        // Our own frames on their way to the node, or not the node's to
        // route (another host's, broadcast, multicast).
        return TC_ACT_UNSPEC;
    }
    let Some(eth) = eth::read_tc(ctx) else {
        return TC_ACT_UNSPEC;
    };
    let len = ctx.len();
    match router::forward(ctx, &eth, ifindex, false) {
        Fwd::Endpoint(id) => {
            let pkt = Pkt {
                ifindex,
                endpoint: id,
                len,
                eth: &eth,
            };
            if !bw::pass(id, Way::In, len) {
                report(DIR, Verdict::DropRateLimit, &pkt);
                stats::rx_dropped(id);
                return TC_ACT_SHOT as i32;
            }
            report(DIR, Verdict::ToEndpoint, &pkt);
            stats::rx(id, len as u64, &eth);
            TC_ACT_REDIRECT as i32
        }
        Fwd::Routed | Fwd::Stack => TC_ACT_UNSPEC,
        Fwd::Failed => {
            let pkt = Pkt {
                ifindex,
                endpoint: NO_ENDPOINT,
                len,
                eth: &eth,
            };
            report(DIR, Verdict::DropRedirect, &pkt);
            TC_ACT_SHOT as i32
        }
    }
}
