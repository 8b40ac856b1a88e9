//! A switch's uplink that is also the parent of macvlan endpoints
//! (`swpeers.rs`): the switch's untagged ports and the parent's bridge-mode
//! endpoints deliver to each other locally; private endpoints and an
//! unmarked parent leave it to the wire; what the wire reflects, or an
//! endpoint hands to the node, is not switched a second time. The build
//! for kernels without `bpf_loop` ignores the mark: the wire only.

use attach::datapath::{PROG_RX, PROG_SW, compat_build};
use attach_common::{DATAPATH_MARK, Direction::Rx as RX, MODE_BRIDGE, MODE_PRIVATE, Verdict};

use super::{bcast, teach, udp};
use crate::common::{bridge::*, frames::*, lab::*, outcome::*, *};

/// Port 0 (A, untagged), port 1 (E, VLAN 10); on the uplink a bridge-mode
/// endpoint (B, index 2) and a private one (C, index 3).
fn lab(marked: bool) -> Lab {
    let s = SwitchScenario::new()
        .port(A, 0, 0)
        .port(E, 10, 0)
        .macvlan(B, MODE_BRIDGE)
        .macvlan(C, MODE_PRIVATE);
    if marked { s } else { s.unmarked() }.build()
}

/// The kinds meet through the wire only: a unicast between them leaves by
/// the parent, a broadcast reaches no one of the other kind, and a frame
/// handed to the node loses its mark in the parent's program.
fn wire_only(mut lab: Lab) {
    teach(&mut lab, 0, A, 0);
    lab.tx(2, &udp(A, B))
        .mark(DATAPATH_MARK)
        .only(&[(2, tx_uc(len(&udp(A, B))))]);
    let before = lab.deliveries();
    lab.tx(2, &bcast(B));
    lab.sw(0, &bcast(A));
    assert_eq!(lab.delivered_since(&before), [0, 0, 0, 0]);
    let up = lab.uplink_ifindex();
    lab.tc(PROG_RX, up, DATAPATH_MARK, &bcast(B))
        .ret(TC_ACT_UNSPEC)
        .mark(0);
}

/// From an untagged port: unicast into the bridge-mode endpoint, not the
/// private one (the wire, marked for the parent's egress); a broadcast is
/// cloned to the bridge-mode endpoint too, not to the private one nor to
/// the VLAN port.
#[test]
fn sw_port_reaches_the_uplinks_bridge_mode_endpoints() {
    in_netns(|| {
        let mut lab = lab(true);
        if compat_build() {
            return wire_only(lab);
        }
        let f = udp(B, A);
        let n = len(&f);
        lab.sw(0, &f)
            .ret(TC_ACT_REDIRECT)
            .only(&[(0, tx_uc(n)), (2, rx_uc(n))]);
        lab.sw(0, &udp(C, A))
            .ret(TC_ACT_REDIRECT)
            .mark(DATAPATH_MARK)
            .only(&[(0, tx_uc(len(&udp(C, A))))]);
        let before = lab.deliveries();
        lab.sw(0, &bcast(A)).ret(TC_ACT_REDIRECT);
        assert_eq!(lab.delivered_since(&before), [0, 0, 1, 0]);
        // From the VLAN port: its own LAN only.
        lab.sw(1, &udp(B, E)).only(&[(1, tx_uc(len(&udp(B, E))))]);
        let before = lab.deliveries();
        lab.sw(1, &bcast(E));
        assert_eq!(lab.delivered_since(&before), [0, 0, 0, 0]);
    });
}

/// From the bridge-mode endpoint: unicast into the untagged port the
/// switch learned the MAC on, a broadcast cloned to it; the private
/// endpoint's go out of the parent.
#[test]
fn bridge_mode_endpoint_reaches_the_untagged_ports() {
    in_netns(|| {
        let mut lab = lab(true);
        if compat_build() {
            return wire_only(lab);
        }
        teach(&mut lab, 0, A, 0);
        let f = udp(A, B);
        let n = len(&f);
        lab.tx(2, &f)
            .ret(TC_ACT_REDIRECT)
            .only(&[(2, tx_uc(n)), (0, rx_uc(n))]);
        lab.tx(3, &udp(A, C))
            .ret(TC_ACT_REDIRECT)
            .mark(DATAPATH_MARK)
            .only(&[(3, tx_uc(len(&udp(A, C))))]);
        let before = lab.deliveries();
        lab.tx(2, &bcast(B));
        assert_eq!(lab.delivered_since(&before), [1, 0, 0, 0]);
    });
}

/// Without `PARENT_F_SWITCH` on the parent, the kinds meet through the
/// wire only.
#[test]
fn an_unmarked_parent_leaves_them_to_the_wire() {
    in_netns(|| wire_only(lab(false)));
}

/// From the wire: a broadcast from an untagged port's MAC is not cloned to
/// the endpoints again, one from a bridge-mode endpoint's not to the ports;
/// one from elsewhere reaches both. A frame an endpoint handed to the node
/// (marked) keeps its mark through the parent's program and loses it in
/// the switch's, which passes it on untouched.
#[test]
fn reflections_and_the_nodes_copies_are_not_switched_again() {
    in_netns(|| {
        let mut lab = lab(true);
        if compat_build() {
            return wire_only(lab);
        }
        teach(&mut lab, 0, A, 0);
        let up = lab.uplink_ifindex();
        let before = lab.deliveries();
        lab.rx(&bcast(A)).ret(TC_ACT_UNSPEC);
        lab.sw_uplink(&bcast(B)).ret(TC_ACT_UNSPEC);
        assert_eq!(lab.delivered_since(&before), [0, 0, 0, 0]);
        let before = lab.deliveries();
        lab.rx(&bcast(D)).ret(TC_ACT_UNSPEC);
        lab.sw_uplink(&bcast(D)).ret(TC_ACT_UNSPEC);
        assert_eq!(lab.delivered_since(&before), [1, 0, 1, 1]);
        lab.tc(PROG_RX, up, DATAPATH_MARK, &bcast(B))
            .ret(TC_ACT_UNSPEC)
            .mark(DATAPATH_MARK);
        let before = lab.deliveries();
        lab.tc(PROG_SW, up, DATAPATH_MARK, &bcast(B))
            .ret(TC_ACT_UNSPEC)
            .mark(0)
            .nothing_counted();
        // A unicast from the wire to an endpoint is the parent's program's,
        // also when the switch's runs first.
        lab.sw_uplink(&udp(B, D))
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::NotOurs, 1)])
            .only(&[]);
        assert_eq!(lab.delivered_since(&before), [0, 0, 0, 0]);
    });
}
