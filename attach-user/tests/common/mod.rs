//! Harness for running the datapath programs with BPF_PROG_TEST_RUN.
//!
//! Every test runs on its own thread in a fresh network namespace
//! ([`in_netns`]), builds its devices and maps from a [`Scenario`], runs one
//! program on one frame ([`Lab::rx`], [`Lab::tx`], ...), and checks the
//! [`Outcome`]: the return code, the verdict counters that moved, and the
//! per-endpoint counters that moved (every endpoint not named must not move).

use std::{
    ffi::CString,
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use attach::datapath::{Datapath, PROG_HOST, PROG_RX, PROG_TX};
use attach_common::{
    Direction, Endpoint, EndpointStats, MODE_BRIDGE, MODE_PASSTHRU, MODE_PRIVATE, MODE_VEPA,
    MacAddr, PARENT_F_PASSTHRU, ParentCfg, VERDICT_SLOTS, VERDICT_STRIDE, Verdict,
};
use aya::programs::{ProgramError, TestRun, TestRunOptions};

pub mod bridge;
pub mod frames;
pub mod ipvlan;
pub mod nested;
pub mod router;

/// tc return codes (`TC_ACT_UNSPEC` is -1, seen as a u32).
pub const TC_ACT_UNSPEC: u32 = u32::MAX;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;
/// XDP return codes.
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

/// `struct __sk_buff` (UAPI): size and the offsets of the fields a test run
/// may set (everything else must be zero or the kernel answers EINVAL).
pub const SKB_CTX_LEN: usize = 192;
pub const SKB_LEN: usize = 0;
pub const SKB_MARK: usize = 8;
pub const SKB_IFINDEX: usize = 40;
pub const SKB_DATA_END: usize = 80;
/// `struct xdp_md` (UAPI).
pub const XDP_MD_LEN: usize = 24;
pub const XDP_DATA: usize = 0;
pub const XDP_DATA_END: usize = 4;
pub const XDP_DATA_META: usize = 8;
pub const XDP_INGRESS_IFINDEX: usize = 12;
pub const XDP_RX_QUEUE_INDEX: usize = 16;
pub const XDP_EGRESS_IFINDEX: usize = 20;

/// Writes `v` at byte `off` of a context.
pub fn put_u32(ctx: &mut [u8], off: usize, v: u32) {
    ctx[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

/// A `struct __sk_buff` for a tc test run: arrived on `ifindex` with `mark`.
pub fn skb_ctx(ifindex: u32, mark: u32) -> [u8; SKB_CTX_LEN] {
    let mut ctx = [0u8; SKB_CTX_LEN];
    put_u32(&mut ctx, SKB_MARK, mark);
    put_u32(&mut ctx, SKB_IFINDEX, ifindex);
    ctx
}

/// A `struct xdp_md` for an XDP test run of a `len`-byte frame on
/// `ifindex`, rx queue 0: data 0, data_end `len` (all linear), no metadata.
pub fn xdp_ctx(ifindex: u32, len: usize) -> [u8; XDP_MD_LEN] {
    let mut ctx = [0u8; XDP_MD_LEN];
    put_u32(&mut ctx, XDP_DATA_END, len as u32);
    put_u32(&mut ctx, XDP_INGRESS_IFINDEX, ifindex);
    ctx
}

/// The errno of a refused test run.
pub fn errno(e: &ProgramError) -> i32 {
    match e {
        ProgramError::SyscallError(e) => e.io_error.raw_os_error().unwrap_or(0),
        e => panic!("not a syscall error: {e:?}"),
    }
}

/// Runs `f` on a new thread that has its own network namespace: devices made
/// there (by `ip` children of that thread) vanish with the thread. A panic in
/// `f` fails the calling test.
pub fn in_netns<F: FnOnce() + Send + 'static>(f: F) {
    let name = std::thread::current()
        .name()
        .unwrap_or("netns-test")
        .to_owned();
    let t = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            // SAFETY: plain syscall; changes only this thread's namespace.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "unshare(CLONE_NEWNET): {}",
                std::io::Error::last_os_error()
            );
            f()
        })
        .expect("spawn test thread");
    if let Err(panic) = t.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Runs `ip -batch -` with these commands, in the calling thread's netns.
pub(crate) fn ip_batch(cmds: &[String]) {
    run_with_input("ip", &["-batch", "-"], &cmds.join("\n"));
}

/// Runs `program args` with `input` on its stdin, in the calling thread's
/// netns; a failure fails the test with the program's stderr.
pub(crate) fn run_with_input(program: &str, args: &[&str], input: &str) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .unwrap_or_else(|e| panic!("write to {program}: {e}"));
    let out = child.wait_with_output().expect("wait for child");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\ninput:\n{input}",
        String::from_utf8_lossy(&out.stderr),
    );
}

/// Interface index in the calling thread's netns (sysfs would show the netns
/// /sys was mounted in, not ours).
pub fn ifindex(name: &str) -> u32 {
    let c = CString::new(name).expect("no NUL in a device name");
    // SAFETY: valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(i, 0, "no device {name} in this netns");
    i
}

