//! Where a redirected frame really goes. A tc test run only returns
//! TC_ACT_REDIRECT (the kernel does not carry out `bpf_redirect` there), and
//! the endpoint counters are keyed by the same map value that holds the
//! redirect's ifindex, so neither shows where the frame would go. Here the
//! frame is run again for real: the program under test is hooked on the
//! device its test run named, by the engine's own code (tcx links, or clsact
//! filters on kernels without tcx and for ports), the same frame is sent so
//! that it meets the program (from the device's veth peer for an ingress
//! hook, out of the device for an egress one), and packet sockets on every
//! place it could arrive see where it does. An XDP frame is run again with
//! `attach_rx_xdp` attached to the parent and the frame sent from the wire,
//! and, where the kernel accepts it, with BPF_F_TEST_XDP_LIVE_FRAMES (Linux
//! 5.18), which really sends what the program redirects through the devmap.
//! docs/testing.md says what is checked and what is not.

use std::{
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::Instant,
};

use attach::datapath::{
    Hook, PROG_HOST, PROG_IPVL_RX, PROG_NEST_RX, PROG_NEST_TAP, PROG_RT_IN, PROG_RX, PROG_RX_XDP,
    PROG_SW, port_link,
};
use aya::programs::{SchedClassifier, TcAttachType};

use super::{
    capture::{Capture, DEADLINE, check, dev_index, dev_name, send, wait_any},
    fmt_mac, frames, ip_batch,
    lab::Lab,
    run_with_input,
};

/// How many redirects of a random-frame case are run again for real: the
/// first few (each costs a hook, sockets and a wait; the cases with fixed
/// frames observe every decision the random ones can take).
pub const FUZZ_OBSERVED: u32 = 8;

/// Where a frame can arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Endpoint `i`'s container side (the peer of its host veth `h{i+1}`):
    /// the frame left by the host veth.
    Endpoint(usize),
    /// The wire: the peer of the parent (or uplink), the frame left by it.
    Wire,
    /// The VM's side of the tap `t0` (nested labs).
    Tap,
    /// The node's stack on the parent: the frame entered the parent.
    Node,
    /// The node's stack on endpoint `i`'s host veth: the frame entered it.
    NodeVia(usize),
}

/// What a run needs to be run again for real.
#[derive(Clone, Debug)]
pub enum Replay {
    /// A tc program on `ifindex`; `out` is the frame as the test run left it.
    Tc {
        prog: String,
        ifindex: u32,
        mark: u32,
        frame: Vec<u8>,
        out: Vec<u8>,
    },
    /// `attach_rx_xdp` with this `struct xdp_md`.
    Xdp { ctx: Vec<u8>, frame: Vec<u8> },
}

/// The containers' side of the endpoints' veths: a network namespace of
/// its own, as in a real node (`bpf_redirect_peer` drops a frame whose
/// peer is in the namespace it comes from). Made on the first live run of
/// a lab, deleted with it.
pub struct Containers {
    pub name: String,
}

impl Drop for Containers {
    fn drop(&mut self) {
        let ok = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("cleanup: ip netns del {} failed", self.name);
        }
    }
}

