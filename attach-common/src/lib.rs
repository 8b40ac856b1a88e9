//! The contract between the attach eBPF programs and user space.
//!
//! Every type here crosses into a BPF map, so each one is `#[repr(C)]`, has no
//! `bool`/`Option`, spells its padding out, and asserts its size. Map and pin
//! names are defined once, here.
#![no_std]

pub mod bandwidth;
pub mod bridge;
pub mod ipvlan;
pub mod maps;
pub mod mode;
pub mod nested;
pub mod router;
pub mod table;
pub mod verdict;

pub use bandwidth::*;
pub use bridge::*;
pub use ipvlan::*;
pub use maps::*;
pub use mode::*;
pub use nested::*;
pub use router::*;
pub use table::TableDef;
pub use verdict::*;

/// Ethernet address length.
pub const ETH_ALEN: usize = 6;
pub type MacAddr = [u8; ETH_ALEN];

/// Mark put on frames the datapath itself redirects onto the parent, so the
/// parent's own programs let them pass instead of switching them a second time.
/// Container frames arrive with mark 0 (a veth scrubs it crossing namespaces),
/// so this never collides with a mark set by the node.
pub const DATAPATH_MARK: u32 = 0xa77a_c4ed;

/// Most endpoints one node can hold (size of the per-endpoint tables).
pub const MAX_ENDPOINTS: u32 = 4096;
/// Most parent devices one node can hold.
pub const MAX_PARENTS: u32 = 64;
/// Most endpoints one parent can flood to (as many as the node holds). A
/// flood clones the frame once per port, so this also bounds the work of one
/// broadcast. Kernels without `bpf_loop` hold far fewer ([`OPEN_WALK_MAX`]).
pub const MAX_PORTS_PER_PARENT: u32 = MAX_ENDPOINTS;
/// Size of the flood table: one row of `MAX_PORTS_PER_PARENT` endpoint ids
/// (4 bytes each: 1 MiB in all) per parent slot.
pub const FLOOD_TABLE_SIZE: u32 = MAX_PARENTS * MAX_PORTS_PER_PARENT;

/// Root of every bpffs pin the engine makes; one directory per node below it.
pub const PIN_ROOT: &str = "/sys/fs/bpf/attach";
/// Root of the attachment records; one directory per node below it.
pub const STATE_ROOT: &str = "/run/attach";

/// The name of every map the datapath pins.
pub fn pinned_maps() -> impl Iterator<Item = &'static str> {
    ALL_MAPS
        .iter()
        .chain(&IPVLAN_MAPS)
        .chain(&BRIDGE_MAPS)
        .chain(&ROUTER_MAPS)
        .chain(&NESTED_MAPS)
        .chain(&BW_MAPS)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_names_fit_the_kernel_limit() {
        for name in pinned_maps().chain([MAP_BENCH, MAP_GEN_FRAME]) {
            assert!(name.len() <= 15, "{name} is longer than 15 characters");
            assert!(
                name.starts_with("attach_"),
                "{name} lacks the attach_ prefix"
            );
        }
    }

    #[test]
    fn every_table_is_a_pinned_map() {
        let names = [
            ENDPOINTS.name,
            PORTS.name,
            PARENTS.name,
            FLOOD.name,
            FLOOD_EPS.name,
            EP_IPS.name,
            CONFIG.name,
            EP_STATS.name,
            VERDICTS.name,
            CG_STATS.name,
            IP4_EPS.name,
            IP6_EPS.name,
            IPVL_PARENTS.name,
            RT_PORTS.name,
            NEST_VLANS.name,
            NEST_PORTS.name,
            NEST_IDS.name,
            SW_PORTS.name,
            SWITCHES.name,
            SW_FLOOD.name,
            SW_FDB.name,
            BW.name,
        ];
        for name in names {
            assert!(pinned_maps().any(|m| m == name), "{name} is not pinned");
        }
    }
}