pub fn fmt_mac(m: &MacAddr) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn mode_name(mode: u8) -> &'static str {
    match mode {
        MODE_PRIVATE => "private",
        MODE_VEPA => "vepa",
        MODE_BRIDGE => "bridge",
        MODE_PASSTHRU => "passthru",
        _ => "?",
    }
}

/// A tiny xorshift64* generator: reproducible fuzz input without a crate.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub fn mac(&mut self) -> MacAddr {
        let mut m = [0; 6];
        self.fill(&mut m);
        m
    }
}

/// Removes a test's pin directory when dropped, panic or not.
pub(crate) struct PinGuard(pub(crate) PathBuf);

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Err(e) = Datapath::remove_pins(&self.0) {
            eprintln!("cleanup: {e}");
        }
    }
}

pub(crate) fn pin_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    PathBuf::from(format!(
        "/sys/fs/bpf/attach-test-{}-{n}",
        std::process::id()
    ))
}

struct ParentSpec {
    mac: MacAddr,
    passthru: bool,
}

struct EpSpec {
    parent: usize,
    mode: u8,
    mac: MacAddr,
    flags: u8,
    up: bool,
}

/// What a test needs: parents with endpoints. Device names: parents `p0`,
/// `p1`, ... (veth pairs with `p0peer`, ...), endpoint host veths `h1`, `h2`,
/// ... (peers `h1peer`, ... carry the endpoint MACs), and a stray veth `x0`
/// the datapath knows nothing about.
#[derive(Default)]
pub struct Scenario {
    parents: Vec<ParentSpec>,
    eps: Vec<EpSpec>,
}

/// MAC of parent `i`.
pub const fn parent_mac(i: usize) -> MacAddr {
    [0x02, 0xaa, 0, 0, 0, i as u8 + 1]
}

impl Scenario {
    pub fn new() -> Self {
        Self::default()
    }

    /// A parent with macvlan-like endpoints.
    pub fn parent(mut self) -> Self {
        let i = self.parents.len();
        self.parents.push(ParentSpec {
            mac: parent_mac(i),
            passthru: false,
        });
        self
    }

    /// A parent whose one endpoint (add it next, `MODE_PASSTHRU`) takes every
    /// unicast frame.
    pub fn passthru_parent(mut self) -> Self {
        let i = self.parents.len();
        self.parents.push(ParentSpec {
            mac: parent_mac(i),
            passthru: true,
        });
        self
    }

    /// An endpoint on the last parent.
    pub fn endpoint(self, mode: u8, mac: MacAddr) -> Self {
        self.endpoint_with(mode, mac, 0)
    }

    /// An endpoint on the last parent, with `EP_F_*` flags.
    pub fn endpoint_with(mut self, mode: u8, mac: MacAddr, flags: u8) -> Self {
        assert!(!self.parents.is_empty(), "add a parent first");
        self.eps.push(EpSpec {
            parent: self.parents.len() - 1,
            mode,
            mac,
            flags,
            up: true,
        });
        self
    }

    /// Leaves the last endpoint's host veth down.
    pub fn down(mut self) -> Self {
        self.eps.last_mut().expect("an endpoint").up = false;
        self
    }

    /// Makes the devices (in the calling thread's netns) and fills the maps.
    pub fn build(self) -> Lab {
        // No IPv6 on the new devices: their own router solicitations, DAD
        // and MLD reports would add frames to the delivery counts.
        for knob in ["all", "default"] {
            let path = format!("/proc/sys/net/ipv6/conf/{knob}/disable_ipv6");
            std::fs::write(&path, "1").unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        let mut cmds = Vec::new();
        for (i, p) in self.parents.iter().enumerate() {
            cmds.push(format!(
                "link add p{i} address {} type veth peer name p{i}peer",
                fmt_mac(&p.mac)
            ));
            cmds.push(format!("link set p{i} up"));
            cmds.push(format!("link set p{i}peer up"));
        }
        for (j, e) in self.eps.iter().enumerate() {
            let n = j + 1;
            cmds.push(format!(
                "link add h{n} type veth peer name h{n}peer address {}",
                fmt_mac(&e.mac)
            ));
            cmds.push(format!("link set h{n}peer up"));
            if e.up {
                cmds.push(format!("link set h{n} up"));
            }
        }
        cmds.push("link add x0 type veth peer name x0peer".into());
        cmds.push("link set x0 up".into());
        cmds.push("link set x0peer up".into());
        ip_batch(&cmds);

        let parents: Vec<Parent> = self
            .parents
            .iter()
            .enumerate()
            .map(|(i, p)| Parent {
                ifindex: ifindex(&format!("p{i}")),
                mac: p.mac,
                passthru: p.passthru,
            })
            .collect();
        let eps: Vec<Endpoint> = self
            .eps
            .iter()
            .enumerate()
            .map(|(j, e)| Endpoint {
                host_ifindex: ifindex(&format!("h{}", j + 1)),
                parent_ifindex: parents[e.parent].ifindex,
                // Ids start at 1: id 0 is a bystander no frame may touch.
                id: j as u32 + 1,
                mac: e.mac,
                mode: e.mode,
                flags: e.flags,
            })
            .collect();

        let dir = pin_dir();
        let pins = PinGuard(dir.clone());
        let mut dp = Datapath::open(&dir).expect("open the datapath");
        for ep in &eps {
            dp.put_endpoint(ep).expect("put_endpoint");
        }
        for (slot, p) in parents.iter().enumerate() {
            let row: Vec<Endpoint> = eps
                .iter()
                .filter(|e| e.parent_ifindex == p.ifindex)
                .copied()
                .collect();
            dp.write_flood_row(slot as u32, &row)
                .expect("write_flood_row");
            let mut cfg = ParentCfg {
                slot: slot as u32,
                nports: row.len() as u32,
                mac: p.mac,
                ..Default::default()
            };
            if p.passthru {
                assert_eq!(row.len(), 1, "a passthru parent has one endpoint");
                cfg.flags = PARENT_F_PASSTHRU;
                cfg.passthru = row[0];
            }
            dp.put_parent(p.ifindex, &cfg).expect("put_parent");
        }
        Lab {
            dp,
            _pins: pins,
            up: self.eps.iter().map(|e| e.up).collect(),
            parents,
            eps,
            stray: ifindex("x0"),
        }
    }
}

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
    up: Vec<bool>,
    /// A device in no map.
    pub stray: u32,
}

