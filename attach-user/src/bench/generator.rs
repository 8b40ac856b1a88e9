//! The bench's own programs (attach-ebpf `bench_*`) and the traffic
//! generator built on them.
//!
//! pktgen is off in this kernel and Debian's xdp-trafficgen does not load on
//! 6.18, so the generator is BPF_PROG_TEST_RUN in live-frames mode: the
//! kernel runs `bench_tx` on a 64-byte frame `repeat` times as if it had
//! arrived on the generator's wire veth; it writes the frame afresh each
//! time (see `Programs::generator`) and XDP_TX sends each copy out
//! of that veth, into the contender's parent, from a thread that has entered
//! the generator's namespace and is pinned to one CPU. The receive side runs
//! in softirq on the same CPU, so one run measures one vCPU doing everything.
//!
//! A kernel may refuse live frames (some refuse them with EPERM even to a
//! process holding CAP_SYS_ADMIN, CAP_BPF and CAP_NET_ADMIN; kernels before
//! 5.18 do not know them): the first live-frames test run of a bench run
//! finds out, and every later generator run of it sends the same frame out
//! of the same veth from an AF_PACKET socket instead ([`Generator::AfPacket`]).
//! Its rates are not comparable with those of live frames: each frame is an
//! skb from a system call, and veth's receive side polls each frame alone
//! (a bulk of XDP_TX frames arrives together).

use std::{
    fs,
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
    sync::atomic::{AtomicU8, Ordering},
    time::{Duration, Instant},
};

use attach_common::{GEN_FRAME_LEN, GEN_FRAME_WORDS, MAP_BENCH, MAP_GEN_FRAME};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, PerCpuArray},
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttach, TcAttachType, TestRun, TestRunAttrs,
        TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId,
    },
};

use serde::Serialize;

use super::{
    cleanup,
    run::{Ns, high_priority, pin_to},
};
use crate::{
    checksum::{ones_sum, udp_pseudo_header},
    datapath::load_program,
    error::{Error, Result},
};

pub const PROG_GEN: &str = "bench_tx";
pub const PROG_BARE_TX: &str = "bench_bare_tx";
pub const PROG_DROP: &str = "bench_drop";
pub const PROG_PEER: &str = "bench_peer";
pub const PROG_OUT: &str = "bench_out";

/// Frames of the first test run of a generator run; later runs are sized
/// to last about `CALL_SECS` at the rate seen so far.
const FIRST_CALL: u32 = 1 << 18;
const CALL_SECS: f64 = 1.0;
/// Frames per live-frames batch (the kernel's default; its maximum is 256).
const BATCH: u32 = 64;
/// Frames per `sendmmsg` of the AF_PACKET generator.
const PACKET_BATCH: usize = 256;

/// Which generator a bench run used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Generator {
    /// BPF_PROG_TEST_RUN live frames, XDP_TX out of the wire veth.
    XdpLiveFrames,
    /// An AF_PACKET socket on the wire veth (the kernel refuses live
    /// frames).
    AfPacket,
}

impl Generator {
    pub fn what(self) -> &'static str {
        match self {
            Generator::XdpLiveFrames => "XDP live frames",
            Generator::AfPacket => "AF_PACKET (the kernel refuses XDP live frames)",
        }
    }
}

/// What the first live-frames test run of this process found: `UNKNOWN`
/// until then.
static LIVE: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const ALLOWED: u8 = 1;
const REFUSED: u8 = 2;

/// The generator this run used, if it has generated frames.
pub fn used() -> Option<Generator> {
    match LIVE.load(Ordering::Relaxed) {
        ALLOWED => Some(Generator::XdpLiveFrames),
        REFUSED => Some(Generator::AfPacket),
        _ => None,
    }
}

/// Whether a failed live-frames test run says the kernel refuses live
/// frames as such (EPERM, EOPNOTSUPP; EINVAL from kernels that do not know
/// the flag) rather than something else going wrong.
fn refuses_live_frames(e: &ProgramError) -> bool {
    matches!(
        e,
        ProgramError::SyscallError(s)
            if matches!(
                s.io_error.raw_os_error(),
                Some(libc::EPERM | libc::EOPNOTSUPP | libc::EINVAL)
            )
    )
}

/// The bench's programs, loaded from the datapath's object with its maps
/// pinned in a directory of the bench's own (never the engine's).
pub struct Programs {
    ebpf: Ebpf,
}

