//! Map names and the layout of every key and value.

use crate::{MacAddr, TableDef};

/// Endpoints by (parent ifindex, MAC): the receive-side demux table.
pub const MAP_ENDPOINTS: &str = "attach_eps";
pub const ENDPOINTS: TableDef<EndpointKey, Endpoint> = TableDef::new(MAP_ENDPOINTS);
/// A direct-mapped copy of [`MAP_ENDPOINTS`] in front of it ([`EpCacheSlot`]):
/// the receive hot path finds most endpoints with an array lookup the
/// verifier inlines, without a hash table's call, hash and key compare.
pub const MAP_EP_CACHE: &str = "attach_ep_cache";
/// Endpoints by host-side veth ifindex: who is sending on a port.
pub const MAP_PORTS: &str = "attach_ports";
pub const PORTS: TableDef<u32, Endpoint> = TableDef::new(MAP_PORTS);
/// Per-parent configuration by parent ifindex.
pub const MAP_PARENTS: &str = "attach_parents";
pub const PARENTS: TableDef<u32, ParentCfg> = TableDef::new(MAP_PARENTS);
/// Flood lists: row `slot` holds the ids of the endpoints of the parent in
/// that slot; each id's endpoint is entry `id` of [`MAP_FLOOD_EPS`]. A row
/// of ids, not of endpoints, keeps a row of every endpoint of the node for
/// each parent small, and lets an endpoint join or leave a row with one
/// write (append, or the last id moved into its place).
pub const MAP_FLOOD: &str = "attach_flood_id";
/// An array: entry `slot * MAX_PORTS_PER_PARENT + i`.
pub const FLOOD: TableDef<u32, u32> = TableDef::new(MAP_FLOOD);
/// The flood rows' endpoints by endpoint id, each with its place in its row
/// ([`FloodEp`]).
pub const MAP_FLOOD_EPS: &str = "attach_flood_ep";
/// An array of [`crate::MAX_ENDPOINTS`] entries.
pub const FLOOD_EPS: TableDef<u32, FloodEp> = TableDef::new(MAP_FLOOD_EPS);
/// The flood table of builds before [`MAP_FLOOD`] (rows of whole
/// endpoints, 256 to a parent): unused, its pin removed once the rows are
/// written anew.
pub const MAP_FLOOD_V1: &str = "attach_flood";
/// XDP redirect targets (host-side veths) by ifindex.
pub const MAP_DEVS: &str = "attach_devs";
/// The addresses an endpoint may send from, by (host ifindex, address).
pub const MAP_EP_IPS: &str = "attach_ep_ips";
/// The value is 1: the key is the entry.
pub const EP_IPS: TableDef<EpIpKey, u8> = TableDef::new(MAP_EP_IPS);
/// Drop events, and every decision while tracing is on ([`Event`]).
pub const MAP_EVENTS: &str = "attach_events";
/// Runtime switches of the datapath: index 0 holds `CFG_*` bits. The map
/// is the programs' data section [`CONFIG_SECTION`] (global
/// [`CONFIG_GLOBAL`]), pinned under this name.
pub const MAP_CONFIG: &str = "attach_config";
/// A one-entry array.
pub const CONFIG: TableDef<u32, u32> = TableDef::new(MAP_CONFIG);
/// The object's section holding [`CONFIG_GLOBAL`] (one map per section).
pub const CONFIG_SECTION: &str = ".data.attach_config";
/// The global the programs read the `CFG_*` bits from.
pub const CONFIG_GLOBAL: &str = "ATTACH_CONFIG";
/// Most ports a flood row walks without `bpf_loop` (before Linux 5.17; the
/// `attach-compat` build of the programs, whose walk is unrolled): the
/// verifier checks every step on its own, and 5.10's work grows fast with
/// the steps. The engine keeps rows that short on such kernels.
pub const OPEN_WALK_MAX: u32 = 16;

