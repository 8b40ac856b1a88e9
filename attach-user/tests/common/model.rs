//! The kernel's macvlan rules for one frame, written independently of the
//! programs: what [`Lab::rx`], [`Lab::tx`] and [`Lab::xdp`] must do, for
//! the tests that feed random frames.

use attach_common::{Direction, EndpointStats, MacAddr, Verdict};

use super::{lab::Lab, outcome::*, *};

impl Lab {
    /// Index of the endpoint of parent `parent_ifindex` with this MAC.
    fn find(&self, parent_ifindex: u32, mac: &MacAddr) -> Option<usize> {
        self.eps
            .iter()
            .position(|e| e.parent_ifindex == parent_ifindex && e.mac == *mac)
    }

    /// What `attach_rx` must do with `frame` on parent 0, by the kernel's
    /// macvlan rules (semantics.md), written independently of the programs.
    pub fn model_rx(&self, frame: &[u8]) -> Expect {
        let p = &self.parents[0];
        let len = frame.len() as u64;
        let dst: MacAddr = frame[0..6].try_into().unwrap();
        let src: MacAddr = frame[6..12].try_into().unwrap();
        if dst[0] & 1 != 0 {
            let got = if dst == frames::BROADCAST {
                rx_bc(len)
            } else {
                rx_mc(len)
            };
            let sender = self.find(p.ifindex, &src);
            if let Some(s) = sender
                && self.eps[s].mode & (MODE_PRIVATE | MODE_PASSTHRU) != 0
            {
                return Expect {
                    ret: TC_ACT_REDIRECT,
                    verdicts: vec![(Direction::Rx, Verdict::ToSender, 1)],
                    eps: vec![(s, got)],
                };
            }
            let eps = self
                .eps
                .iter()
                .enumerate()
                .filter(|(i, e)| {
                    e.parent_ifindex == p.ifindex
                        && match sender {
                            None => true,
                            Some(s) if s == *i => false,
                            Some(s) if self.eps[s].mode == MODE_VEPA => {
                                e.mode & (MODE_VEPA | MODE_BRIDGE) != 0
                            }
                            Some(_) => e.mode == MODE_VEPA,
                        }
                })
                .map(|(i, _)| {
                    let delta = if self.up[i] {
                        got
                    } else {
                        EndpointStats {
                            rx_dropped: 1,
                            ..Default::default()
                        }
                    };
                    (i, delta)
                })
                .collect::<Vec<_>>();
            let mut verdicts = vec![(Direction::Rx, Verdict::Flood, 1)];
            // A copy to a down port fails: counted by its reason too.
            let failed = eps.iter().filter(|(i, _)| !self.up[*i]).count() as u64;
            if failed > 0 {
                verdicts.push((Direction::Rx, Verdict::DropFloodCopy, failed));
            }
            return Expect {
                ret: TC_ACT_UNSPEC,
                verdicts,
                eps,
            };
        }
        let target = if p.passthru {
            self.eps.iter().position(|e| e.parent_ifindex == p.ifindex)
        } else {
            self.find(p.ifindex, &dst)
        };
        match target {
            Some(i) => Expect {
                ret: TC_ACT_REDIRECT,
                verdicts: vec![(Direction::Rx, Verdict::ToEndpoint, 1)],
                eps: vec![(i, rx_uc(len))],
            },
            None => Expect {
                ret: TC_ACT_UNSPEC,
                verdicts: vec![(Direction::Rx, Verdict::ToHost, 1)],
                eps: vec![],
            },
        }
    }

    /// What `attach_tx` must do with `frame` sent by endpoint `i`: the
    /// kernel's macvlan transmit rules (semantics.md) plus the two flags.
    pub fn model_tx(&self, i: usize, frame: &[u8]) -> Expect {
        self.model_tx_any(i, frame).swap_remove(0)
    }