impl Programs {
    /// `peer_if`, `out_if`: targets of the redirect-peer contender's two
    /// programs (its host-side veth and its parent), fixed at load time.
    pub fn load(pin_dir: &Path, peer_if: u32, out_if: u32) -> Result<Self> {
        fs::create_dir_all(pin_dir)
            .map_err(|e| Error::system(format!("creating {}: {e}", pin_dir.display())))?;
        let ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .override_global("BENCH_PEER_IF", &peer_if, true)
            .override_global("BENCH_OUT_IF", &out_if, true)
            .load(crate::datapath::ebpf_object())
            .map_err(|e| Error::from(e).context("loading the bench programs"))?;
        Ok(Self { ebpf })
    }

    fn classifier(&mut self, name: &str) -> Result<&mut SchedClassifier> {
        load_program(&mut self.ebpf, name)
    }

    fn xdp(&mut self, name: &str) -> Result<&mut Xdp> {
        load_program(&mut self.ebpf, name)
    }

    /// The redirect-peer contender: `bench_peer` on its parent's ingress,
    /// `bench_out` on its host-side veth's ingress (tcx, held by this
    /// process: they go when it exits or the devices do).
    pub fn attach_redirect_peer(&mut self, node: &Ns, parent: u32, host: u32) -> Result<()> {
        for (name, ifindex) in [(PROG_PEER, parent), (PROG_OUT, host)] {
            let p = self.classifier(name)?;
            node.run(|| {
                p.attach(
                    ifindex,
                    TcAttach::Tcx {
                        attach_type: TcAttachType::Ingress,
                        order: LinkOrder::default(),
                    },
                )
            })?
            .map_err(|e| Error::from(e).context(format!("attaching {name}")))?;
        }
        Ok(())
    }

    /// `bench_drop` on a device of `ns`, native mode only (generic XDP would
    /// measure an skb path instead).
    pub fn attach_drop(&mut self, ns: &Ns, ifindex: u32) -> Result<XdpLinkId> {
        let p = self.xdp(PROG_DROP)?;
        ns.run(|| p.attach(ifindex, XdpMode::Driver))?
            .map_err(|e| Error::from(e).context(format!("attaching {PROG_DROP} (native XDP)")))
    }

    pub fn detach_drop(&mut self, id: XdpLinkId) -> Result<()> {
        self.xdp(PROG_DROP)?
            .detach(id)
            .map_err(|e| Error::from(e).context(format!("detaching {PROG_DROP}")))
    }

    /// Frames `bench_drop` has dropped, summed over CPUs.
    pub fn dropped(&self) -> Result<u64> {
        let map = self
            .ebpf
            .map(MAP_BENCH)
            .ok_or_else(|| Error::system(format!("map {MAP_BENCH} missing")))?;
        let counts: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        Ok(counts.get(&0, 0)?.iter().sum())
    }

    /// The generator, set to send `frame` (GEN_FRAME_LEN bytes).
    ///
    /// The frame goes to a map, and `bench_tx` writes it into every frame
    /// it sends: live frames recycle the test run's own pages, and what a
    /// receiver changed in place would otherwise be sent again. Fraglist
    /// GRO does change it: splitting a chain renumbers the IP IDs of its
    /// datagrams, and frames sent again with those IDs (neither fixed nor
    /// incrementing) were never chained, so only every other NAPI poll of
    /// an XDP container chained (2.0 datagrams per IP pass instead of 64).
    pub fn generator(&mut self, frame: &[u8]) -> Result<&Xdp> {
        if frame.len() != GEN_FRAME_LEN {
            return Err(Error::system(format!(
                "the generator sends {GEN_FRAME_LEN}-byte frames, not {}",
                frame.len()
            )));
        }
        let mut words = [0u64; GEN_FRAME_WORDS];
        for (w, chunk) in words.iter_mut().zip(frame.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            *w = u64::from_ne_bytes(b);
        }
        let map = self
            .ebpf
            .map_mut(MAP_GEN_FRAME)
            .ok_or_else(|| Error::system(format!("map {MAP_GEN_FRAME} missing")))?;
        Array::<_, [u64; GEN_FRAME_WORDS]>::try_from(map)?.set(0, &words, 0)?;
        Ok(&*self.xdp(PROG_GEN)?)
    }
}