/// `attach_config[0]` bit: emit an event for every decision, not only drops.
pub const CFG_TRACE: u32 = 1;
/// Size of the event ring buffer.
pub const EVENTS_BYTES: u32 = 256 * 1024;
/// Per-CPU counters by endpoint id.
pub const MAP_EP_STATS: &str = "attach_ep_stats";
/// A per-CPU array.
pub const EP_STATS: TableDef<u32, EndpointStats> = TableDef::new(MAP_EP_STATS);
/// Per-CPU counters by (direction, verdict).
pub const MAP_VERDICTS: &str = "attach_verdicts";
/// A per-CPU array, by `Verdict::slot`.
pub const VERDICTS: TableDef<u32, u64> = TableDef::new(MAP_VERDICTS);

/// Frames dropped by the bench's XDP drop program (`attach bench` only; not
/// pinned, not part of the datapath).
pub const MAP_BENCH: &str = "attach_bench";
/// The frame the bench's generator sends (one slot; `attach bench` only).
pub const MAP_GEN_FRAME: &str = "attach_gen_frm";
/// Bytes of the generator's frame (a 64-byte frame on the wire, less the FCS).
pub const GEN_FRAME_LEN: usize = 60;
/// The generator's frame slot, in 8-byte words (the last one half used).
pub const GEN_FRAME_WORDS: usize = GEN_FRAME_LEN.div_ceil(8);

/// Per-CPU traffic counters of `host` attachments' cgroups, by counter id.
pub const MAP_CG_STATS: &str = "attach_cg_stats";
/// A per-CPU array.
pub const CG_STATS: TableDef<u32, CgroupStats> = TableDef::new(MAP_CG_STATS);

pub const ALL_MAPS: [&str; 13] = [
    MAP_EVENTS,
    MAP_CONFIG,
    MAP_ENDPOINTS,
    MAP_EP_CACHE,
    MAP_PORTS,
    MAP_EP_IPS,
    MAP_PARENTS,
    MAP_FLOOD,
    MAP_FLOOD_EPS,
    MAP_DEVS,
    MAP_EP_STATS,
    MAP_VERDICTS,
    MAP_CG_STATS,
];

/// Name of the global (`.rodata`) that tells a loaded cgroup program which
/// slot of [`MAP_CG_STATS`] is its own: each `host` attachment loads its
/// programs with its own value.
pub const CG_COUNTER_GLOBAL: &str = "ATTACH_CG_COUNTER";

/// Most `host` attachments with counters on one node.
pub const MAX_CG_COUNTERS: u32 = 1024;

/// Key of [`MAP_ENDPOINTS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct EndpointKey {
    pub parent_ifindex: u32,
    pub mac: MacAddr,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<EndpointKey>() == 12);

impl EndpointKey {
    pub const fn new(parent_ifindex: u32, mac: MacAddr) -> Self {
        Self {
            parent_ifindex,
            mac,
            _pad: [0; 2],
        }
    }
}

/// One endpoint: the value of [`MAP_ENDPOINTS`] and [`MAP_PORTS`], and in
/// each [`MAP_FLOOD_EPS`] entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// Host-side veth: redirect target for frames to this endpoint.
    pub host_ifindex: u32,
    /// The parent device this endpoint hangs off.
    pub parent_ifindex: u32,
    /// Index into [`MAP_EP_STATS`].
    pub id: u32,
    pub mac: MacAddr,
    /// One of the `MODE_*` bits.
    pub mode: u8,
    /// `EP_F_*` bits.
    pub flags: u8,
}
const _: () = assert!(core::mem::size_of::<Endpoint>() == 20);

impl Endpoint {
    #[inline(always)]
    pub const fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Who owns the endpoint's entries in [`MAP_EP_IPS`]: its host-side
    /// veth, or, for a nested endpoint (whose `host_ifindex` is a VM's tap
    /// shared with the VM's other containers), its id with the top bit set.
    #[inline(always)]
    pub const fn ip_owner(&self) -> u32 {
        if self.has(crate::EP_F_NESTED) {
            NESTED_IP_OWNER | self.id
        } else {
            self.host_ifindex
        }
    }
}

