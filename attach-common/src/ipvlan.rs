//! ipvlan: the address tables, the per-parent port, mode and flag bits.
//!
//! Endpoints are the same [`crate::Endpoint`] values as macvlan's (in
//! `attach_ports` by host-side veth, in the flood table); ipvlan ones carry
//! an `IPVL_MODE_*` bit in `mode` (disjoint from the macvlan bits, so the
//! macvlan flood rules never select them); the port's `IPVL_F_*` flags are
//! in its [`IpvlanParent`] only (an endpoint's `flags` are `EP_F_*` bits).

use crate::{Endpoint, MacAddr, TableDef};

/// IPv4 address → endpoint, per parent.
pub const MAP_IP4_EPS: &str = "attach_ip4_eps";
pub const IP4_EPS: TableDef<Ip4Key, Endpoint> = TableDef::new(MAP_IP4_EPS);
/// IPv6 address → endpoint, per parent.
pub const MAP_IP6_EPS: &str = "attach_ip6_eps";
pub const IP6_EPS: TableDef<Ip6Key, Endpoint> = TableDef::new(MAP_IP6_EPS);
/// ipvlan port of a parent, by parent ifindex.
pub const MAP_IPVL_PARENTS: &str = "attach_ipvl_par";
pub const IPVL_PARENTS: TableDef<u32, IpvlanParent> = TableDef::new(MAP_IPVL_PARENTS);

pub const IPVLAN_MAPS: [&str; 3] = [MAP_IP4_EPS, MAP_IP6_EPS, MAP_IPVL_PARENTS];

/// ipvlan modes (as `Endpoint::mode` and `IpvlanParent::mode`).
pub const IPVL_MODE_L2: u8 = 0x10;
pub const IPVL_MODE_L3: u8 = 0x20;
pub const IPVL_MODE_L3S: u8 = 0x40;
pub const IPVL_MODES: u8 = IPVL_MODE_L2 | IPVL_MODE_L3 | IPVL_MODE_L3S;

/// ipvlan flags (as `IpvlanParent::flags`, never `Endpoint::flags`); bridge is
/// the absence of both, as in the kernel.
pub const IPVL_F_PRIVATE: u8 = 0x10;
pub const IPVL_F_VEPA: u8 = 0x20;

/// Routing table (in the node) holding one host route per ipvlan endpoint
/// address via its host-side veth. The programs look addresses up there
/// (`bpf_fib_lookup`, `BPF_FIB_LOOKUP_TBID`) to learn whether the endpoint
/// is up: the veth loses carrier when the container's side goes down and,
/// with `ignore_routes_with_linkdown`, its routes stop matching. l3s also
/// routes its ingress through it (an `ip rule` on [`crate::DATAPATH_MARK`]).
pub const IPVL_ROUTE_TABLE: u32 = 0xa77a;
/// Priority of the l3s `ip rule` selecting [`IPVL_ROUTE_TABLE`]: before
/// `main` (32766), whose connected route to the parent's subnet would win.
pub const IPVL_RULE_PRIORITY: u32 = 0x7a77;

/// Key of [`MAP_IP4_EPS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Ip4Key {
    pub parent_ifindex: u32,
    /// Network byte order, as in the packet.
    pub addr: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<Ip4Key>() == 8);

/// Key of [`MAP_IP6_EPS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Ip6Key {
    pub parent_ifindex: u32,
    pub addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<Ip6Key>() == 20);

/// Value of [`MAP_IPVL_PARENTS`]: the kernel's ipvlan "port".
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IpvlanParent {
    /// Row of this parent's ipvlan endpoints in the flood table.
    pub slot: u32,
    /// Endpoints in that row.
    pub nports: u32,
    /// The parent's MAC, which every endpoint shares.
    pub mac: MacAddr,
    /// One `IPVL_MODE_*` bit.
    pub mode: u8,
    /// `IPVL_F_*` bits.
    pub flags: u8,
}
const _: () = assert!(core::mem::size_of::<IpvlanParent>() == 16);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C), integers and byte arrays only, sizes asserted above.
    unsafe impl aya::Pod for Ip4Key {}
    unsafe impl aya::Pod for Ip6Key {}
    unsafe impl aya::Pod for IpvlanParent {}
}
