//! [`Lab`]: a built scenario, and running one program on one frame in it
//! with BPF_PROG_TEST_RUN, counters read before and after.

use attach::datapath::{Datapath, PROG_HOST, PROG_RX, PROG_TX};
use attach_common::{
    Direction, Endpoint, EndpointStats, MacAddr, VERDICT_SLOTS, VERDICT_STRIDE, Verdict,
};
use aya::programs::{ProgramError, TestRun, TestRunOptions};

use super::{
    live::{Containers, LiveHook, Replay},
    outcome::*,
    *,
};

pub struct Parent {
    pub ifindex: u32,
    pub mac: MacAddr,
    pub passthru: bool,
}

/// A built scenario: devices in this thread's netns, maps pinned under a
/// private directory (removed on drop).
pub struct Lab {
    pub dp: Datapath,
    // Dropped after `dp`.
    _pins: PinGuard,
    pub parents: Vec<Parent>,
    /// Endpoint `i` (in the order added) has id `i + 1` and host veth `h{i+1}`.
    pub eps: Vec<Endpoint>,
    pub(crate) up: Vec<bool>,
    /// Endpoint `i`'s addresses, as [`Lab::set_ips`] put them.
    pub ips: Vec<Vec<std::net::IpAddr>>,
    /// A device in no map.
    pub stray: u32,
    /// Where the endpoints' container sides are once a frame has been run
    /// for real (see [`super::live`]); before, in the lab's namespace.
    pub(crate) containers: Option<Containers>,
    /// The hooks made for runs for real (see [`super::live`]).
    pub(crate) live_hooks: Vec<LiveHook>,
    /// The counters after the last run, when runs are chained (see
    /// [`Lab::chain_runs`]).
    chained: Option<Option<Snapshot>>,
}

/// Counters at one moment.
#[derive(Clone)]
struct Snapshot {
    eps: Vec<EndpointStats>,
    bystander: EndpointStats,
    verdicts: Vec<u64>,
}

fn sub(a: &EndpointStats, b: &EndpointStats) -> EndpointStats {
    EndpointStats {
        rx_packets: a.rx_packets.wrapping_sub(b.rx_packets),
        rx_bytes: a.rx_bytes.wrapping_sub(b.rx_bytes),
        tx_packets: a.tx_packets.wrapping_sub(b.tx_packets),
        tx_bytes: a.tx_bytes.wrapping_sub(b.tx_bytes),
        rx_broadcast: a.rx_broadcast.wrapping_sub(b.rx_broadcast),
        rx_multicast: a.rx_multicast.wrapping_sub(b.rx_multicast),
        tx_broadcast: a.tx_broadcast.wrapping_sub(b.tx_broadcast),
        tx_multicast: a.tx_multicast.wrapping_sub(b.tx_multicast),
        flood_copies: a.flood_copies.wrapping_sub(b.flood_copies),
        rx_dropped: a.rx_dropped.wrapping_sub(b.rx_dropped),
        tx_dropped: a.tx_dropped.wrapping_sub(b.tx_dropped),
    }
}

fn verdict_of(slot: usize) -> (Direction, Verdict) {
    let n = VERDICT_STRIDE as usize;
    (Direction::ALL[slot / n], Verdict::ALL[slot % n])
}

impl Lab {
    /// A built lab: endpoints `eps` (up where `up` says) on `parents`, maps
    /// in `dp` pinned under `pins`, and `x0` the device in no map.
    pub(crate) fn new(
        dp: Datapath,
        pins: PinGuard,
        parents: Vec<Parent>,
        eps: Vec<Endpoint>,
        up: Vec<bool>,
    ) -> Lab {
        Lab {
            dp,
            _pins: pins,
            parents,
            ips: vec![Vec::new(); eps.len()],
            eps,
            up,
            stray: ifindex("x0"),
            containers: None,
            live_hooks: Vec::new(),
            chained: None,
        }
    }

    /// Gives endpoint `i` the addresses `ips` (its `attach_ep_ips`).
    pub fn set_ips(&mut self, i: usize, ips: &[std::net::IpAddr]) {
        let h = self.eps[i].host_ifindex;
        self.dp
            .put_endpoint_ips(h, ips)
            .expect("endpoint addresses");
        self.ips[i] = ips.to_vec();
    }