    /// Every answer [`Self::model_tx`] allows: the guard's rules
    /// ([`Self::model_guard`]) may leave a malformed frame's fate open.
    pub fn model_tx_any(&self, i: usize, frame: &[u8]) -> Vec<Expect> {
        self.model_guard(i, frame)
            .into_iter()
            .map(|g| match g {
                Some(why) => Expect {
                    ret: TC_ACT_SHOT,
                    verdicts: vec![(Direction::Tx, why, 1)],
                    eps: vec![(i, tx_dropped())],
                },
                None => self.model_tx_passed(i, frame),
            })
            .collect()
    }

    /// What `attach_tx` must do with a frame endpoint `i` may send.
    fn model_tx_passed(&self, i: usize, frame: &[u8]) -> Expect {
        let ep = self.eps[i];
        let cfg = self
            .parents
            .iter()
            .find(|p| p.ifindex == ep.parent_ifindex)
            .expect("the sender's parent");
        let len = frame.len() as u64;
        let dst: MacAddr = frame[0..6].try_into().unwrap();
        let host_access = ep.flags & attach_common::EP_F_HOST_ACCESS != 0;
        let out = |mut verdicts: Vec<(Direction, Verdict, u64)>, eps| {
            verdicts.push((Direction::Tx, Verdict::ToParent, 1));
            Expect {
                ret: TC_ACT_REDIRECT,
                verdicts,
                eps,
            }
        };
        if dst[0] & 1 != 0 {
            let bc = dst == frames::BROADCAST;
            // Only a bridge port floods locally, to the other bridge ports.
            let rcv: Vec<usize> = (0..self.eps.len())
                .filter(|&j| {
                    ep.mode == MODE_BRIDGE
                        && j != i
                        && self.eps[j].mode == MODE_BRIDGE
                        && self.eps[j].parent_ifindex == ep.parent_ifindex
                })
                .collect();
            let copies = rcv.iter().filter(|&&j| self.up[j]).count() as u64;
            let mut eps: Vec<_> = rcv
                .iter()
                .map(|&j| {
                    let d = match (self.up[j], bc) {
                        (false, _) => EndpointStats {
                            rx_dropped: 1,
                            ..Default::default()
                        },
                        (true, true) => rx_bc(len),
                        (true, false) => rx_mc(len),
                    };
                    (j, d)
                })
                .collect();
            eps.push((
                i,
                if bc {
                    tx_bc(len, copies)
                } else {
                    tx_mc(len, copies)
                },
            ));
            let mut v = if host_access {
                vec![(Direction::Tx, Verdict::ToHost, 1)]
            } else {
                vec![]
            };
            let failed = rcv.len() as u64 - copies;
            if failed > 0 {
                v.push((Direction::Tx, Verdict::DropFloodCopy, failed));
            }
            return out(v, eps);
        }
        if host_access && dst == cfg.mac {
            return Expect {
                ret: TC_ACT_REDIRECT,
                verdicts: vec![(Direction::Tx, Verdict::ToHost, 1)],
                eps: vec![(i, tx_uc(len))],
            };
        }
        if ep.mode == MODE_BRIDGE
            && let Some(j) = self.find(ep.parent_ifindex, &dst)
            && self.eps[j].mode == MODE_BRIDGE
        {
            return Expect {
                ret: TC_ACT_REDIRECT,
                verdicts: vec![(Direction::Tx, Verdict::ToEndpoint, 1)],
                eps: vec![(i, tx_uc(len)), (j, rx_uc(len))],
            };
        }
        out(vec![], vec![(i, tx_uc(len))])
    }

    /// What `attach_rx_xdp` must do on parent 0: unicast to an endpoint is
    /// redirected, everything else passes (to tc) uncounted.
    pub fn model_xdp(&self, frame: &[u8]) -> Expect {
        let pass = Expect {
            ret: XDP_PASS,
            verdicts: vec![],
            eps: vec![],
        };
        if frame.len() < 14 || frame[0] & 1 != 0 {
            return pass;
        }
        match self.model_rx(frame) {
            Expect {
                ret: TC_ACT_REDIRECT,
                verdicts,
                eps,
            } => Expect {
                ret: XDP_REDIRECT,
                verdicts,
                eps,
            },
            _ => pass,
        }
    }
}
