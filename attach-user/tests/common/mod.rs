//! Harness for running the datapath programs with BPF_PROG_TEST_RUN.
//!
//! Every test runs on its own thread in a fresh network namespace
//! ([`in_netns`]), builds its devices and maps from a [`Scenario`], runs one
//! program on one frame ([`Lab::rx`], [`Lab::tx`], ...), and checks the
//! [`Outcome`]: the return code, the verdict counters that moved, and the
//! per-endpoint counters that moved (every endpoint not named must not move);
//! and, for a redirect, where the frame really arrives when run again with
//! the program hooked for real ([`live`], [`capture`]).

use std::{
    ffi::CString,
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use attach::datapath::Datapath;
use attach_common::{MODE_BRIDGE, MODE_PASSTHRU, MODE_PRIVATE, MODE_VEPA, MacAddr};
use aya::programs::ProgramError;

pub mod bridge;
pub mod capture;
pub mod frames;
pub mod fuzz;
pub mod ipvlan;
pub mod ipvlan_model;
pub mod lab;
pub mod live;
pub mod model;
pub mod nested;
pub mod outcome;
pub mod router;
pub mod scenario;
pub mod spoof_model;
pub mod tally;

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

/// The errnos a test run is refused with.
pub const EINVAL: i32 = libc::EINVAL;
pub const ENODEV: i32 = libc::ENODEV;

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

/// `ip -batch` commands that make veth `name` (peer `{name}peer`, with
/// `mac` when given) and set both ends up.
pub(crate) fn veth(name: &str, mac: Option<&MacAddr>) -> [String; 3] {
    let address = mac.map_or(String::new(), |m| format!(" address {}", fmt_mac(m)));
    [
        format!("link add {name}{address} type veth peer name {name}peer"),
        format!("link set {name} up"),
        format!("link set {name}peer up"),
    ]
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

/// MAC of parent `i`.
pub const fn parent_mac(i: usize) -> MacAddr {
    [0x02, 0xaa, 0, 0, 0, i as u8 + 1]
}
