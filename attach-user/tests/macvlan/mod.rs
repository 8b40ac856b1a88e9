//! The eBPF macvlan's programs (`attach_rx`, `attach_tx`, `attach_host`,
//! `attach_rx_xdp`) frame by frame against the kernel's macvlan rules
//! (shared/docs/semantics.md); the MACs and frames its tests share.

use attach_common::{EP_F_IPCHK, EP_F_SPOOFCHK, MODE_BRIDGE, MODE_PRIVATE, MODE_VEPA, MacAddr};

use crate::common::{frames::*, lab::Lab, scenario::Scenario};

mod fuzz;
mod guard;
mod host;
mod rx;
mod tx;
mod xdp;

pub const UNKNOWN: MacAddr = [0x52, 0x54, 0, 0x99, 0x99, 0x99];

pub fn ip4(last: u8) -> [u8; 4] {
    [10, 0, 0, last]
}

pub fn udp_to(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    ipv4_udp(dst, src, ip4(1), ip4(2), 5353, b"hello, endpoint")
}

/// bridge A, bridge B, VEPA C, private D on one parent.
pub fn four_modes() -> Lab {
    Scenario::new()
        .parent()
        .endpoint(MODE_BRIDGE, A)
        .endpoint(MODE_BRIDGE, B)
        .endpoint(MODE_VEPA, C)
        .endpoint(MODE_PRIVATE, D)
        .build()
}

/// A (bridge) sends from 10.0.0.1 and fd00::1 only; B is its peer.
pub fn ipchk_lab() -> Lab {
    let lab = Scenario::new()
        .parent()
        .endpoint_with(MODE_BRIDGE, A, EP_F_SPOOFCHK | EP_F_IPCHK)
        .endpoint(MODE_BRIDGE, B)
        .build();
    let own: [std::net::IpAddr; 2] = ["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()];
    let mut lab = lab;
    let h = lab.eps[0].host_ifindex;
    lab.dp.put_endpoint_ips(h, &own).unwrap();
    lab
}

/// `fd00::<last>`.
pub fn v6(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[15] = last;
    a
}
