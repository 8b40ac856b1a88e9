//! The rate limits of endpoints (`attach_bw`, by endpoint id): written when
//! an endpoint is made or repaired, cleared when it goes (its id is reused).

use attach_common::{BW, Bucket, BwLimits};

use super::node::Datapath;
use crate::bandwidth::Bandwidth;
use crate::error::Result;

/// One direction's bucket, full, from a rate and burst in bits (none: no
/// limit).
fn bucket(rate_bits: Option<u64>, burst_bits: Option<u64>) -> Bucket {
    let Some(rate) = rate_bits else {
        return Bucket::default();
    };
    let burst = burst_bits.unwrap_or_else(|| Bandwidth::default_burst(rate)) / 8;
    Bucket {
        rate: rate / 8,
        burst,
        tokens: burst as i64,
        stamp: 0,
    }
}

/// What the datapath's entry holds for `bw` (no limits: all zero).
pub fn limits_of(bw: Option<&Bandwidth>) -> BwLimits {
    match bw {
        None => BwLimits::default(),
        Some(b) => BwLimits {
            ingress: bucket(b.ingress_rate, b.ingress_burst),
            egress: bucket(b.egress_rate, b.egress_burst),
        },
    }
}

impl Datapath {
    /// Sets endpoint `id`'s limits (a full bucket); `None` clears them.
    pub fn put_bandwidth(&mut self, id: u32, bw: Option<&Bandwidth>) -> Result<()> {
        let mut a = self.array(BW)?;
        a.set(id, &limits_of(bw), 0)?;
        Ok(())
    }

    /// Whether endpoint `id`'s entry has `bw`'s rates and bursts (its
    /// bucket levels are the datapath's own).
    pub fn has_bandwidth(&mut self, id: u32, bw: Option<&Bandwidth>) -> Result<bool> {
        let a = self.array(BW)?;
        let got: BwLimits = a.get(&id, 0)?;
        let want = limits_of(bw);
        let same = |g: &Bucket, w: &Bucket| g.rate == w.rate && g.burst == w.burst;
        Ok(same(&got.ingress, &want.ingress) && same(&got.egress, &want.egress))
    }
}
