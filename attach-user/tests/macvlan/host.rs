//! `attach_host` on the parent: the node's own frames, to host-access
//! endpoints or out by the wire.

use attach::datapath::PROG_HOST;
use attach_common::{
    DATAPATH_MARK, Direction::Host as HOST, EP_F_HOST_ACCESS, MODE_BRIDGE, MODE_PRIVATE, MODE_VEPA,
    Verdict,
};

use super::*;
use crate::common::{outcome::*, scenario::*, *};

/// A (bridge, host access), B (bridge), C (VEPA, host access), D (private).
fn host_lab() -> Lab {
    Scenario::new()
        .parent()
        .endpoint_with(MODE_BRIDGE, A, EP_F_HOST_ACCESS)
        .endpoint(MODE_BRIDGE, B)
        .endpoint_with(MODE_VEPA, C, EP_F_HOST_ACCESS)
        .endpoint(MODE_PRIVATE, D)
        .build()
}

#[test]
fn host_unicast_to_a_host_access_endpoint_is_redirected() {
    in_netns(|| {
        let mut lab = host_lab();
        let pmac = lab.parents[0].mac;
        for (i, dst) in [(0, A), (2, C)] {
            let f = udp_to(dst, pmac);
            lab.host(&f)
                .ret(TC_ACT_REDIRECT)
                .verdicts(&[(HOST, Verdict::ToEndpoint, 1)])
                .only(&[(i, rx_uc(len(&f)))])
                .arrives_at(&mut lab, Target::Endpoint(i));
        }
    });
}

#[test]
fn host_unicast_to_other_macs_leaves_by_the_wire() {
    in_netns(|| {
        let mut lab = host_lab();
        let pmac = lab.parents[0].mac;
        for dst in [B, D, OUTSIDE] {
            lab.host(&udp_to(dst, pmac))
                .ret(TC_ACT_UNSPEC)
                .verdicts(&[(HOST, Verdict::ToParent, 1)])
                .only(&[]);
        }
    });
}

#[test]
fn host_broadcast_reaches_only_host_access_endpoints() {
    in_netns(|| {
        let mut lab = host_lab();
        let pmac = lab.parents[0].mac;
        let f = arp_request(pmac, ip4(254), ip4(1));
        let n = len(&f);
        lab.host(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(HOST, Verdict::Flood, 1)])
            .only(&[(0, rx_bc(n)), (2, rx_bc(n))]);
        let dst = ipv6_multicast_mac(ALL_NODES);
        let f = ipv6_icmpv6(dst, pmac, ll6(254), ALL_NODES, 134, &[0; 8]);
        let n = len(&f);
        lab.host(&f)
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(HOST, Verdict::Flood, 1)])
            .only(&[(0, rx_mc(n)), (2, rx_mc(n))]);
    });
}

#[test]
fn host_datapath_mark_passes_untouched() {
    in_netns(|| {
        let mut lab = host_lab();
        let p = lab.parent();
        let pmac = lab.parents[0].mac;
        for f in [udp_to(A, pmac), arp_request(A, ip4(1), ip4(2))] {
            lab.tc(PROG_HOST, p, DATAPATH_MARK, &f)
                .ret(TC_ACT_UNSPEC)
                .nothing_counted()
                .mark(0);
        }
    });
}

#[test]
fn host_on_a_device_not_in_the_table_passes() {
    in_netns(|| {
        let mut lab = host_lab();
        let stray = lab.stray;
        lab.tc(PROG_HOST, stray, 0, &udp_to(A, OUTSIDE))
            .ret(TC_ACT_UNSPEC)
            .verdicts(&[(HOST, Verdict::NotOurs, 1)])
            .only(&[]);
    });
}
