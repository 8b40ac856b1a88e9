//! Macvlan transmit: what a macvlan endpoint sends, once admitted, is
//! switched by its mode as `macvlan_queue_xmit` does (local delivery
//! between bridge ports, flooding, host access, else out of the parent),
//! within the parent's MTU. Shared by the veth endpoints (`attach_tx`)
//! and the host side of nested endpoints (the VM's tap, `attach_nest_tap`,
//! once their tags are off).

use attach_common::{
    DATAPATH_MARK, Direction::Tx as DIR, EP_F_HOST_ACCESS, EP_F_NESTED, Endpoint, MODE_BRIDGE,
    SwPort, Verdict,
};
use aya_ebpf::{
    bindings::{BPF_F_INGRESS, TC_ACT_REDIRECT},
    helpers::bpf_redirect,
    programs::TcContext,
};

use crate::{
    admit::drop,
    bw::{self, Way},
    eth::{ETH_HLEN, EthHdr, mac_eq},
    events::{Pkt, report},
    flood::{Rule, flood},
    macvlan,
    maps::PARENTS,
    nested, peers,
    proto::{ETH_P_8021AD, ETH_P_8021Q},
    skb, stats, swpeers,
};

/// What endpoint `ep` sends on `ifindex`, admitted, by its mode: local
/// delivery, flooding, host access, else out of the parent.
#[inline(always)]
pub fn switch(ctx: &TcContext, ifindex: u32, ep: &Endpoint, eth: &EthHdr) -> i32 {
    let ep = *ep;
    let eth = *eth;
    let skb = skb::raw(ctx);
    let len = ctx.len();
    let pkt = Pkt {
        ifindex,
        endpoint: ep.id,
        len,
        eth: &eth,
    };
    // SAFETY: copied out at once.
    let Some(cfg) = (unsafe { PARENTS.get(&ep.parent_ifindex) }).copied() else {
        // The engine keeps a port's parent in the table: this is drift.
        aya_log_ebpf::warn!(
            ctx,
            "endpoint {} sends on parent {}, which the datapath does not know",
            ep.id,
            ep.parent_ifindex
        );
        return drop(&pkt, Verdict::DropRedirect);
    };
    // A GSO packet is cut to size on its way out; anything else larger than
    // the parent's MTU (plus its Ethernet and VLAN headers) cannot leave.
    // SAFETY: the context is a valid __sk_buff.
    let gso = unsafe { (*skb).gso_size } != 0;
    let tagged = eth.proto == ETH_P_8021Q.to_be() || eth.proto == ETH_P_8021AD.to_be();
    let l2 = ETH_HLEN as u32 + if tagged { 4 } else { 0 };
    if !gso && cfg.mtu != 0 && len > cfg.mtu + l2 {
        return drop(&pkt, Verdict::DropMtu);
    }
    stats::tx(ep.id, len as u64, &eth);
    let host_access = ep.has(EP_F_HOST_ACCESS);

    if eth.is_multicast() {
        // Only bridge ports flood locally; the others' broadcasts meet their
        // peers, if at all, when the switch reflects them.
        if ep.mode == MODE_BRIDGE {
            let copies = flood(ctx, &cfg, &eth, Rule::Tx { sender: ep })
                + peers::flood_to_ipvlan(ctx, &ep, &eth)
                + swpeers::flood_to_ports(ctx, &cfg, &ep, &eth);
            stats::flood_copies(ep.id, copies);
        }
        // Marked, so the parent's ingress passes it to the node unswitched.
        ctx.set_mark(DATAPATH_MARK);
        if host_access
            && ctx
                .clone_redirect(ep.parent_ifindex, BPF_F_INGRESS as u64)
                .is_ok()
        {
            stats::verdict(DIR, Verdict::ToHost);
        }
    } else if let Some(dest) = peers::ipvlan_target(ctx, &ep, &cfg, &eth) {
        // The shared MAC of an ipvlan port on this parent: its endpoint.
        return deliver_local(ctx, &pkt, &dest);
    } else if host_access && mac_eq(&eth.dst, &cfg.mac) {
        ctx.set_mark(DATAPATH_MARK);
        report(DIR, Verdict::ToHost, &pkt);
        // SAFETY: plain helper call.
        return unsafe { bpf_redirect(ep.parent_ifindex, BPF_F_INGRESS as u64) as i32 };
    } else if let Some(dest) = macvlan::tx_local_target(&ep, &eth) {
        return deliver_local(ctx, &pkt, &dest);
    } else if let Some(port) = swpeers::port_target(&cfg, &ep, &eth) {
        // A port of the switch whose uplink the parent is.
        return deliver_port(&pkt, &port);
    }
    // Marked, so the parent's egress program sends it on unswitched.
    ctx.set_mark(DATAPATH_MARK);
    report(DIR, Verdict::ToParent, &pkt);
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(ep.parent_ifindex, 0) as i32 }
}

/// Local delivery to an untagged port of the switch whose uplink the parent
/// is (`swpeers.rs`), within its rate limit.
#[inline(always)]
fn deliver_port(pkt: &Pkt, port: &SwPort) -> i32 {
    if !bw::pass(port.id, Way::In, pkt.len) {
        stats::rx_dropped(port.id);
        return drop(pkt, Verdict::DropRateLimit);
    }
    redirect_counted(pkt, port.id, port.ifindex)
}

/// Into the container behind host-side veth `ifindex`, counted as received
/// by endpoint (or port) `id`.
#[inline(always)]
fn redirect_counted(pkt: &Pkt, id: u32, ifindex: u32) -> i32 {
    let ret = crate::kernel::redirect_into(ifindex);
    if ret == TC_ACT_REDIRECT as i32 {
        report(DIR, Verdict::ToEndpoint, pkt);
        stats::rx(id, pkt.len as u64, pkt.eth);
        return ret;
    }
    drop(pkt, Verdict::DropRedirect)
}

/// Local delivery to `dest` (another endpoint of the parent), within its
/// rate limit: into its namespace, or out of its VM's tap.
#[inline(always)]
fn deliver_local(ctx: &TcContext, pkt: &Pkt, dest: &Endpoint) -> i32 {
    if !bw::pass(dest.id, Way::In, pkt.len) {
        stats::rx_dropped(dest.id);
        return drop(pkt, Verdict::DropRateLimit);
    }
    if dest.has(EP_F_NESTED) {
        return match nested::deliver(ctx, dest) {
            Ok(ret) => {
                report(DIR, Verdict::ToEndpoint, pkt);
                stats::rx(dest.id, pkt.len as u64, pkt.eth);
                ret
            }
            Err(why) => {
                stats::rx_dropped(dest.id);
                drop(pkt, why)
            }
        };
    }
    redirect_counted(pkt, dest.id, dest.host_ifindex)
}