/// A 64-byte Ethernet frame on the wire (60 bytes without the FCS): IPv4,
/// UDP to port 9 (discard), 18 zero bytes of payload, correct IP and UDP
/// checksums. The UDP checksum is there because every Linux sender puts
/// one, and because UDP GRO leaves a datagram without one alone.
pub fn udp_frame(dst: [u8; 6], src: [u8; 6], sip: Ipv4Addr, dip: Ipv4Addr) -> Vec<u8> {
    const PAYLOAD: usize = 18;
    let udp_len = 8 + PAYLOAD;
    let total = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + total);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40, // DF
        0,
        64,
        17,
        0,
        0,
    ];
    ip.extend_from_slice(&sip.octets());
    ip.extend_from_slice(&dip.octets());
    let csum = !ones_sum(&ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&40000u16.to_be_bytes());
    udp.extend_from_slice(&9u16.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&[0; PAYLOAD]);
    // A sum of zero is sent as 0xffff (zero means "none").
    let pseudo = udp_pseudo_header(sip, dip, udp_len);
    let sum = ones_sum(&[pseudo.as_slice(), &udp].concat());
    let csum = match !sum {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&udp);
    debug_assert_eq!(f.len(), GEN_FRAME_LEN);
    f
}

/// What one generator run sent.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub frames: u64,
    /// Time the kernel spent in its timed loop (sending, and the receive
    /// side's softirq work that runs inside it; not the time the thread
    /// was preempted); for the AF_PACKET generator, the sending thread's
    /// CPU time (the same work, and the system calls).
    pub seconds: f64,
    /// Wall-clock time of the run (includes each test run's teardown).
    pub wall_seconds: f64,
}

/// `struct xdp_md` for a live-frames run: the frame arrived on `ifindex`,
/// rx queue 0.
fn xdp_md(ifindex: u32, len: usize) -> [u8; 24] {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(len as u32).to_ne_bytes()); // data_end
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes()); // ingress_ifindex
    ctx
}

/// Sends `frame` out of `ifindex` (a device of `source`) for about
/// `duration`, from a thread in `source` pinned to `cpu` at nice -20:
/// `prog` (the generator, `Programs::generator`) run on live frames, or, if
/// the kernel refuses live frames, an AF_PACKET socket (see the module's
/// documentation).
///
/// With live frames, time is the kernel's own measure of its loop (the
/// test run's duration per frame × frames): each test run that transmitted
/// frames also pays a fixed teardown of tens of milliseconds outside that
/// loop (seen here: ~25 ms, sleeping), which wall-clock time would charge
/// to the frames, and the kernel pauses its clock while the thread is
/// preempted, which keeps other processes' load out of the number. The
/// AF_PACKET generator's time is the thread's CPU time, its analogue: the
/// veth's transmit and the receive side's softirq work run in the
/// sender's context (on kernels that charge softirq time to the task it
/// interrupted, as this one does without CONFIG_IRQ_TIME_ACCOUNTING), and
/// it stops while the thread is preempted.
pub fn generate(
    prog: &Xdp,
    source: &Ns,
    ifindex: u32,
    frame: &[u8],
    cpu: usize,
    duration: Duration,
) -> Result<Sent> {
    if let Some(sent) = live_frames(prog, source, ifindex, frame, cpu, duration)? {
        return Ok(sent);
    }
    source.run(|| -> Result<Sent> {
        prepare_thread(cpu)?;
        packet_frames(ifindex, frame, duration)
    })?
}

/// Runs `prog` on live frames that arrive on `ifindex` (a device of `ns`)
/// for about `duration`, as [`generate`] does; `None` if the kernel refuses
/// live frames (found by the first live-frames run of the process; later
/// ones are then not tried).
pub fn live_frames(
    prog: &Xdp,
    ns: &Ns,
    ifindex: u32,
    frame: &[u8],
    cpu: usize,
    duration: Duration,
) -> Result<Option<Sent>> {
    if LIVE.load(Ordering::Relaxed) == REFUSED {
        return Ok(None);
    }
    let ctx = xdp_md(ifindex, frame.len());
    ns.run(|| -> Result<Option<Sent>> {
        prepare_thread(cpu)?;
        let start = Instant::now();
        let mut frames = 0u64;
        let mut loop_ns = 0f64;
        let mut repeat = FIRST_CALL;
        while start.elapsed() < duration {
            cleanup::check()?;
            let r = match prog.test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx),
                repeat,
                attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                ..Default::default()
            }) {
                Ok(r) => {
                    // Only the first run of the process settles it.
                    let _ = LIVE.compare_exchange(
                        UNKNOWN,
                        ALLOWED,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    r
                }
                Err(e)
                    if refuses_live_frames(&e)
                        && LIVE
                            .compare_exchange(
                                UNKNOWN,
                                REFUSED,
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                            )
                            .is_ok() =>
                {
                    return Ok(None);
                }
                Err(e) => {
                    return Err(
                        Error::from(e).context("generating frames (XDP live-frames test run)")
                    );
                }
            };
            let per = r.duration.as_nanos() as f64;
            frames += u64::from(repeat);
            loop_ns += per * f64::from(repeat);
            let left =
                (duration.as_secs_f64() - start.elapsed().as_secs_f64()).clamp(0.05, CALL_SECS);
            repeat = (left * 1e9 / per.max(1.0)).clamp(4096.0, f64::from(u32::MAX)) as u32;
        }
        Ok(Some(Sent {
            frames,
            seconds: loop_ns / 1e9,
            wall_seconds: start.elapsed().as_secs_f64(),
        }))
    })?
}

