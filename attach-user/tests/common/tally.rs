//! The fuzzers' tally: how many frames to run and from which seed
//! (`ATTACH_FUZZ_FRAMES`, `ATTACH_FUZZ_SEED`), running one frame through a
//! tc program, judging it against a model's answers, and the summary line
//! each mode prints (and fails on a disagreement).

use std::time::Instant;

use super::{EINVAL, errno, fuzz::hex, lab::Lab, outcome::*};

pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let r = match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => v.parse(),
            };
            r.unwrap_or_else(|_| panic!("{name}={v}: not a number"))
        }
        Err(_) => default,
    }
}

pub fn frames() -> u64 {
    env_u64("ATTACH_FUZZ_FRAMES", 3000)
}

pub fn seed() -> u64 {
    env_u64("ATTACH_FUZZ_SEED", 0xf022_5eed)
}

/// Whether `f` is IPv4 or IPv6 by its Ethernet type with a header shorter
/// than the fixed one.
pub fn short_ip(f: &[u8]) -> bool {
    match u16::from_be_bytes([f[12], f[13]]) {
        0x0800 => f.len() < 14 + 20,
        0x86dd => f.len() < 14 + 40,
        _ => false,
    }
}

/// Frames run and disagreements with the model, the first one described.
pub struct Tally {
    mode: &'static str,
    frames: u64,
    bad: u64,
    skipped: u64,
    first: Option<String>,
    started: Instant,
}

impl Tally {
    pub fn new(mode: &'static str) -> Self {
        Tally {
            mode,
            frames: 0,
            bad: 0,
            skipped: 0,
            first: None,
            started: Instant::now(),
        }
    }

    /// Runs tc program `prog` on `frame` from `ifindex`. None if the
    /// kernel refuses the run because the frame's IP header is cut short
    /// (it checks that before running an skb program): counted as skipped.
    pub fn run(
        &mut self,
        lab: &mut Lab,
        prog: &str,
        ifindex: u32,
        frame: &[u8],
    ) -> Option<Outcome> {
        match lab.try_tc(prog, ifindex, 0, frame, 1) {
            Ok((o, _)) => Some(o),
            Err(e) if errno(&e) == EINVAL && short_ip(frame) => {
                self.skipped += 1;
                None
            }
            Err(e) => panic!(
                "test run of {prog} refused: {e:?}\n    frame: {}",
                hex(frame)
            ),
        }
    }

    /// Judges one run: it must match one of the model's answers.
    pub fn judge(&mut self, k: u64, frame: &[u8], got: &Outcome, want: &[Expect]) {
        self.frames += 1;
        if want.iter().any(|w| got.diff(w).is_empty()) {
            return;
        }
        self.bad += 1;
        if self.first.is_none() || std::env::var_os("ATTACH_FUZZ_ALL").is_some() {
            let first = self.first.take().map(|f| f + "\n").unwrap_or_default();
            self.first = Some(
                first
                    + &format!(
                        "frame {k}: {}\n    frame: {}\n    model: {:?}\n    program: return {}, verdicts {}, {}",
                        got.what,
                        hex(frame),
                        want,
                        ret_name(got.ret),
                        fmt_verdicts(&got.verdicts),
                        got.diff(&want[0]).join("; ")
                    ),
            );
        }
    }

    pub fn finish(self) {
        let secs = self.started.elapsed().as_secs_f64();
        println!(
            "fuzz {}: {} frames (seed {:#x}), {} disagreements, {} refused by the kernel (IP header cut short), {:.1} s ({:.0} frames/s)",
            self.mode,
            self.frames,
            seed(),
            self.bad,
            self.skipped,
            secs,
            self.frames as f64 / secs
        );
        assert_eq!(
            self.bad,
            0,
            "fuzz {}: {} of {} frames disagree with the model; first:\n{}",
            self.mode,
            self.bad,
            self.frames,
            self.first.unwrap_or_default()
        );
    }
}