/// Entry of [`MAP_FLOOD_EPS`]: an endpoint of a flood row, and where in
/// its row its id is (for user space, which moves the row's last id there
/// when it leaves). The programs skip an entry whose `ep.id` is not the id
/// they looked up, or with no host ifindex (never written: all zeros).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FloodEp {
    pub ep: Endpoint,
    /// Index of the id in its row.
    pub pos: u32,
}
const _: () = assert!(core::mem::size_of::<FloodEp>() == 24);

/// Slots of [`MAP_EP_CACHE`] (a power of two): 768 KiB, so that of
/// [`MAX_ENDPOINTS`] endpoints with random MACs about one in sixteen finds
/// its slot taken (and is found in the table).
pub const EP_CACHE_SLOTS: u32 = 1 << 15;
/// `BPF_F_MMAPABLE`: user space writes [`MAP_EP_CACHE`] through a mapping,
/// field by field in the order its readers rely on.
pub const EP_CACHE_FLAGS: usize = 1 << 10;

/// One slot of [`MAP_EP_CACHE`], a seqlock written by user space only (under
/// the node's lock): `seq` is [`EP_CACHE_WRITING`] while the slot is being
/// written and a new number after each write. A reader takes `ep` only if
/// `seq` was the same number, not that one, before and after reading it,
/// and `ep`'s parent and MAC are the frame's; anything else falls back to
/// [`MAP_ENDPOINTS`], which stays the authority. An empty slot has parent
/// 0, which no frame arrives on; a slot never written is all zeros.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EpCacheSlot {
    pub seq: u32,
    pub ep: Endpoint,
}
const _: () = assert!(core::mem::size_of::<EpCacheSlot>() == 24);

/// [`EpCacheSlot::seq`] while the slot is being written (or was left half
/// written by a writer that died). Odd, so that programs of the build before
/// it (whose writers made `seq` odd while writing) skip such a slot too
/// during an upgrade; small enough to be a jump's immediate.
pub const EP_CACHE_WRITING: u32 = 0x7fff_ffff;

/// The slot of [`MAP_EP_CACHE`] an endpoint key may sit in: the MAC (its six
/// bytes as a little-endian number) with the parent folded in, hashed by a
/// 64-bit multiply whose top bits are the slot (Fibonacci hashing), so MACs
/// numbered in any byte spread over the slots as random ones do, and one
/// MAC on several parents takes several slots.
#[inline(always)]
pub const fn ep_cache_slot(parent_ifindex: u32, mac: &MacAddr) -> u32 {
    ep_cache_slot_words(
        parent_ifindex,
        [
            u16::from_ne_bytes([mac[0], mac[1]]),
            u16::from_ne_bytes([mac[2], mac[3]]),
            u16::from_ne_bytes([mac[4], mac[5]]),
        ],
    )
}

/// The MAC as the programs compare it with a slot's: its three 16-bit words
/// (as read from a frame) in one number.
#[inline(always)]
pub const fn mac_number(mac: [u16; 3]) -> u64 {
    mac[0] as u64 | (mac[1] as u64) << 16 | (mac[2] as u64) << 32
}

/// [`ep_cache_slot`] of a MAC read as three 16-bit words, as the programs
/// read it (the number is the one they compare with the slot, so computing
/// the slot costs them only the hash: add, multiply, shift).
#[inline(always)]
pub const fn ep_cache_slot_words(parent_ifindex: u32, mac: [u16; 3]) -> u32 {
    let key = mac_number(mac).wrapping_add(parent_ifindex as u64);
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - EP_CACHE_SLOTS.trailing_zeros())) as u32
}

/// Top bit of [`EpIpKey::host_ifindex`] for a nested endpoint's addresses
/// (see [`Endpoint::ip_owner`]); interface indexes never have it.
pub const NESTED_IP_OWNER: u32 = 1 << 31;

/// Key of [`MAP_EP_IPS`]: an IPv4 address sits in the first 4 bytes of
/// `addr`, the rest zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct EpIpKey {
    pub host_ifindex: u32,
    /// 4 or 6.
    pub family: u8,
    pub _pad: [u8; 3],
    pub addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<EpIpKey>() == 24);

