//! router: routed endpoints (the CNI "ptp" shape). Each endpoint is a veth
//! whose host side carries no address; the node has a host route (and a
//! permanent neighbour entry) per endpoint address through it. The
//! programs answer the container's ARP/ND for its gateway and forward with
//! the node's tables (`bpf_fib_lookup`).

use crate::{Endpoint, MacAddr, TableDef};

/// Router ports by host-side veth ifindex.
pub const MAP_RT_PORTS: &str = "attach_rt_ports";
pub const RT_PORTS: TableDef<u32, RouterPort> = TableDef::new(MAP_RT_PORTS);

pub const ROUTER_MAPS: [&str; 1] = [MAP_RT_PORTS];

/// The container's IPv4 gateway: link-local, reached on-link, answered by
/// the transmit program with the host-side veth's MAC.
pub const ROUTER_GW4: [u8; 4] = [169, 254, 1, 1];
/// The container's IPv6 gateway (link-local), answered likewise.
pub const ROUTER_GW6: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Value of [`MAP_RT_PORTS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RouterPort {
    /// `host_ifindex`: the host-side veth; `parent_ifindex`: the uplink
    /// whose program routes inbound traffic (0 if none); `id`: counters;
    /// `mac`: the container's; `flags`: `EP_F_SPOOFCHK`/`EP_F_IPCHK`.
    pub ep: Endpoint,
    /// The host-side veth's MAC: the gateway's, as the container sees it.
    pub gw_mac: MacAddr,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<RouterPort>() == 28);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C), integers and byte arrays only, size asserted above.
    unsafe impl aya::Pod for RouterPort {}
}
