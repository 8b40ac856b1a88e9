//! [`Outcome`]: what one program run did, checked against what a test
//! expects; and the counter deltas one frame makes.

use attach_common::{Direction, EndpointStats, Verdict};

pub use super::live::Target;
use super::{
    lab::Lab,
    live::{Arrivals, Replay, describe_arrivals},
    *,
};

pub fn fmt_verdicts(v: &[(Direction, Verdict, u64)]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(|(d, v, n)| format!("{}/{}={n}", d.name(), v.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Expected result of one run: return code, the verdict counters that move,
/// the endpoints whose counters move (by index) and by how much.
#[derive(Debug)]
pub struct Expect {
    pub ret: u32,
    pub verdicts: Vec<(Direction, Verdict, u64)>,
    pub eps: Vec<(usize, EndpointStats)>,
}

/// What one run did.
#[derive(Debug)]
pub struct Outcome {
    pub what: String,
    pub ret: u32,
    /// `__sk_buff.mark` after the run (tc only).
    pub mark: Option<u32>,
    /// Counter deltas by endpoint index.
    pub eps: Vec<EndpointStats>,
    pub(crate) names: Vec<String>,
    /// Delta of id 0, which no endpoint has.
    pub bystander: EndpointStats,
    /// Verdict counters that moved, in slot order.
    pub verdicts: Vec<(Direction, Verdict, u64)>,
    /// The run, to run it again for real ([`Self::arrives_at`]).
    pub replay: Option<Replay>,
}

pub fn ret_name(r: u32) -> String {
    match r {
        TC_ACT_UNSPEC => "TC_ACT_UNSPEC".into(),
        r => format!("{r}"),
    }
}

impl Outcome {
    /// Differences from `e`, one line each (empty: as expected).
    pub fn diff(&self, e: &Expect) -> Vec<String> {
        let mut out = Vec::new();
        if self.ret != e.ret {
            out.push(format!(
                "return {} (expected {})",
                ret_name(self.ret),
                ret_name(e.ret)
            ));
        }
        let mut want: Vec<_> = e.verdicts.iter().filter(|v| v.2 != 0).copied().collect();
        want.sort_by_key(|(d, v, _)| v.slot(*d));
        if want != self.verdicts {
            out.push(format!(
                "verdicts moved: {} (expected {})",
                fmt_verdicts(&self.verdicts),
                fmt_verdicts(&want)
            ));
        }
        for (i, got) in self.eps.iter().enumerate() {
            let want = e.eps.iter().filter(|(j, _)| *j == i).fold(
                EndpointStats::default(),
                |mut acc, (_, s)| {
                    acc.add(s);
                    acc
                },
            );
            if *got != want {
                out.push(format!(
                    "{} counters moved by {got:?} (expected {want:?})",
                    self.names[i]
                ));
            }
        }
        if self.bystander != EndpointStats::default() {
            out.push(format!("id 0 (no endpoint) moved by {:?}", self.bystander));
        }
        out
    }

    #[track_caller]
    pub fn expect(&self, e: Expect) -> &Self {
        let d = self.diff(&e);
        assert!(d.is_empty(), "{}:\n  {}", self.what, d.join("\n  "));
        self
    }

    #[track_caller]
    pub fn ret(&self, want: u32) -> &Self {
        assert_eq!(
            self.ret,
            want,
            "{}: return {} (expected {})",
            self.what,
            ret_name(self.ret),
            ret_name(want)
        );
        self
    }

    /// Exactly these verdict counters moved, by these amounts.
    #[track_caller]
    pub fn verdicts(&self, want: &[(Direction, Verdict, u64)]) -> &Self {
        let mut want = want.to_vec();
        want.sort_by_key(|(d, v, _)| v.slot(*d));
        assert!(
            want == self.verdicts,
            "{}: verdicts moved: {} (expected {})",
            self.what,
            fmt_verdicts(&self.verdicts),
            fmt_verdicts(&want)
        );
        self
    }

    /// Exactly these endpoints' counters moved, by these amounts.
    #[track_caller]
    pub fn only(&self, want: &[(usize, EndpointStats)]) -> &Self {
        let e = Expect {
            ret: self.ret,
            verdicts: self.verdicts.clone(),
            eps: want.to_vec(),
        };
        let d = self.diff(&e);
        assert!(d.is_empty(), "{}:\n  {}", self.what, d.join("\n  "));
        self
    }

    /// No endpoint counter and no verdict counter moved.
    #[track_caller]
    pub fn nothing_counted(&self) -> &Self {
        self.verdicts(&[]).only(&[])
    }

    /// The frame, run again for real (see [`super::live`]), arrives at
    /// `want` once, as the test run left it, and at no other place of the
    /// lab: where a redirect really sends it, seen on the devices, not read
    /// from the map value the redirect's ifindex came from. An XDP run is
    /// run again twice where the kernel can: with the program attached to
    /// the device, and in live-frames mode.
    #[track_caller]
    pub fn arrives_at(&self, lab: &mut Lab, want: Target) -> &Self {
        let expected = match self.replay() {
            Replay::Tc { out, .. } => out.clone(),
            Replay::Xdp { ctx, frame } => {
                let data = u32::from_ne_bytes(ctx[XDP_DATA..][..4].try_into().unwrap());
                frame[data as usize..].to_vec()
            }
        };
        self.arrives_as(lab, want, &expected)
    }

    #[track_caller]
    fn replay(&self) -> &Replay {
        self.replay
            .as_ref()
            .unwrap_or_else(|| panic!("{}: this run cannot be run again", self.what))
    }

    /// [`Self::arrives_at`], arriving as `expected`: for what the kernel
    /// changes after the program (the neighbour's MAC of a
    /// `bpf_redirect_neigh`).
    #[track_caller]
    pub fn arrives_as(&self, lab: &mut Lab, want: Target, expected: &[u8]) -> &Self {
        let replay = self.replay();
        let sent = match replay {
            Replay::Tc { frame, .. } | Replay::Xdp { frame, .. } => frame.clone(),
        };
        // Exactly one copy where it is wanted, and no copy (as sent or as
        // the program left it) anywhere else. Other frames do not count:
        // the node's stack answers what it is given (an ICMP error, the
        // ARP request before it).
        let is_copy = |f: &[u8]| f == expected || f == sent.as_slice();
        let check = |how: &str, got: Arrivals| {
            // The place must be watched (not the device the frame is sent
            // from or to), or nothing could fail.
            assert!(
                got.iter().any(|(t, _, _)| *t == want),
                "{}: {want:?} is not a place this run can be seen at",
                self.what
            );
            let ok = got.iter().all(|(t, _, f)| {
                let copies = f.iter().filter(|f| **f == expected || **f == sent).count();
                if *t == want {
                    copies == 1 && f.iter().any(|f| f == expected)
                } else {
                    copies == 0
                }
            });
            assert!(
                ok,
                "{}: {how}, expected once at {want:?} as {} bytes {}; arrived: {}",
                self.what,
                expected.len(),
                frames::describe(expected),
                describe_arrivals(&got)
            );
        };
        check("run for real", lab.arrivals(replay, &is_copy));
        if let Replay::Xdp { .. } = replay {
            match lab.live_frames() {
                Ok(()) => check(
                    "in live-frames mode",
                    lab.live_frame_arrivals(replay, &is_copy),
                ),
                // Not silent: the run's output says what was not seen.
                Err(why) => eprintln!("NOT OBSERVED in live-frames mode ({}): {why}", self.what),
            }
        }
        self
    }

    #[track_caller]
    pub fn mark(&self, want: u32) -> &Self {
        assert_eq!(self.mark, Some(want), "{}: mark after the run", self.what);
        self
    }
}

// Expected counter deltas of one frame of `len` bytes.

pub fn rx_uc(len: u64) -> EndpointStats {
    EndpointStats {
        rx_packets: 1,
        rx_bytes: len,
        ..Default::default()
    }
}

pub fn rx_bc(len: u64) -> EndpointStats {
    EndpointStats {
        rx_broadcast: 1,
        ..rx_uc(len)
    }
}

pub fn rx_mc(len: u64) -> EndpointStats {
    EndpointStats {
        rx_multicast: 1,
        ..rx_uc(len)
    }
}

pub fn tx_uc(len: u64) -> EndpointStats {
    EndpointStats {
        tx_packets: 1,
        tx_bytes: len,
        ..Default::default()
    }
}

pub fn tx_bc(len: u64, copies: u64) -> EndpointStats {
    EndpointStats {
        tx_broadcast: 1,
        flood_copies: copies,
        ..tx_uc(len)
    }
}

pub fn tx_mc(len: u64, copies: u64) -> EndpointStats {
    EndpointStats {
        tx_multicast: 1,
        flood_copies: copies,
        ..tx_uc(len)
    }
}

pub fn tx_dropped() -> EndpointStats {
    EndpointStats {
        tx_dropped: 1,
        ..Default::default()
    }
}
