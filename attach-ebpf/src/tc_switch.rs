//! The eBPF switch (tcx ingress on every port: container host-side veths
//! and the uplink). See `switch.rs` for the rules.
//!
//! From a container port (direction `tx`): source checks, tagged frames
//! refused on access ports, the source learned, then a known unicast
//! destination gets it (`bpf_redirect_peer` into its container, or out of
//! the uplink tagged with the port's VLAN) and anything else is flooded to
//! the switch's other ports of the VLAN and sent out of the uplink.
//!
//! From the uplink (direction `rx`), a trunk: untagged frames belong to the
//! ports without a VLAN, frames tagged N to the ports of VLAN N (the tag is
//! removed towards containers). Frames to the uplink's own MAC are the
//! node's; whatever is not delivered as a known unicast goes on to the
//! node's stack (with its tag) after the flood, as a frame on a macvlan
//! parent does.

use attach_common::{
    DATAPATH_MARK,
    Direction::{Rx, Tx},
    Endpoint, SW_F_ISOLATED, SW_F_UPLINK, SwPort, Verdict,
};
use aya_ebpf::{
    bindings::{__sk_buff, TC_ACT_REDIRECT, TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::{bpf_redirect, bpf_skb_vlan_pop, bpf_skb_vlan_push},
    programs::TcContext,
};

use crate::{
    bw::{self, Way},
    admit::{Port, drop},
    eth::{self, EthHdr, mac_eq},
    events::{NO_ENDPOINT, Pkt, report},
    maps::{SW_PORTS, SWITCHES},
    proto::{ETH_P_8021AD, ETH_P_8021Q},
    skb, spoof, stats, swpeers,
    switch::{self, Source, flood, learn, lookup, may_reach},
};

pub fn run(ctx: &TcContext) -> i32 {
    let skb = skb::raw(ctx);
    let ifindex = skb::ifindex(ctx);
    // SAFETY: copied out at once.
    let Some(port) = (unsafe { SW_PORTS.get(&ifindex) }).copied() else {
        stats::verdict(Tx, Verdict::NotOurs);
        return TC_ACT_UNSPEC;
    };
    if port.has(SW_F_UPLINK) {
        from_uplink(ctx, skb, &port)
    } else {
        from_port(ctx, skb, &port)
    }
}

/// Whether the frame carries a VLAN tag (in the skb's metadata, where the
/// stack puts it on receive, or still in the packet).
#[inline(always)]
fn tagged(skb: *mut __sk_buff, eth: &EthHdr) -> bool {
    // SAFETY: the context is a valid __sk_buff.
    let meta = unsafe { (*skb).vlan_present } != 0;
    meta || eth.proto == ETH_P_8021Q.to_be() || eth.proto == ETH_P_8021AD.to_be()
}

/// What a container sends.
#[inline(always)]
fn from_port(ctx: &TcContext, skb: *mut __sk_buff, port: &SwPort) -> i32 {
    // Admitted as `admit::admit` does (the port's `Port::guard`), but with
    // the event's frame made before the checks: the verifier processes
    // 14.5k instructions of this program so, 18k through `admit`.
    let Some(eth) = eth::read_tc(ctx) else {
        stats::verdict(Tx, Verdict::DropParse);
        stats::tx_dropped(port.id);
        return TC_ACT_SHOT as i32;
    };
    let len = ctx.len();
    let pkt = Pkt {
        ifindex: port.ifindex,
        endpoint: port.id,
        len,
        eth: &eth,
    };
    if let Err(why) = spoof::check(ctx, &port.guard(), &eth) {
        return drop(&pkt, why);
    }
    if !bw::pass(port.id, Way::Out, len) {
        return drop(&pkt, Verdict::DropRateLimit);
    }
    if port.vlan != 0 && tagged(skb, &eth) {
        // An access port carries its VLAN untagged only.
        return drop(&pkt, Verdict::DropVlan);
    }
    // SAFETY: copied out at once.
    let Some(sw) = (unsafe { SWITCHES.get(&port.switch_id) }).copied() else {
        // The engine keeps a port's switch in the table: this is drift.
        return drop(&pkt, Verdict::DropRedirect);
    };
    let now = switch::now();
    learn(port.switch_id, port.vlan, &eth.src, port.ifindex, now);
    let isolated = port.has(SW_F_ISOLATED);
    // Where a known unicast goes, as a port defined on every path: an
    // Option's unset payload becomes stack one path leaves unwritten, and
    // the verifier before 5.12 refuses any read of it.
    let found = if eth.is_multicast() {
        None
    } else {
        lookup(&sw, port.switch_id, port.vlan, &eth.dst, now)
    };
    let known = found.is_some();
    let dst = found.unwrap_or_default();
    if known {
        // Policy first: a refused frame is not counted as sent.
        if dst.ifindex == port.ifindex {
            return drop(&pkt, Verdict::DropSamePort);
        }
        if !dst.has(SW_F_UPLINK) && !may_reach(isolated, &dst) {
            return drop(&pkt, Verdict::DropPrivate);
        }
    }
    // The uplink is also the parent of macvlan endpoints: an untagged port
    // reaches its bridge ports locally (`swpeers.rs`), and what leaves by
    // the uplink is marked so the parent's egress sends it on unswitched.
    // Looked up only for frames no container port of the switch takes.
    let shared = (!known || dst.has(SW_F_UPLINK)) && sw.uplink != 0 && swpeers::shares(sw.uplink);
    let local = shared && port.vlan == 0;
    if local
        && !eth.is_multicast()
        && let Some(ep) = swpeers::bridge_port_target(sw.uplink, &eth)
    {
        stats::tx(port.id, len as u64, &eth);
        return to_bridge_port(&pkt, &ep);
    }
    stats::tx(port.id, len as u64, &eth);
    if known {
        if dst.has(SW_F_UPLINK) {
            return to_uplink(ctx, dst.ifindex, port.vlan, &pkt, shared);
        }
        if !bw::pass(dst.id, Way::In, len) {
            stats::rx_dropped(dst.id);
            return drop(&pkt, Verdict::DropRateLimit);
        }
        let ret = crate::kernel::redirect_into(dst.ifindex);
        if ret != TC_ACT_REDIRECT as i32 {
            return drop(&pkt, Verdict::DropRedirect);
        }
        report(Tx, Verdict::ToEndpoint, &pkt);
        stats::rx(dst.id, len as u64, &eth);
        return ret;
    }
    // Broadcast, multicast, unknown unicast: every other port of the VLAN.
    let from = Source {
        ifindex: port.ifindex,
        vlan: port.vlan,
        isolated,
        uplink: false,
    };
    let mut copies = flood(ctx, port.switch_id, sw.nports, &from, &eth);
    // Unknown unicast is not: no endpoint takes another's MAC.
    if local && eth.is_multicast() {
        copies += swpeers::flood_to_bridge_ports(ctx, sw.uplink, &eth);
    }
    stats::flood_copies(port.id, copies);
    report(Tx, Verdict::Flood, &pkt);
    if sw.uplink != 0 {
        return to_uplink(ctx, sw.uplink, port.vlan, &pkt, shared);
    }
    // Every copy is made: the frame itself goes nowhere (the host-side veth
    // is a wire into the switch, not an interface of the node's).
    TC_ACT_SHOT as i32
}

/// Into a bridge-mode macvlan endpoint of the uplink's parent, within its
/// rate limit.
#[inline(always)]
fn to_bridge_port(pkt: &Pkt, ep: &Endpoint) -> i32 {
    if !bw::pass(ep.id, Way::In, pkt.len) {
        stats::rx_dropped(ep.id);
        return drop(pkt, Verdict::DropRateLimit);
    }
    let ret = crate::kernel::redirect_into(ep.host_ifindex);
    if ret != TC_ACT_REDIRECT as i32 {
        return drop(pkt, Verdict::DropRedirect);
    }
    report(Tx, Verdict::ToEndpoint, pkt);
    stats::rx(ep.id, pkt.len as u64, pkt.eth);
    ret
}

/// Out of the uplink, tagged with `vlan` unless it is 0; `marked` when the
/// uplink is a macvlan parent, whose egress program then passes it on
/// unswitched (the switch already delivered what was local).
#[inline(always)]
fn to_uplink(ctx: &TcContext, uplink: u32, vlan: u16, pkt: &Pkt, marked: bool) -> i32 {
    let skb = skb::raw(ctx);
    if marked {
        ctx.set_mark(DATAPATH_MARK);
    }
    // SAFETY: plain helper call on the program's context.
    if vlan != 0 && unsafe { bpf_skb_vlan_push(skb, ETH_P_8021Q.to_be(), vlan) } != 0 {
        return drop(pkt, Verdict::DropRedirect);
    }
    report(Tx, Verdict::ToParent, pkt);
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(uplink, 0) as i32 }
}