/// Counters at one moment.
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

pub fn fmt_verdicts(v: &[(Direction, Verdict, u64)]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(|(d, v, n)| format!("{}/{}={n}", d.name(), v.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Lab {
    pub fn parent(&self) -> u32 {
        self.parents[0].ifindex
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
        let before = self.snapshot();
        let r = self
            .dp
            .classifier(prog)
            .expect("load program")
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(ctx),
                ctx_out: Some(&mut ctx_out),
                repeat,
                ..Default::default()
            })?;
        let after = self.snapshot();
        let mark_out = u32::from_ne_bytes(ctx_out[SKB_MARK..SKB_MARK + 4].try_into().unwrap());
        let what = format!(
            "{prog} on ifindex {ifindex} (mark {mark:#x}), {} bytes {}",
            frame.len(),
            frames::describe(frame)
        );
        Ok((
            self.outcome(what, r.return_value, Some(mark_out), before, after),
            r.duration,
        ))
    }

    /// Runs tc program `prog` on `frame` from `ifindex`; also returns the
    /// frame as the program left it.
    pub fn tc_out(&mut self, prog: &str, ifindex: u32, frame: &[u8]) -> (Outcome, Vec<u8>) {
        let ctx = skb_ctx(ifindex, 0);
        let mut ctx_out = [0u8; SKB_CTX_LEN];
        let mut data = vec![0u8; frame.len() + 256];
        let before = self.snapshot();
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
        let after = self.snapshot();
        data.truncate(r.data_size_out as usize);
        let mark = u32::from_ne_bytes(ctx_out[SKB_MARK..SKB_MARK + 4].try_into().unwrap());
        let what = format!(
            "{prog} on ifindex {ifindex}, {} bytes {}",
            frame.len(),
            frames::describe(frame)
        );
        (
            self.outcome(what, r.return_value, Some(mark), before, after),
            data,
        )
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
        let before = self.snapshot();
        let r = self
            .dp
            .xdp_program()
            .expect("load XDP")
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(ctx),
                ..Default::default()
            })?;
        let after = self.snapshot();
        let what = format!(
            "attach_rx_xdp on ifindex {ifindex}, {} bytes {}",
            frame.len(),
            frames::describe(frame)
        );
        Ok(self.outcome(what, r.return_value, None, before, after))
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
        let name = format!("h{}peer", i + 1);
        let out = Command::new("ip")
            .args(["-j", "-s", "link", "show", "dev", &name])
            .output()
            .expect("run ip");
        assert!(out.status.success(), "ip link show {name}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
        v[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .unwrap_or_else(|| panic!("no rx packet count for {name}: {v}"))
    }

    /// [`Self::delivered`] of every endpoint.
    pub fn deliveries(&self) -> Vec<u64> {
        (0..self.eps.len()).map(|i| self.delivered(i)).collect()
    }

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
        let ep = self.eps[i];
        let cfg = self
            .parents
            .iter()
            .find(|p| p.ifindex == ep.parent_ifindex)
            .expect("the sender's parent");
        let len = frame.len() as u64;
        let dst: MacAddr = frame[0..6].try_into().unwrap();
        let src: MacAddr = frame[6..12].try_into().unwrap();
        if ep.flags & attach_common::EP_F_SPOOFCHK != 0 && src != ep.mac {
            return Expect {
                ret: TC_ACT_SHOT,
                verdicts: vec![(Direction::Tx, Verdict::DropSpoofed, 1)],
                eps: vec![(i, tx_dropped())],
            };
        }
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
    names: Vec<String>,
    /// Delta of id 0, which no endpoint has.
    pub bystander: EndpointStats,
    /// Verdict counters that moved, in slot order.
    pub verdicts: Vec<(Direction, Verdict, u64)>,
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
