//! The maps, pinned by name so every program instance and user space share
//! them. Names match `attach_common::maps::MAP_*`.

use attach_common::{
    BwLimits, CgroupStats, EP_CACHE_FLAGS, EP_CACHE_SLOTS, EVENTS_BYTES, Endpoint, EndpointKey,
    EndpointStats, EpCacheSlot, EpIpKey, Event, FLOOD_TABLE_SIZE, FdbEntry, FloodEp, FdbKey, Ip4Key, Ip6Key,
    IpvlanParent, MAX_CG_COUNTERS, MAX_ENDPOINTS, MAX_PARENTS, MAX_SWITCHES, NestKey, NestedEp,
    ParentCfg, RouterPort, SW_FDB_SIZE, SW_FLOOD_SIZE, SwPort, Switch, VERDICT_SLOTS,
};
use aya_ebpf::{
    Global,
    btf_maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray, RingBuf},
    macros::btf_map,
};

const EPS: usize = MAX_ENDPOINTS as usize;

#[btf_map(name = "attach_eps", pin_by_name)]
pub static ENDPOINTS: HashMap<EndpointKey, Endpoint, EPS> = HashMap::new();

/// In front of `ENDPOINTS` on the receive paths (see `macvlan::cached`).
#[btf_map(name = "attach_ep_cache", pin_by_name)]
pub static EP_CACHE: Array<EpCacheSlot, { EP_CACHE_SLOTS as usize }, EP_CACHE_FLAGS> = Array::new();

#[btf_map(name = "attach_ports", pin_by_name)]
pub static PORTS: HashMap<u32, Endpoint, EPS> = HashMap::new();

/// Addresses each endpoint may send from (value unused).
#[btf_map(name = "attach_ep_ips", pin_by_name)]
pub static EP_IPS: HashMap<EpIpKey, u8, { 4 * MAX_ENDPOINTS as usize }> = HashMap::new();

#[btf_map(name = "attach_parents", pin_by_name)]
pub static PARENTS: HashMap<u32, ParentCfg, { MAX_PARENTS as usize }> = HashMap::new();

/// Flood rows of endpoint ids (see `attach_common::MAP_FLOOD`).
#[btf_map(name = "attach_flood_id", pin_by_name)]
pub static FLOOD: Array<u32, { FLOOD_TABLE_SIZE as usize }> = Array::new();

/// The flood rows' endpoints by id.
#[btf_map(name = "attach_flood_ep", pin_by_name)]
pub static FLOOD_EPS: Array<FloodEp, EPS> = Array::new();

#[btf_map(name = "attach_devs", pin_by_name)]
pub static DEVS: DevMapHash<EPS> = DevMapHash::new();

#[btf_map(name = "attach_ep_stats", pin_by_name)]
pub static EP_STATS: PerCpuArray<EndpointStats, EPS> = PerCpuArray::new();

#[btf_map(name = "attach_verdicts", pin_by_name)]
pub static VERDICTS: PerCpuArray<u64, { VERDICT_SLOTS as usize }> = PerCpuArray::new();

#[btf_map(name = "attach_events", pin_by_name)]
pub static EVENTS: RingBuf<Event, { EVENTS_BYTES as usize }> = RingBuf::new();

/// Runtime switches (`attach_common::CFG_*` bits): a global in a data
/// section of its own, which the loader pins as `attach_config` (a
/// one-entry array, as the map it replaces was) and keeps across loads.
/// Reading it is one load from the map's value (BPF_PSEUDO_MAP_VALUE)
/// where a map lookup costs a dozen instructions on every decision.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".data.attach_config")]
pub static ATTACH_CONFIG: Global<u32> = Global::new(0);

// ipvlan (attach_common::ipvlan).

#[btf_map(name = "attach_ip4_eps", pin_by_name)]
pub static IP4_EPS: HashMap<Ip4Key, Endpoint, EPS> = HashMap::new();

#[btf_map(name = "attach_ip6_eps", pin_by_name)]
pub static IP6_EPS: HashMap<Ip6Key, Endpoint, EPS> = HashMap::new();

#[btf_map(name = "attach_ipvl_par", pin_by_name)]
pub static IPVL_PARENTS: HashMap<u32, IpvlanParent, { MAX_PARENTS as usize }> = HashMap::new();

// bridge: the eBPF switch (attach_common::bridge).

/// Switch ports and uplinks, and native bridge ports with a source guard.
#[btf_map(name = "attach_sw_ports", pin_by_name)]
pub static SW_PORTS: HashMap<u32, SwPort, { EPS + MAX_SWITCHES as usize }> = HashMap::new();

#[btf_map(name = "attach_switches", pin_by_name)]
pub static SWITCHES: HashMap<u32, Switch, { MAX_SWITCHES as usize }> = HashMap::new();

#[btf_map(name = "attach_sw_flood", pin_by_name)]
pub static SW_FLOOD: Array<SwPort, { SW_FLOOD_SIZE as usize }> = Array::new();

#[btf_map(name = "attach_sw_fdb", pin_by_name)]
pub static SW_FDB: LruHashMap<FdbKey, FdbEntry, { SW_FDB_SIZE as usize }> = LruHashMap::new();

// router (attach_common::router).

#[btf_map(name = "attach_rt_ports", pin_by_name)]
pub static RT_PORTS: HashMap<u32, RouterPort, EPS> = HashMap::new();

// nested (attach_common::nested).

#[btf_map(name = "attach_nest_vl", pin_by_name)]
pub static NEST_VLANS: HashMap<NestKey, NestedEp, EPS> = HashMap::new();

#[btf_map(name = "attach_nest_prt", pin_by_name)]
pub static NEST_PORTS: HashMap<u32, NestedEp, EPS> = HashMap::new();

#[btf_map(name = "attach_nest_ids", pin_by_name)]
pub static NEST_IDS: HashMap<u32, NestedEp, EPS> = HashMap::new();

// host: cgroup counters (attach_common::CgroupStats).

#[btf_map(name = "attach_cg_stats", pin_by_name)]
pub static CG_STATS: PerCpuArray<CgroupStats, { MAX_CG_COUNTERS as usize }> = PerCpuArray::new();

/// Per-endpoint rate limits by endpoint id (`attach_common::bandwidth`).
#[btf_map(name = "attach_bw", pin_by_name)]
pub static BW: Array<BwLimits, EPS> = Array::new();