/// What arrives on the uplink from the wire.
#[inline(always)]
fn from_uplink(ctx: &TcContext, skb: *mut __sk_buff, up: &SwPort) -> i32 {
    if skb::mark_ifindex(ctx).0 == DATAPATH_MARK {
        // A macvlan endpoint's frame handed to the node: not from the wire
        // (the parent's program, before this one, left the mark to us).
        ctx.set_mark(0);
        return TC_ACT_UNSPEC;
    }
    let Some(eth) = eth::read_tc(ctx) else {
        stats::verdict(Rx, Verdict::Unparsed);
        return TC_ACT_UNSPEC;
    };
    let len = ctx.len();
    let pkt = |endpoint| Pkt {
        ifindex: up.ifindex,
        endpoint,
        len,
        eth: &eth,
    };
    // The node's own traffic on its device.
    if !eth.is_multicast() && mac_eq(&eth.dst, &up.mac) {
        report(Rx, Verdict::ToHost, &pkt(NO_ENDPOINT));
        return TC_ACT_UNSPEC;
    }
    // SAFETY: copied out at once.
    let Some(sw) = (unsafe { SWITCHES.get(&up.switch_id) }).copied() else {
        stats::verdict(Rx, Verdict::NotOurs);
        return TC_ACT_UNSPEC;
    };
    // The VLAN: the tag in the skb's metadata, or in the packet (frames
    // that did not come through the stack's receive path).
    // SAFETY: the context is a valid __sk_buff.
    let (present, meta_proto, meta_tci) =
        unsafe { ((*skb).vlan_present, (*skb).vlan_proto, (*skb).vlan_tci) };
    let (tagged, tci) = if present != 0 {
        if meta_proto != u32::from(ETH_P_8021Q.to_be()) {
            // 802.1ad: not a VLAN this trunk carries.
            report(Rx, Verdict::NotOurs, &pkt(NO_ENDPOINT));
            return TC_ACT_UNSPEC;
        }
        (true, meta_tci as u16)
    } else if eth.proto == ETH_P_8021Q.to_be() {
        let Ok(tci) = ctx.load::<u16>(eth::ETH_HLEN) else {
            stats::verdict(Rx, Verdict::Unparsed);
            return TC_ACT_UNSPEC;
        };
        (true, u16::from_be(tci))
    } else if eth.proto == ETH_P_8021AD.to_be() {
        report(Rx, Verdict::NotOurs, &pkt(NO_ENDPOINT));
        return TC_ACT_UNSPEC;
    } else {
        (false, 0)
    };
    let vlan = tci & 0x0fff;
    if !tagged && swpeers::parents_own(up.ifindex, &eth) {
        // The parent's endpoints deal with it (`swpeers.rs`).
        report(Rx, Verdict::NotOurs, &pkt(NO_ENDPOINT));
        return TC_ACT_UNSPEC;
    }
    let now = switch::now();
    learn(up.switch_id, vlan, &eth.src, up.ifindex, now);

    if !eth.is_multicast()
        && let Some(dst) = lookup(&sw, up.switch_id, vlan, &eth.dst, now)
    {
        if dst.has(SW_F_UPLINK) {
            // A host on the wire: not the switch's to deliver.
            report(Rx, Verdict::ToHost, &pkt(NO_ENDPOINT));
            return TC_ACT_UNSPEC;
        }
        if !bw::pass(dst.id, Way::In, len) {
            report(Rx, Verdict::DropRateLimit, &pkt(dst.id));
            stats::rx_dropped(dst.id);
            return TC_ACT_SHOT as i32;
        }
        // SAFETY: plain helper call on the program's context.
        if tagged && unsafe { bpf_skb_vlan_pop(skb) } != 0 {
            report(Rx, Verdict::DropRedirect, &pkt(dst.id));
            stats::rx_dropped(dst.id);
            return TC_ACT_SHOT as i32;
        }
        let ret = crate::kernel::peer_into(skb, dst.ifindex) as i32;
        if ret != TC_ACT_REDIRECT as i32 {
            report(Rx, Verdict::DropRedirect, &pkt(dst.id));
            stats::rx_dropped(dst.id);
            return TC_ACT_SHOT as i32;
        }
        report(Rx, Verdict::ToEndpoint, &pkt(dst.id));
        stats::rx(dst.id, len as u64, &eth);
        return ret;
    }
    // Untagged copies to the VLAN's ports; the node gets the frame as it
    // came (tag put back).
    // SAFETY: plain helper call on the program's context.
    if tagged && unsafe { bpf_skb_vlan_pop(skb) } != 0 {
        stats::verdict(Rx, Verdict::Unparsed);
        return TC_ACT_UNSPEC;
    }
    let from = Source {
        ifindex: up.ifindex,
        vlan,
        isolated: false,
        uplink: true,
    };
    flood(ctx, up.switch_id, sw.nports, &from, &eth);
    report(Rx, Verdict::Flood, &pkt(NO_ENDPOINT));
    if tagged {
        // SAFETY: plain helper call on the program's context.
        let _ = unsafe { bpf_skb_vlan_push(skb, ETH_P_8021Q.to_be(), tci) };
    }
    TC_ACT_UNSPEC
}