impl EpIpKey {
    pub const fn v4(host_ifindex: u32, a: [u8; 4]) -> Self {
        let mut addr = [0u8; 16];
        addr[0] = a[0];
        addr[1] = a[1];
        addr[2] = a[2];
        addr[3] = a[3];
        Self {
            host_ifindex,
            family: 4,
            _pad: [0; 3],
            addr,
        }
    }

    pub const fn v6(host_ifindex: u32, addr: [u8; 16]) -> Self {
        Self {
            host_ifindex,
            family: 6,
            _pad: [0; 3],
            addr,
        }
    }
}

/// Value of [`MAP_PARENTS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ParentCfg {
    /// Row of this parent in [`MAP_FLOOD`].
    pub slot: u32,
    /// Endpoints in this parent's flood row.
    pub nports: u32,
    /// With `PARENT_F_PASSTHRU`: the one endpoint that gets every unicast frame.
    pub passthru: Endpoint,
    /// The parent's own MAC (frames to it are the node's).
    pub mac: MacAddr,
    /// `PARENT_F_*` bits.
    pub flags: u8,
    /// `DATAPATH_*` value.
    pub datapath: u8,
    /// The parent's MTU: endpoints may not send larger frames through it.
    pub mtu: u32,
}
const _: () = assert!(core::mem::size_of::<ParentCfg>() == 40);

/// Value of [`MAP_EP_STATS`]. Directions are the container's: `rx` is what the
/// endpoint received, `tx` what it sent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EndpointStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_broadcast: u64,
    pub rx_multicast: u64,
    pub tx_broadcast: u64,
    pub tx_multicast: u64,
    /// Copies made when this endpoint's frames were flooded to other endpoints.
    pub flood_copies: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}
const _: () = assert!(core::mem::size_of::<EndpointStats>() == 88);

impl EndpointStats {
    /// Sums per-CPU values.
    pub fn add(&mut self, o: &Self) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.rx_broadcast += o.rx_broadcast;
        self.rx_multicast += o.rx_multicast;
        self.tx_broadcast += o.tx_broadcast;
        self.tx_multicast += o.tx_multicast;
        self.flood_copies += o.flood_copies;
        self.rx_dropped += o.rx_dropped;
        self.tx_dropped += o.tx_dropped;
    }
}

/// One datapath decision, as `attach monitor` streams it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Event {
    /// `bpf_ktime_get_ns` (monotonic clock).
    pub ktime_ns: u64,
    /// The device the frame was on.
    pub ifindex: u32,
    pub len: u32,
    /// Endpoint id, or `u32::MAX` when none.
    pub endpoint: u32,
    /// `Direction` value.
    pub direction: u8,
    /// `Verdict` value.
    pub verdict: u8,
    /// EtherType, network byte order.
    pub proto: u16,
    pub src: MacAddr,
    pub dst: MacAddr,
    pub _pad: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<Event>() == 40);

/// Value of [`MAP_CG_STATS`]: the traffic of one cgroup's sockets. `rx` is
/// what they received (cgroup_skb ingress), `tx` what they sent (egress);
/// lengths from the network header on.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CgroupStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}
const _: () = assert!(core::mem::size_of::<CgroupStats>() == 32);

impl CgroupStats {
    /// Sums per-CPU values.
    pub fn add(&mut self, o: &Self) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all are repr(C), made only of integers and byte arrays, with
    // their padding spelled out (sizes asserted above).
    unsafe impl aya::Pod for EndpointKey {}
    unsafe impl aya::Pod for EpIpKey {}
    unsafe impl aya::Pod for Endpoint {}
    unsafe impl aya::Pod for FloodEp {}
    unsafe impl aya::Pod for EpCacheSlot {}
    unsafe impl aya::Pod for ParentCfg {}
    unsafe impl aya::Pod for EndpointStats {}
    unsafe impl aya::Pod for Event {}
    unsafe impl aya::Pod for CgroupStats {}
}
