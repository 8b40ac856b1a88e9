//! An endpoint's rate limits, as asked for (`--ingress-rate`,
//! `--ingress-burst`, `--egress-rate`, `--egress-burst`; in CNI,
//! `runtimeConfig.bandwidth`) and recorded: bits per second and bits, as the
//! CNI `bandwidth` capability gives them. Ingress is what reaches the
//! container, egress what it sends. Our programs enforce them
//! (`attach_bw`, see `datapath::bandwidth`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Fastest rate, bits per second (what a bucket holds in its 64 bits).
pub const MAX_RATE: u64 = attach_common::BW_MAX_RATE * 8;
/// Smallest burst a default gives, bits: a GSO packet (64 KiB) at once.
const MIN_DEFAULT_BURST: u64 = 64 * 1024 * 8;

/// The limits of one endpoint; a direction without a rate is not limited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bandwidth {
    /// Bits per second into the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_rate: Option<u64>,
    /// Bits the ingress limit lets through at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_burst: Option<u64>,
    /// Bits per second out of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_rate: Option<u64>,
    /// Bits the egress limit lets through at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_burst: Option<u64>,
}

impl Bandwidth {
    /// The limits a request asks for, if any; checked, and each burst
    /// given (a rate's default burst when the request has none).
    pub fn of(
        ingress_rate: Option<u64>,
        ingress_burst: Option<u64>,
        egress_rate: Option<u64>,
        egress_burst: Option<u64>,
    ) -> Result<Option<Bandwidth>> {
        let mut b = Bandwidth {
            ingress_rate,
            ingress_burst,
            egress_rate,
            egress_burst,
        };
        if b == Bandwidth::default() {
            return Ok(None);
        }
        for (way, rate, burst) in [
            ("ingress", b.ingress_rate, &mut b.ingress_burst),
            ("egress", b.egress_rate, &mut b.egress_burst),
        ] {
            match (rate, *burst) {
                (None, Some(bits)) => {
                    return Err(Error::invalid(format!(
                        "--{way}-burst {bits} without --{way}-rate: a burst is of a rate"
                    )));
                }
                (Some(0), _) => {
                    return Err(Error::invalid(format!(
                        "--{way}-rate 0: leave it out for no limit"
                    )));
                }
                (Some(r), _) if r > MAX_RATE => {
                    return Err(Error::invalid(format!(
                        "--{way}-rate {r}: at most {MAX_RATE} bits/s"
                    )));
                }
                (Some(_), Some(bits)) if bits < 8 * 1500 => {
                    return Err(Error::invalid(format!(
                        "--{way}-burst {bits}: at least one full frame, {} bits",
                        8 * 1500
                    )));
                }
                (Some(r), None) => *burst = Some(Self::default_burst(r)),
                _ => {}
            }
        }
        Ok(Some(b))
    }

    /// Half a second at `rate`, at least a GSO packet: what a TCP flow
    /// needs to reach the rate through a policer (measured, at 40 Mbit/s:
    /// a tenth of a second's burst let it reach half the rate, 0.4 s all
    /// of it).
    pub fn default_burst(rate: u64) -> u64 {
        (rate / 2).max(MIN_DEFAULT_BURST)
    }
}

/// A rate or burst from the command line: bits, with an optional `k`, `M`
/// or `G` (thousands, as `tc` reads `kbit`, `mbit`, `gbit`).
pub fn parse_bits(s: &str) -> std::result::Result<u64, String> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1_000),
        Some((i, 'm' | 'M')) => (&s[..i], 1_000_000),
        Some((i, 'g' | 'G')) => (&s[..i], 1_000_000_000),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a number of bits (like 10000000 or 10M)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_with_their_suffixes() {
        assert_eq!(parse_bits("1500"), Ok(1500));
        assert_eq!(parse_bits("10M"), Ok(10_000_000));
        assert_eq!(parse_bits("2k"), Ok(2_000));
        assert_eq!(parse_bits("1G"), Ok(1_000_000_000));
        assert!(parse_bits("fast").is_err());
        assert!(parse_bits("").is_err());
    }

    #[test]
    fn limits_are_checked_and_given_bursts() {
        assert_eq!(Bandwidth::of(None, None, None, None).unwrap(), None);
        let b = Bandwidth::of(Some(80_000_000), None, None, None)
            .unwrap()
            .unwrap();
        assert_eq!(b.ingress_burst, Some(40_000_000));
        assert_eq!(b.egress_rate, None);
        let small = Bandwidth::of(None, None, Some(500_000), None)
            .unwrap()
            .unwrap();
        assert_eq!(small.egress_burst, Some(MIN_DEFAULT_BURST));
        for bad in [
            Bandwidth::of(None, Some(100_000), None, None),
            Bandwidth::of(Some(0), None, None, None),
            Bandwidth::of(Some(MAX_RATE + 1), None, None, None),
            Bandwidth::of(None, None, Some(1_000_000), Some(100)),
        ] {
            assert!(bad.is_err(), "{bad:?}");
        }
    }
}