    pub fn parent(&self) -> u32 {
        self.parents[0].ifindex
    }

    /// Takes each run's counters before from the last run's after, halving
    /// the map reads per run: for runs back to back with nothing else
    /// moving the counters (the fuzzer's million frames).
    pub fn chain_runs(&mut self) {
        self.chained = Some(None);
    }

    /// The counters before a run.
    fn before(&mut self) -> Snapshot {
        match self.chained.as_mut().and_then(Option::take) {
            Some(s) => s,
            None => self.snapshot(),
        }
    }

    /// The counters after a run (kept for the next when chained).
    fn after(&mut self) -> Snapshot {
        let s = self.snapshot();
        if let Some(last) = self.chained.as_mut() {
            *last = Some(s.clone());
        }
        s
    }

    fn snapshot(&mut self) -> Snapshot {
        let eps = self
            .eps
            .clone()
            .iter()
            .map(|e| self.dp.stats(e.id).expect("endpoint stats"))
            .collect();
        let bystander = self.dp.stats(0).expect("stats of id 0");
        let mut verdicts = vec![0; VERDICT_SLOTS as usize];
        for (d, v, n) in self.dp.verdicts().expect("verdicts") {
            verdicts[v.slot(d) as usize] = n;
        }
        Snapshot {
            eps,
            bystander,
            verdicts,
        }
    }

    fn outcome(
        &self,
        what: String,
        ret: u32,
        mark: Option<u32>,
        a: Snapshot,
        b: Snapshot,
    ) -> Outcome {
        let verdicts = b
            .verdicts
            .iter()
            .zip(&a.verdicts)
            .enumerate()
            .filter(|(_, (b, a))| b != a)
            .map(|(slot, (b, a))| {
                let (d, v) = verdict_of(slot);
                (d, v, b.wrapping_sub(*a))
            })
            .collect();
        Outcome {
            what,
            ret,
            mark,
            eps: b.eps.iter().zip(&a.eps).map(|(b, a)| sub(b, a)).collect(),
            names: self
                .eps
                .iter()
                .enumerate()
                .map(|(i, e)| format!("ep{i} ({} {})", mode_name(e.mode), fmt_mac(&e.mac)))
                .collect(),
            bystander: sub(&b.bystander, &a.bystander),
            verdicts,
            replay: None,
        }
    }