/// Pins the calling thread to `cpu` and raises its priority.
fn prepare_thread(cpu: usize) -> Result<()> {
    pin_to(cpu).map_err(|e| Error::system(format!("pinning the generator to CPU {cpu}: {e}")))?;
    high_priority().map_err(|e| Error::system(format!("raising the generator's priority: {e}")))
}

fn os_error(what: &str) -> Error {
    Error::system(format!(
        "AF_PACKET generator: {what}: {}",
        std::io::Error::last_os_error()
    ))
}

/// The calling thread's CPU time.
fn thread_cpu_time() -> Result<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Err(os_error("reading the thread's CPU time"));
    }
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// A raw AF_PACKET socket bound to `ifindex` of the calling thread's
/// namespace, sending straight to the device's driver (PACKET_QDISC_BYPASS,
/// as XDP_TX does). Protocol 0: it receives nothing.
fn packet_socket(ifindex: u32) -> Result<OwnedFd> {
    // SAFETY: plain system calls on values built here; the descriptor is
    // owned at once.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(os_error("socket(AF_PACKET)"));
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        if libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        ) != 0
        {
            return Err(os_error(&format!("binding to ifindex {ifindex}")));
        }
        let one: libc::c_int = 1;
        if libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) != 0
        {
            return Err(os_error("PACKET_QDISC_BYPASS"));
        }
        Ok(fd)
    }
}

/// The AF_PACKET generator, on the calling thread: `frame` out of
/// `ifindex`, `PACKET_BATCH` frames per `sendmmsg`, for about `duration`.
fn packet_frames(ifindex: u32, frame: &[u8], duration: Duration) -> Result<Sent> {
    let fd = packet_socket(ifindex)?;
    let mut iov = libc::iovec {
        iov_base: frame.as_ptr() as *mut libc::c_void,
        iov_len: frame.len(),
    };
    // SAFETY: zeroed mmsghdr is a valid empty message.
    let mut msgs: Vec<libc::mmsghdr> = (0..PACKET_BATCH)
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for m in &mut msgs {
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let start = Instant::now();
    let cpu_start = thread_cpu_time()?;
    let mut frames = 0u64;
    while start.elapsed() < duration {
        cleanup::check()?;
        for _ in 0..16 {
            // SAFETY: `msgs` point at `iov`, which points at `frame`; all
            // outlive the call, and the kernel only reads them (but the
            // lengths it writes back).
            let n = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    PACKET_BATCH as libc::c_uint,
                    0,
                )
            };
            if n < 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    // The device's queue was full: those frames are not sent.
                    Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR) => continue,
                    _ => return Err(os_error("sendmmsg")),
                }
            }
            frames += n as u64;
        }
    }
    let cpu = thread_cpu_time()? - cpu_start;
    Ok(Sent {
        frames,
        seconds: cpu.as_secs_f64(),
        wall_seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_is_64_bytes_on_the_wire_with_valid_checksums() {
        let (sip, dip) = (Ipv4Addr::new(10, 201, 1, 1), Ipv4Addr::new(10, 201, 1, 2));
        let f = udp_frame([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1], sip, dip);
        assert_eq!(f.len() + 4, 64);
        assert_eq!(ones_sum(&f[14..34]), 0xffff, "IP header checksum");
        let udp = &f[34..];
        assert_ne!(&udp[6..8], &[0, 0], "a UDP checksum is there");
        let pseudo = udp_pseudo_header(sip, dip, udp.len());
        assert_eq!(
            ones_sum(&[&pseudo[..], udp].concat()),
            0xffff,
            "UDP checksum"
        );
    }

    #[test]
    fn the_ones_complement_sum_folds_carries_and_pads_odd_lengths() {
        assert_eq!(ones_sum(&[0xff, 0xff, 0x00, 0x02]), 0x0002);
        assert_eq!(ones_sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(ones_sum(&[]), 0);
    }
}
