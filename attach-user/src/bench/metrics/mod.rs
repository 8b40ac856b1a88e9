//! The metrics, one module each. Every datapath metric measures the
//! contenders interleaved, round by round, after one discarded warm-up run
//! of each.

pub mod m1;
pub mod m2;
pub mod m3;
pub mod m4;
pub mod m5;
pub mod m6;
pub mod m7;
pub mod m7_scale;

mod harness;

pub use harness::{Ctx, client, fmt_value, iperf_json, server, watched};

use super::stats::Case;

/// Every case of every metric (M6 has a shape of its own, see `m6`).
pub fn all_cases() -> Vec<Case> {
    let mut v = vec![m1::CASE, m2::CASE];
    v.extend(m3::CASES);
    v.push(m4::CASE);
    v.extend(m5::CASES);
    v.extend(m7::cases());
    v.push(m7_scale::CASE);
    v.push(m7_scale::CPU_CASE);
    v
}