    /// Runs tc program `prog` on `frame`, as if it arrived on `ifindex` with
    /// `mark`; the kernel's error if it refuses the run.
    pub fn try_tc(
        &mut self,
        prog: &str,
        ifindex: u32,
        mark: u32,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(Outcome, std::time::Duration), ProgramError> {
        self.try_tc_ctx(prog, &skb_ctx(ifindex, mark), frame, repeat)
    }

    /// Runs tc program `prog` with this `struct __sk_buff`.
    pub fn try_tc_ctx(
        &mut self,
        prog: &str,
        ctx: &[u8],
        frame: &[u8],
        repeat: u32,
    ) -> Result<(Outcome, std::time::Duration), ProgramError> {
        let ifindex = u32::from_ne_bytes(ctx[SKB_IFINDEX..][..4].try_into().unwrap());
        let mark = u32::from_ne_bytes(ctx[SKB_MARK..][..4].try_into().unwrap());
        let mut ctx_out = [0u8; SKB_CTX_LEN];
        let mut data = vec![0u8; frame.len() + 256];
        let before = self.before();
        let r = self
            .dp
            .classifier(prog)
            .expect("load program")
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut data),
                ctx_in: Some(ctx),
                ctx_out: Some(&mut ctx_out),
                repeat,
                ..Default::default()
            })?;
        let after = self.after();
        data.truncate(r.data_size_out as usize);
        let mark_out = u32::from_ne_bytes(ctx_out[SKB_MARK..SKB_MARK + 4].try_into().unwrap());
        let what = format!(
            "{prog} on ifindex {ifindex} (mark {mark:#x}), {} bytes {}",
            frame.len(),
            frames::describe(frame)
        );
        let mut out = self.outcome(what, r.return_value, Some(mark_out), before, after);
        out.replay = Some(Replay::Tc {
            prog: prog.to_owned(),
            ifindex,
            mark,
            frame: frame.to_vec(),
            out: data,
        });
        Ok((out, r.duration))
    }

    /// Runs tc program `prog` on `frame` from `ifindex`; also returns the
    /// frame as the program left it.
    pub fn tc_out(&mut self, prog: &str, ifindex: u32, frame: &[u8]) -> (Outcome, Vec<u8>) {
        let ctx = skb_ctx(ifindex, 0);
        let mut ctx_out = [0u8; SKB_CTX_LEN];
        let mut data = vec![0u8; frame.len() + 256];
        let before = self.before();
        let r = self
            .dp
            .classifier(prog)
            .expect("load program")
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut data),
                ctx_in: Some(&ctx),
                ctx_out: Some(&mut ctx_out),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("test run of {prog} refused: {e:?}"));
        let after = self.after();
        data.truncate(r.data_size_out as usize);
        let mark = u32::from_ne_bytes(ctx_out[SKB_MARK..SKB_MARK + 4].try_into().unwrap());
        let what = format!(
            "{prog} on ifindex {ifindex}, {} bytes {}",
            frame.len(),
            frames::describe(frame)
        );
        let mut out = self.outcome(what, r.return_value, Some(mark), before, after);
        out.replay = Some(Replay::Tc {
            prog: prog.to_owned(),
            ifindex,
            mark: 0,
            frame: frame.to_vec(),
            out: data.clone(),
        });
        (out, data)
    }

    pub fn tc(&mut self, prog: &str, ifindex: u32, mark: u32, frame: &[u8]) -> Outcome {
        self.try_tc(prog, ifindex, mark, frame, 1)
            .unwrap_or_else(|e| panic!("test run of {prog} refused: {e:?}"))
            .0
    }

    /// `attach_rx` on parent 0: a frame from the wire.
    pub fn rx(&mut self, frame: &[u8]) -> Outcome {
        let p = self.parent();
        self.tc(PROG_RX, p, 0, frame)
    }

    /// `attach_tx` on endpoint `i`'s host veth: what that container sends.
    pub fn tx(&mut self, i: usize, frame: &[u8]) -> Outcome {
        let h = self.eps[i].host_ifindex;
        self.tc(PROG_TX, h, 0, frame)
    }

    /// `attach_host` on parent 0: what the node sends.
    pub fn host(&mut self, frame: &[u8]) -> Outcome {
        let p = self.parent();
        self.tc(PROG_HOST, p, 0, frame)
    }

    pub fn try_xdp(&mut self, ifindex: u32, frame: &[u8]) -> Result<Outcome, ProgramError> {
        let ctx = xdp_ctx(ifindex, frame.len());
        self.try_xdp_ctx(&ctx, frame)
    }

    /// `attach_rx_xdp` with this context.
    pub fn try_xdp_ctx(&mut self, ctx: &[u8], frame: &[u8]) -> Result<Outcome, ProgramError> {
        let ifindex = u32::from_ne_bytes(ctx[XDP_INGRESS_IFINDEX..][..4].try_into().unwrap());
        let before = self.before();
        let r = self
            .dp
            .xdp_program()
            .expect("load XDP")
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(ctx),
                ..Default::default()
            })?;
        let after = self.after();
        let what = format!(
            "attach_rx_xdp on ifindex {ifindex}, {} bytes {}",
            frame.len(),
            frames::describe(frame)
        );
        let mut out = self.outcome(what, r.return_value, None, before, after);
        out.replay = Some(Replay::Xdp {
            ctx: ctx.to_vec(),
            frame: frame.to_vec(),
        });
        Ok(out)
    }

    /// `attach_rx_xdp` on parent 0.
    pub fn xdp(&mut self, frame: &[u8]) -> Outcome {
        let p = self.parent();
        self.try_xdp(p, frame)
            .unwrap_or_else(|e| panic!("XDP test run refused: {e:?}"))
    }

    /// Frames the container side of endpoint `i` (the peer of its host
    /// veth) has received: proof that a clone was really transmitted.
    pub fn delivered(&self, i: usize) -> u64 {
        self.container_rx_packets(i)
    }

    /// [`Self::delivered`] of every endpoint.
    pub fn deliveries(&self) -> Vec<u64> {
        (0..self.eps.len()).map(|i| self.delivered(i)).collect()
    }
}
