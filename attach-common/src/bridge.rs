//! bridge: our own eBPF L2 switch (the `ebpf` backend of `attach add
//! bridge`), and the source guard of native bridge ports.
//!
//! A switch is a name; the engine gives it an id (also its row in
//! [`MAP_SW_FLOOD`]). Its ports are host-side veths, and optionally one
//! uplink (a node device, an 802.1Q trunk: untagged frames belong to the
//! ports without a VLAN, frames tagged N to the ports of VLAN N). Every port
//! runs `attach_sw` on its tcx ingress; the FDB learns source MACs per
//! (switch, VLAN).

use crate::{MacAddr, TableDef};

/// Ports of switches (and native bridge ports with a source guard), by
/// ifindex: host-side veths and uplinks.
pub const MAP_SW_PORTS: &str = "attach_sw_ports";
pub const SW_PORTS: TableDef<u32, SwPort> = TableDef::new(MAP_SW_PORTS);
/// Switches by id.
pub const MAP_SWITCHES: &str = "attach_switches";
pub const SWITCHES: TableDef<u32, Switch> = TableDef::new(MAP_SWITCHES);
/// Flood lists: row `switch id` holds the switch's container ports.
pub const MAP_SW_FLOOD: &str = "attach_sw_flood";
/// An array: entry `switch id * MAX_PORTS_PER_SWITCH + i`.
pub const SW_FLOOD: TableDef<u32, SwPort> = TableDef::new(MAP_SW_FLOOD);
/// The forwarding database: (switch, VLAN, MAC) → port (LRU: a flood of
/// random source MACs evicts old entries instead of filling it up).
pub const MAP_SW_FDB: &str = "attach_sw_fdb";
pub const SW_FDB: TableDef<FdbKey, FdbEntry> = TableDef::new(MAP_SW_FDB);

pub const BRIDGE_MAPS: [&str; 4] = [MAP_SW_PORTS, MAP_SWITCHES, MAP_SW_FLOOD, MAP_SW_FDB];

/// Most switches one node can hold.
pub const MAX_SWITCHES: u32 = 64;
/// Most container ports one switch can hold (its flood row).
pub const MAX_PORTS_PER_SWITCH: u32 = 256;
/// Size of the switch flood table.
pub const SW_FLOOD_SIZE: u32 = MAX_SWITCHES * MAX_PORTS_PER_SWITCH;
/// Size of the FDB.
pub const SW_FDB_SIZE: u32 = 16384;
/// How long a learned entry is trusted, as the Linux bridge's default
/// `ageing_time` (300 s).
pub const SW_AGEING_NS: u64 = 300 * 1_000_000_000;
/// A learned entry already pointing at the right port is rewritten (its
/// age refreshed) at most this often, not once per frame.
pub const SW_REFRESH_NS: u64 = 1_000_000_000;

/// Port flags (`SwPort::flags`). The two source checks have the values of
/// `EP_F_SPOOFCHK` and `EP_F_IPCHK`.
pub const SW_F_SPOOFCHK: u8 = 2;
pub const SW_F_IPCHK: u8 = 4;
/// Isolated port: talks to non-isolated ports only (the kernel bridge's
/// `isolated on`).
pub const SW_F_ISOLATED: u8 = 0x10;
/// The switch's uplink (a trunk to the node's device).
pub const SW_F_UPLINK: u8 = 0x20;
/// A native bridge port: only the source guard runs, the kernel bridge
/// switches.
pub const SW_F_GUARD: u8 = 0x40;

/// FDB entry flag: the engine's entry for a port whose MAC it enforces
/// (`--spoofchk on`): never ages, never moves by learning.
pub const FDB_F_STATIC: u32 = 1;

/// Value of [`MAP_SW_PORTS`] and of each [`MAP_SW_FLOOD`] entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SwPort {
    /// The port's device: host-side veth, or the uplink.
    pub ifindex: u32,
    /// Switch id (0 for a native bridge port's guard).
    pub switch_id: u32,
    /// Endpoint id (index into `attach_ep_stats`); `u32::MAX` for an uplink.
    pub id: u32,
    /// Access VLAN (1..=4094), 0: untagged. Unused on an uplink (a trunk).
    pub vlan: u16,
    /// `SW_F_*` bits.
    pub flags: u8,
    /// With source checks on, what the port's container may send besides
    /// its own sources: `EP_F_ROUTER`, `EP_F_DHCP_SERVER` (0 in builds
    /// before them: nothing).
    pub allow: u8,
    /// The container's MAC (the uplink's own for an uplink).
    pub mac: MacAddr,
    pub _pad2: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<SwPort>() == 24);
// The source guard reads a port's checks as an endpoint's.
const _: () = assert!(SW_F_SPOOFCHK == crate::EP_F_SPOOFCHK && SW_F_IPCHK == crate::EP_F_IPCHK);

impl SwPort {
    #[inline(always)]
    pub const fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Value of [`MAP_SWITCHES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Switch {
    /// Container ports in the switch's flood row.
    pub nports: u32,
    /// ifindex of the uplink, 0 if none.
    pub uplink: u32,
    /// Learned entries older than this are not trusted (flooded instead).
    pub ageing_ns: u64,
}
const _: () = assert!(core::mem::size_of::<Switch>() == 16);

/// Key of [`MAP_SW_FDB`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FdbKey {
    pub switch_id: u32,
    /// The VLAN the MAC was seen in (0: untagged).
    pub vlan: u16,
    pub mac: MacAddr,
}
const _: () = assert!(core::mem::size_of::<FdbKey>() == 12);

/// Value of [`MAP_SW_FDB`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FdbEntry {
    /// ifindex of the port the MAC is behind.
    pub port: u32,
    /// `FDB_F_*` bits.
    pub flags: u32,
    /// When it was last learned (`bpf_ktime_get_ns`, CLOCK_MONOTONIC).
    pub seen_ns: u64,
}
const _: () = assert!(core::mem::size_of::<FdbEntry>() == 16);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C), integers and byte arrays only, sizes asserted above.
    unsafe impl aya::Pod for SwPort {}
    unsafe impl aya::Pod for Switch {}
    unsafe impl aya::Pod for FdbKey {}
    unsafe impl aya::Pod for FdbEntry {}
}