/// Runs `f` with the calling thread in network namespace `name`
/// (/run/netns), back in its own after.
fn in_ns<R>(name: &str, f: impl FnOnce() -> R) -> R {
    let open = |p: &str| std::fs::File::open(p).unwrap_or_else(|e| panic!("open {p}: {e}"));
    let home = open("/proc/thread-self/ns/net");
    let there = open(&format!("/run/netns/{name}"));
    let set = |f: &std::fs::File, what: &str| {
        // SAFETY: plain syscall on an open namespace file.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        check(rc, &format!("setns into {what}"));
    };
    set(&there, name);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    set(&home, "the test's namespace");
    r.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// `union bpf_attr` for BPF_PROG_TEST_RUN (UAPI `test`).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// Whether this kernel has BPF_F_TEST_XDP_LIVE_FRAMES (5.18).
pub fn live_frames_kernel() -> bool {
    let release = attach::features::kernel_release();
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    let v = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    v >= (5, 18)
}

impl Lab {
    /// Whether endpoint `i` has a veth of its own (`h{i+1}`, its container
    /// side `h{i+1}peer`): a nested endpoint's is the VM's tap.
    fn own_veth(&self, i: usize) -> bool {
        dev_index(&format!("h{}", i + 1)) == Some(self.eps[i].host_ifindex)
    }

    /// Whether `ifindex` is an endpoint's own veth (a port).
    fn port(&self, ifindex: u32) -> bool {
        (0..self.eps.len()).any(|i| self.eps[i].host_ifindex == ifindex && self.own_veth(i))
    }

    /// The containers' namespace, made (and the endpoints' container sides
    /// moved into it, up as they were) on first use.
    fn containers(&mut self) -> String {
        if let Some(c) = &self.containers {
            return c.name.clone();
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "attach-live-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip netns add");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.containers = Some(Containers { name: name.clone() });
        // No IPv6 there: its solicitations and reports would arrive at the
        // host sides as frames no program sent.
        run_with_input(
            "ip",
            &["netns", "exec", &name, "sh", "-es"],
            "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6\n\
             echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6\n",
        );
        let peers: Vec<String> = (0..self.eps.len())
            .filter(|i| self.own_veth(*i))
            .map(|i| format!("h{}peer", i + 1))
            .collect();
        let up: Vec<bool> = peers.iter().map(|p| is_up(p)).collect();
        ip_batch(
            &peers
                .iter()
                .map(|p| format!("link set {p} netns {name}"))
                .collect::<Vec<_>>(),
        );
        let ups: Vec<String> = peers
            .iter()
            .zip(&up)
            .filter(|(_, up)| **up)
            .map(|(p, _)| format!("link set {p} up"))
            .collect();
        if !ups.is_empty() {
            run_with_input("ip", &["-n", &name, "-batch", "-"], &ups.join("\n"));
        }
        // The host sides' carrier came back when their peers went up: have
        // the kernel's link watch run now, so they can transmit at once.
        for p in &peers {
            let _ = attach::sys::link_detected(p.trim_end_matches("peer"));
        }
        name
    }

    /// Every place a frame can arrive in this lab but `except` (the device
    /// the frame is sent to or from): the place, its device, and the
    /// namespace of the device (None: the lab's).
    fn places(&self, except: u32, ns: &str) -> Vec<(Target, String, Option<String>)> {
        let mut v = Vec::new();
        for i in (0..self.eps.len()).filter(|i| self.own_veth(*i)) {
            v.push((
                Target::Endpoint(i),
                format!("h{}peer", i + 1),
                Some(ns.to_owned()),
            ));
        }
        let p = dev_name(self.parents[0].ifindex);
        v.push((Target::Wire, format!("{p}peer"), None));
        if dev_index("t0peer").is_some() {
            v.push((Target::Tap, "t0peer".into(), None));
        }
        if self.parents[0].ifindex != except {
            v.push((Target::Node, p, None));
        }
        for (i, e) in self.eps.iter().enumerate() {
            if e.host_ifindex != except && self.own_veth(i) {
                v.push((Target::NodeVia(i), format!("h{}", i + 1), None));
            }
        }
        v
    }

    fn captures(&mut self, except: u32) -> Vec<Capture> {
        let ns = self.containers();
        self.places(except, &ns)
            .into_iter()
            .map(|(t, dev, ns)| {
                let open = || {
                    let i = dev_index(&dev).unwrap_or_else(|| panic!("no device {dev}"));
                    Capture::new(t, dev.clone(), i)
                };
                match ns {
                    Some(ns) => in_ns(&ns, open),
                    None => open(),
                }
            })
            .collect()
    }

    /// Hooks `prog` on `ifindex` for real as the engine would (the same
    /// hook names, so tcx or clsact as the node hooks), and nothing else:
    /// a hook made for an earlier run stays while the same one is wanted.
    /// Returns whether it is an egress hook.
    fn hook_live(&mut self, prog: &str, ifindex: u32) -> bool {
        let port = self.port(ifindex);
        let (pin, at) = if port {
            (port_link(ifindex), TcAttachType::Ingress)
        } else {
            let (hook, at) = match prog {
                PROG_RX => (Hook::ParentRx { ifindex }, TcAttachType::Ingress),
                PROG_HOST => (Hook::ParentHost { ifindex }, TcAttachType::Egress),
                PROG_IPVL_RX => (Hook::ParentIpvlan { ifindex }, TcAttachType::Ingress),
                PROG_RT_IN => (Hook::ParentRouter { ifindex }, TcAttachType::Ingress),
                PROG_NEST_RX => (Hook::ParentNested { ifindex }, TcAttachType::Ingress),
                PROG_NEST_TAP => (Hook::TapNested { ifindex }, TcAttachType::Ingress),
                PROG_SW => (Hook::UplinkSwitch { ifindex }, TcAttachType::Ingress),
                PROG_RX_XDP => (Hook::ParentXdp { ifindex }, TcAttachType::Ingress),
                p => panic!("no live hook for {p} on ifindex {ifindex}"),
            };
            (hook.to_string(), at)
        };
        let key = LiveHook {
            prog: prog.to_owned(),
            pin: pin.clone(),
            ifindex,
            at,
        };
        if self.live_hooks.contains(&key) {
            return at == TcAttachType::Egress;
        }
        for h in std::mem::take(&mut self.live_hooks) {
            self.unhook(&h);
        }
        let r = if prog == PROG_RX_XDP {
            self.dp.attach_xdp(ifindex, &pin).map(drop)
        } else if port {
            // Ports are always hooked with a filter.
            self.dp.hook_new_port(prog, ifindex)
        } else {
            self.dp.attach_tc(prog, ifindex, at, &pin).map(drop)
        };
        r.unwrap_or_else(|e| panic!("hook {prog} on {ifindex} ({pin}): {e}"));
        self.live_hooks.push(key);
        at == TcAttachType::Egress
    }

    /// Removes a hook and waits until the kernel has let go of it (a
    /// pinned link is released after an RCU grace period, not at unlink).
    fn unhook(&mut self, h: &LiveHook) {
        self.dp
            .unpin(&h.pin)
            .unwrap_or_else(|e| panic!("unhook {}: {e}", h.pin));
        let until = Instant::now() + DEADLINE;
        loop {
            let gone = if h.prog == PROG_RX_XDP {
                !has_xdp(h.ifindex)
            } else {
                // A filter goes at once; a tcx link when released.
                SchedClassifier::query_tcx(h.ifindex, h.at)
                    .map(|(_, progs)| progs.is_empty())
                    .unwrap_or(true)
            };
            if gone {
                return;
            }
            assert!(Instant::now() < until, "{} still hooked", h.pin);
            std::thread::yield_now();
        }
    }

    /// Runs `replay` for real; the frames that arrived, by place, until a
    /// copy of the frame (`is_copy`) did.
    pub fn arrivals(&mut self, replay: &Replay, is_copy: &dyn Fn(&[u8]) -> bool) -> Arrivals {
        match replay {
            Replay::Tc {
                prog,
                ifindex,
                mark,
                frame,
                ..
            } => {
                let caps = self.captures(*ifindex);
                let ns = self.containers();
                let egress = self.hook_live(prog, *ifindex);
                let port = self.port(*ifindex);
                // Into a container's namespace a veth clears the mark.
                assert!(
                    !port || *mark == 0,
                    "a frame from a container carries no mark"
                );
                if egress {
                    send(*ifindex, frame, *mark);
                } else {
                    let peer = format!("{}peer", dev_name(*ifindex));
                    let from = || {
                        let i = dev_index(&peer).unwrap_or_else(|| panic!("no device {peer}"));
                        send(i, frame, *mark)
                    };
                    // A port's peer is a container's.
                    if port { in_ns(&ns, from) } else { from() }
                }
                collect(&caps, is_copy)
            }
            Replay::Xdp { ctx, frame } => {
                let ingress = u32::from_ne_bytes(ctx[12..16].try_into().unwrap());
                let caps = self.xdp_captures(ingress);
                self.hook_live(PROG_RX_XDP, ingress);
                let peer = format!("{}peer", dev_name(ingress));
                send(
                    dev_index(&peer).unwrap_or_else(|| panic!("no device {peer}")),
                    frame,
                    0,
                );
                collect(&caps, is_copy)
            }
        }
    }

    /// Captures for an XDP run on `ingress`: frames redirected into a veth
    /// arrive only where its peer runs NAPI, which GRO turns on (as the
    /// engine does).
    fn xdp_captures(&mut self, ingress: u32) -> Vec<Capture> {
        let caps = self.captures(ingress);
        let ns = self.containers();
        let own: Vec<usize> = (0..self.eps.len()).filter(|i| self.own_veth(*i)).collect();
        in_ns(&ns, || {
            for i in own {
                attach::sys::set_gro(&format!("h{}peer", i + 1), true)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        });
        caps
    }

    /// The XDP run `replay` again in live-frames mode (the program not
    /// attached anywhere): what it redirects leaves through the devmap.
    pub fn live_frame_arrivals(
        &mut self,
        replay: &Replay,
        is_copy: &dyn Fn(&[u8]) -> bool,
    ) -> Arrivals {
        let Replay::Xdp { ctx, frame } = replay else {
            panic!("live frames are an XDP test run's");
        };
        let ingress = u32::from_ne_bytes(ctx[12..16].try_into().unwrap());
        let caps = self.xdp_captures(ingress);
        // The program on no device: only the test run sends.
        for h in std::mem::take(&mut self.live_hooks) {
            self.unhook(&h);
        }
        self.xdp_live(ctx, frame)
            .unwrap_or_else(|e| panic!("XDP test run with BPF_F_TEST_XDP_LIVE_FRAMES: {e}"));
        collect(&caps, is_copy)
    }

    /// Frames the container side of endpoint `i` has received, wherever
    /// it is (see [`Self::delivered`]).
    pub(crate) fn container_rx_packets(&self, i: usize) -> u64 {
        let name = format!("h{}peer", i + 1);
        let mut args = vec![];
        if let Some(c) = &self.containers {
            args.extend(["-n".to_owned(), c.name.clone()]);
        }
        args.extend(["-j", "-s", "link", "show", "dev", &name].map(str::to_owned));
        let out = Command::new("ip").args(&args).output().expect("run ip");
        assert!(out.status.success(), "ip link show {name}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
        v[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .unwrap_or_else(|| panic!("no rx packet count for {name}: {v}"))
    }

    /// BPF_PROG_TEST_RUN of `attach_rx_xdp` in live-frames mode: what the
    /// program redirects is really sent.
    fn xdp_live(&mut self, ctx: &[u8], frame: &[u8]) -> Result<(), std::io::Error> {
        let prog = self.dp.xdp_program().expect("load XDP");
        let fd = prog.fd().expect("XDP program fd").as_fd().as_raw_fd();
        let attr = TestRunAttr {
            prog_fd: fd as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat: 1,
            ctx_size_in: ctx.len() as u32,
            ctx_in: if ctx.is_empty() {
                0
            } else {
                ctx.as_ptr() as u64
            },
            flags: BPF_F_TEST_XDP_LIVE_FRAMES,
            ..Default::default()
        };
        // SAFETY: attr points at live buffers for the call's duration.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &attr as *const TestRunAttr,
                size_of::<TestRunAttr>(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Whether this kernel runs XDP test runs in live-frames mode: Err
    /// says why not (asked once per process, with a frame the program
    /// passes on the loopback device).
    pub fn live_frames(&mut self) -> Result<(), String> {
        static ANSWER: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
        if let Some(a) = ANSWER.get() {
            return a.clone();
        }
        let release = attach::features::kernel_release();
        let a = if !live_frames_kernel() {
            Err(format!(
                "BPF_F_TEST_XDP_LIVE_FRAMES needs Linux 5.18; this kernel is {release}"
            ))
        } else {
            self.xdp_live(&[], &[0u8; 14]).map_err(|e| {
                format!("this kernel ({release}) refuses BPF_F_TEST_XDP_LIVE_FRAMES: {e}")
            })
        };
        ANSWER.get_or_init(|| a).clone()
    }
}

/// A hook made for a run for real.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveHook {
    prog: String,
    pin: String,
    ifindex: u32,
    at: TcAttachType,
}

/// Whether device `ifindex` has an XDP program.
fn has_xdp(ifindex: u32) -> bool {
    let name = dev_name(ifindex);
    let out = Command::new("ip")
        .args(["-j", "link", "show", "dev", &name])
        .output()
        .expect("run ip");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    v[0].get("xdp").is_some()
}

/// Whether device `name` (of the calling thread's namespace) is up.
fn is_up(name: &str) -> bool {
    let out = Command::new("ip")
        .args(["-j", "link", "show", "dev", name])
        .output()
        .expect("run ip");
    assert!(out.status.success(), "ip link show {name}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    v[0]["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f == "UP"))
}

/// What every place received until a copy of the frame (`is_copy`)
/// arrived somewhere, or the deadline. A unicast redirect is one transmit,
/// done by the time the send returns: once its frame is at one place it is
/// at no other, so nothing is waited for after it arrives.
fn collect(caps: &[Capture], is_copy: &dyn Fn(&[u8]) -> bool) -> Arrivals {
    let until = Instant::now() + DEADLINE;
    let mut got = vec![Vec::new(); caps.len()];
    loop {
        for (c, g) in caps.iter().zip(&mut got) {
            g.extend(c.drain());
        }
        if got.iter().flatten().any(|f| is_copy(f)) || Instant::now() >= until {
            break;
        }
        wait_any(caps, until);
    }
    caps.iter()
        .zip(got)
        .map(|(c, g)| (c.target, c.dev.clone(), g))
        .collect()
}

/// The frames each place received: the place, its device, the frames.
pub type Arrivals = Vec<(Target, String, Vec<Vec<u8>>)>;

/// What a frame list says, for failure messages.
pub fn describe_arrivals(got: &[(Target, String, Vec<Vec<u8>>)]) -> String {
    let seen: Vec<String> = got
        .iter()
        .filter(|(_, _, f)| !f.is_empty())
        .map(|(t, dev, f)| {
            format!(
                "{t:?} ({dev}): {}",
                f.iter()
                    .map(|f| format!(
                        "{} bytes to {}: {}",
                        f.len(),
                        fmt_mac(f[..6].try_into().unwrap()),
                        frames::describe(f)
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })
        .collect();
    if seen.is_empty() {
        "nowhere".into()
    } else {
        seen.join(", ")
    }
}
