//! Per-endpoint rate limits: a token bucket for each direction, by
//! endpoint id, which the programs consult on every unicast delivery into a
//! container and every frame a container sends.

use crate::TableDef;

/// Rate limits by endpoint id (an array: an entry of rate 0 limits nothing).
pub const MAP_BW: &str = "attach_bw";
pub const BW: TableDef<u32, BwLimits> = TableDef::new(MAP_BW);

/// The maps of this module.
pub const BW_MAPS: [&str; 1] = [MAP_BW];

/// Fastest rate a bucket takes, bytes per second (32 Gbit/s): the refill
/// (`elapsed ns * rate`) stays within 64 bits for [`BW_MAX_IDLE_NS`].
pub const BW_MAX_RATE: u64 = 4_000_000_000;
/// Longest idle time a refill counts (longer refills as this long).
pub const BW_MAX_IDLE_NS: u64 = 4_000_000_000;

/// One direction's bucket. User space writes `rate` and `burst` (and a full
/// bucket: `tokens = burst`, `stamp = 0`); the programs keep `tokens` and
/// `stamp`. A frame passes while `tokens` is positive and takes its length
/// off (the bucket may go into debt by one frame, so a GSO packet larger
/// than the burst still passes at the rate).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Bytes per second; 0: no limit.
    pub rate: u64,
    /// Bytes the bucket holds at most.
    pub burst: u64,
    /// Bytes that may pass now (negative: owed).
    pub tokens: i64,
    /// `bpf_ktime_get_ns` of the last refill.
    pub stamp: u64,
}

/// Value of [`MAP_BW`]: into the container (`ingress`) and from it
/// (`egress`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BwLimits {
    pub ingress: Bucket,
    pub egress: Bucket,
}

const _: () = assert!(core::mem::size_of::<Bucket>() == 32);
const _: () = assert!(core::mem::size_of::<BwLimits>() == 64);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C), integers only, no padding (sizes asserted above).
    unsafe impl aya::Pod for BwLimits {}
}
