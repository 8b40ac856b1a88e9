//! nested: containers inside a VM, told apart by VLAN on the VM's uplink.
//!
//! In the VM, each container's veth (`attach_nest_prt`) tags what it sends
//! with its VLAN (and, with QinQ, the VM uplink's 802.1ad S-tag) and sends
//! it out of the uplink; the uplink's receive program pops the tag(s) and
//! delivers by VLAN (`attach_nest_vl`). On the host, the VM's tap carries
//! those tags; `attach_nest_vl` (keyed by the tap) maps each VLAN to a
//! nested endpoint of a parent's macvlan switch (`EP_F_NESTED`, with its
//! tags in `attach_nest_ids`).

use crate::{Endpoint, TableDef};

/// Nested endpoints by (uplink or tap ifindex, S-tag, VLAN).
pub const MAP_NEST_VLANS: &str = "attach_nest_vl";
pub const NEST_VLANS: TableDef<NestKey, NestedEp> = TableDef::new(MAP_NEST_VLANS);
/// In-VM nested endpoints by host-side veth ifindex.
pub const MAP_NEST_PORTS: &str = "attach_nest_prt";
pub const NEST_PORTS: TableDef<u32, NestedEp> = TableDef::new(MAP_NEST_PORTS);
/// Host-side nested endpoints by endpoint id.
pub const MAP_NEST_IDS: &str = "attach_nest_ids";
pub const NEST_IDS: TableDef<u32, NestedEp> = TableDef::new(MAP_NEST_IDS);

pub const NESTED_MAPS: [&str; 3] = [MAP_NEST_VLANS, MAP_NEST_PORTS, MAP_NEST_IDS];

/// `NestedEp::flags`: the host side keeps the 802.1Q tag towards the
/// parent (and expects it on frames from there).
pub const NEST_F_KEEP_TAG: u8 = 1;
/// `NestedEp::flags`: the host-side role (else: in the VM).
pub const NEST_F_HOST: u8 = 2;

/// Key of [`MAP_NEST_VLANS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct NestKey {
    /// The VM's uplink (in the VM) or its tap (on the host).
    pub ifindex: u32,
    /// The outer 802.1ad S-tag's VLAN, 0 when the uplink is untagged.
    pub outer: u16,
    /// The container's 802.1Q VLAN.
    pub vid: u16,
}
const _: () = assert!(core::mem::size_of::<NestKey>() == 8);

/// Value of [`MAP_NEST_VLANS`], [`MAP_NEST_PORTS`] and [`MAP_NEST_IDS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NestedEp {
    /// In the VM: `host_ifindex` the container's host-side veth,
    /// `parent_ifindex` the uplink. On the host: `host_ifindex` the tap,
    /// `parent_ifindex` the parent whose switch it is on, `mode` a macvlan
    /// mode, `flags` with `EP_F_NESTED`.
    pub ep: Endpoint,
    pub vid: u16,
    /// S-tag VLAN, 0 for none.
    pub outer: u16,
    /// `NEST_F_*`.
    pub flags: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<NestedEp>() == 28);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C), integers and byte arrays only, sizes asserted above.
    unsafe impl aya::Pod for NestKey {}
    unsafe impl aya::Pod for NestedEp {}
}
