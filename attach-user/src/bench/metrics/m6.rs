//! M6 — per-program cost of every decision path, with 1, 100 and 1000
//! endpoints in the tables.
//!
//! The datapath is loaded with `Datapath::open` (maps pinned in the bench's
//! own directory) on a thread with a network namespace of its own, its maps
//! are filled as the engine would, and each program is run with
//! BPF_PROG_TEST_RUN `repeat` times on one frame: the kernel's average is
//! the ns/packet. Two references show what the harness itself costs: a
//! plain `bpf_redirect_peer` (tc) and a bare `XDP_TX` program.
//!
//! Instructions: each program's translated (verifier-rewritten) size, and
//! for every path that is not a loop the longest run of translated
//! instructions that can execute on it — found by walking the program's
//! control-flow graph (from `bpftool prog dump xlated`) through the helper
//! call that defines the path and around the calls that would leave it. It
//! is an upper bound: where the path branches, the longer side counts.
//! Two bounds are given: over every branch, and over the frame's own
//! decision with tracing off (without the event and error-log branches,
//! which only drops, `--trace` and failed helpers take).

use std::{
    collections::HashMap as StdHashMap,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use attach_common::{
    EP_F_SPOOFCHK, Endpoint, EndpointKey, MAP_DEVS, MAP_ENDPOINTS, MAP_PARENTS, MAP_PORTS,
    MODE_BRIDGE, MacAddr, ParentCfg,
};
use aya::{
    maps::{HashMap, Map, MapData},
    programs::{TestRun, TestRunOptions},
};
use serde::Serialize;

use crate::{
    bench::{
        cleanup,
        generator::{PROG_BARE_TX, PROG_PEER, udp_frame},
        run::{high_priority, pin_to},
        stats::Summary,
    },
    datapath::{Datapath, PROG_HOST, PROG_RX, PROG_RX_XDP, PROG_TX},
    error::{Error, Result},
};

pub const SIZES: [usize; 3] = [1, 100, 1000];
/// Endpoints per parent (a parent floods to at most 256).
const PER_PARENT: usize = 250;
/// Target time of one measured test run.
const RUN_NS: f64 = 150e6;

const TC_ACT_UNSPEC: u32 = u32::MAX;
const TC_ACT_REDIRECT: u32 = 7;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

const EXT_MAC: MacAddr = [0x02, 0xee, 0, 0, 0, 1];
const UNKNOWN_MAC: MacAddr = [0x02, 0xee, 0, 0, 0, 0x99];
/// An endpoint in the table but not in the endpoint cache (its slot taken
/// by another endpoint, or the cache not filled yet).
const UNCACHED_MAC: MacAddr = [0x02, 0xee, 0, 0, 0, 0x98];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    Tc,
    Xdp,
}

#[derive(Clone, Copy, Debug)]
enum Frame {
    ToEndpoint,
    ToUncachedEndpoint,
    Unknown,
    Broadcast,
    FromEndpoint,
    EndpointToEndpoint,
    FromNode,
}

struct PathDef {
    id: &'static str,
    what: &'static str,
    prog: &'static str,
    hook: Hook,
    hot: bool,
    frame: Frame,
    min_endpoints: usize,
    want: u32,
    /// The path passes this call (a substring of bpftool's disassembly) …
    through: Option<&'static str>,
    /// … and none of these (besides subprogram calls and the non-linear
    /// header fallback, which no path here takes). `PARENTS_MAP` and
    /// `ENDPOINTS_MAP` stand for loading those maps: the unicast hot path
    /// finds its endpoint in the endpoint cache, without the endpoint table
    /// behind it or the parents map (only passthru parents need it).
    avoid: &'static [&'static str],
}

const PARENTS_MAP: &str = "@parents";
const ENDPOINTS_MAP: &str = "@endpoints";

const PATHS: [PathDef; 12] = [
    PathDef {
        id: "rx_unicast",
        what: "tc rx: unicast from the wire → endpoint (bpf_redirect_peer)",
        prog: PROG_RX,
        hook: Hook::Tc,
        hot: true,
        frame: Frame::ToEndpoint,
        min_endpoints: 1,
        want: TC_ACT_REDIRECT,
        through: Some("call bpf_redirect_peer#"),
        avoid: &[PARENTS_MAP, ENDPOINTS_MAP],
    },
    PathDef {
        id: "rx_uncached",
        what: "tc rx: unicast from the wire → endpoint not in the cache (table lookup)",
        prog: PROG_RX,
        hook: Hook::Tc,
        hot: false,
        frame: Frame::ToUncachedEndpoint,
        min_endpoints: 1,
        want: TC_ACT_REDIRECT,
        through: Some("call bpf_redirect_peer#"),
        avoid: &[PARENTS_MAP],
    },
    PathDef {
        id: "rx_unknown",
        what: "tc rx: unicast to no endpoint → the node's stack",
        prog: PROG_RX,
        hook: Hook::Tc,
        hot: false,
        frame: Frame::Unknown,
        min_endpoints: 1,
        want: TC_ACT_UNSPEC,
        through: None,
        avoid: &["call bpf_redirect"],
    },
    PathDef {
        id: "rx_broadcast",
        what: "tc rx: broadcast → a clone per endpoint of the parent, and the node",
        prog: PROG_RX,
        hook: Hook::Tc,
        hot: false,
        frame: Frame::Broadcast,
        min_endpoints: 1,
        want: TC_ACT_UNSPEC,
        through: None,
        avoid: &[],
    },
    PathDef {
        id: "xdp_unicast",
        what: "xdp rx: unicast from the wire → endpoint (devmap redirect)",
        prog: PROG_RX_XDP,
        hook: Hook::Xdp,
        hot: true,
        frame: Frame::ToEndpoint,
        min_endpoints: 1,
        want: XDP_REDIRECT,
        through: Some("redirect"),
        avoid: &[PARENTS_MAP, ENDPOINTS_MAP],
    },
    PathDef {
        id: "xdp_uncached",
        what: "xdp rx: unicast from the wire → endpoint not in the cache (table lookup)",
        prog: PROG_RX_XDP,
        hook: Hook::Xdp,
        hot: false,
        frame: Frame::ToUncachedEndpoint,
        min_endpoints: 1,
        want: XDP_REDIRECT,
        through: Some("redirect"),
        avoid: &[PARENTS_MAP],
    },
    PathDef {
        id: "xdp_broadcast",
        what: "xdp rx: broadcast → XDP_PASS (to tc)",
        prog: PROG_RX_XDP,
        hook: Hook::Xdp,
        hot: false,
        frame: Frame::Broadcast,
        min_endpoints: 1,
        want: XDP_PASS,
        through: None,
        avoid: &[],
    },
    PathDef {
        id: "tx_to_parent",
        what: "tc tx: endpoint → out of the parent (source check, bpf_redirect)",
        prog: PROG_TX,
        hook: Hook::Tc,
        hot: false,
        frame: Frame::FromEndpoint,
        min_endpoints: 1,
        want: TC_ACT_REDIRECT,
        through: Some("call bpf_redirect#"),
        avoid: &["bpf_clone_redirect"],
    },
    PathDef {
        id: "tx_local",
        what: "tc tx: endpoint → endpoint on the same parent (bridge mode, bpf_redirect_peer)",
        prog: PROG_TX,
        hook: Hook::Tc,
        hot: false,
        frame: Frame::EndpointToEndpoint,
        min_endpoints: 2,
        want: TC_ACT_REDIRECT,
        through: Some("call bpf_redirect_peer#"),
        avoid: &[],
    },
    PathDef {
        id: "host_to_wire",
        what: "tc host egress: the node's own unicast → the wire",
        prog: PROG_HOST,
        hook: Hook::Tc,
        hot: false,
        frame: Frame::FromNode,
        min_endpoints: 1,
        want: TC_ACT_UNSPEC,
        through: None,
        avoid: &["call bpf_redirect"],
    },
    PathDef {
        id: "ref_redirect_peer",
        what: "reference: a tc program doing only bpf_redirect_peer",
        prog: PROG_PEER,
        hook: Hook::Tc,
        hot: false,
        frame: Frame::ToEndpoint,
        min_endpoints: 1,
        want: TC_ACT_REDIRECT,
        through: Some("call bpf_redirect_peer#"),
        avoid: &[],
    },
    PathDef {
        id: "ref_xdp_tx",
        what: "reference: an XDP program doing only XDP_TX",
        prog: PROG_BARE_TX,
        hook: Hook::Xdp,
        hot: false,
        frame: Frame::ToEndpoint,
        min_endpoints: 1,
        want: XDP_TX,
        through: None,
        avoid: &[],
    },
];

#[derive(Clone, Debug, Serialize)]
pub struct PathAt {
    pub endpoints: usize,
    /// ns per packet over the rounds.
    pub ns: Summary,
    pub samples: Vec<f64>,
    pub repeat: u32,
    /// Clones a broadcast makes (endpoints on the parent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fanout: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PathResult {
    pub id: &'static str,
    pub what: &'static str,
    pub program: &'static str,
    pub hot: bool,
    pub at: Vec<PathAt>,
    /// Most translated instructions that can run on this path (see the
    /// module docs); `None` for a path with a loop.
    pub max_insns: Option<u32>,
    /// The same bound for the frame's own decision with tracing off (the
    /// default): without the branches that only drops and `--trace` take
    /// (the event, `bpf_ringbuf_output`) and that only a failed helper
    /// takes (its log line, `bpf_perf_event_output`).
    pub decision_insns: Option<u32>,
}

/// Calls a frame that is delivered, with tracing off, never makes.
const NOT_ON_A_DELIVERY: [&str; 2] = ["bpf_ringbuf_output", "bpf_perf_event_output"];

#[derive(Clone, Debug, Serialize)]
pub struct ProgramSize {
    pub program: &'static str,
    pub xlated_insns: u32,
    pub jited_bytes: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct M6 {
    pub endpoints: Vec<usize>,
    pub paths: Vec<PathResult>,
    pub programs: Vec<ProgramSize>,
}

impl M6 {
    pub fn path(&self, id: &str) -> Option<&PathResult> {
        self.paths.iter().find(|p| p.id == id)
    }
}

fn ep_mac(i: usize) -> MacAddr {
    [0x02, 0xe6, 0, (i >> 8) as u8, i as u8, 1]
}

fn parent_mac(p: usize) -> MacAddr {
    [0x02, 0xe6, 0xff, 0, p as u8, 0xfe]
}

fn arp_broadcast(src: MacAddr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[10, 0, 0, 1]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 0, 0, 2]);
    f.resize(60, 0);
    f
}

fn ip_batch(cmds: &[String]) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::system(format!("cannot run ip: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(cmds.join("\n").as_bytes())
        .map_err(|e| Error::system(format!("writing to ip: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| Error::system(format!("waiting for ip: {e}")))?;
    if !out.status.success() {
        return Err(Error::system(format!(
            "ip -batch: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name).expect("no NUL");
    // SAFETY: valid C string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(Error::system(format!("no device {name}"))),
        i => Ok(i),
    }
}

fn pinned_map(dir: &Path, name: &str) -> Result<Map> {
    let md = MapData::from_pin(dir.join(name))
        .map_err(|e| Error::from(e).context(format!("opening pinned {name}")))?;
    Ok(Map::from_map_data(md)?)
}

/// One table size: endpoints, their parents, and the indexes a run needs.
struct Tables {
    dp: Datapath,
    dir: PathBuf,
    parent0: u32,
    eps: Vec<Endpoint>,
    /// On parent 0, in the endpoint table only.
    uncached: Endpoint,
    /// Endpoints on parent 0 (a broadcast's clones).
    fanout: usize,
}

impl Drop for Tables {
    fn drop(&mut self) {
        let _ = Datapath::remove_pins(&self.dir);
    }
}

fn fill(dir: &Path, n: usize, real: &[u32], parents: &[u32]) -> Result<Tables> {
    let mut dp = Datapath::open(dir)?;
    let nparents = n.div_ceil(PER_PARENT);
    let mut eps = Vec::with_capacity(n);
    for i in 0..n {
        let p = i / PER_PARENT;
        eps.push(Endpoint {
            host_ifindex: match real.get(i) {
                Some(&h) if p == 0 => h,
                _ => 1_000_000 + i as u32,
            },
            parent_ifindex: parents[p],
            id: i as u32 + 1,
            mac: ep_mac(i),
            mode: MODE_BRIDGE,
            flags: EP_F_SPOOFCHK,
        });
    }
    // Endpoints on parent 0 are real veths (broadcasts clone to them); the
    // others only fill the tables: the same entries, with a devmap entry
    // pointing at a real device (the devmap takes only devices).
    let mut by_mac: HashMap<MapData, EndpointKey, Endpoint> =
        HashMap::try_from(pinned_map(dir, MAP_ENDPOINTS)?)?;
    let mut by_port: HashMap<MapData, u32, Endpoint> =
        HashMap::try_from(pinned_map(dir, MAP_PORTS)?)?;
    let devs = pinned_map(dir, MAP_DEVS)?;
    // Those entries, without the endpoint cache's.
    let mut table_only = |ep: &Endpoint| -> Result<()> {
        by_port.insert(&ep.host_ifindex, ep, 0)?;
        by_mac.insert(&EndpointKey::new(ep.parent_ifindex, ep.mac), ep, 0)?;
        crate::datapath::devmap::put(&devs, ep.host_ifindex, real[0])
    };
    let mut cache = dp.ep_cache()?;
    for ep in &eps {
        if ep.parent_ifindex == parents[0] {
            dp.put_endpoint(ep)?;
        } else {
            table_only(ep)?;
            cache.put(ep);
        }
    }
    // The hot paths' frame must find its endpoint in the cache.
    let target = eps[n.min(PER_PARENT) - 1];
    if cache.read(attach_common::ep_cache_slot(
        target.parent_ifindex,
        &target.mac,
    )) != Some(target)
    {
        return Err(Error::system(format!(
            "M6: the hot paths' endpoint ({n} endpoints) is not in the endpoint cache"
        )));
    }
    let uncached = Endpoint {
        host_ifindex: 2_000_000,
        parent_ifindex: parents[0],
        id: n as u32 + 1,
        mac: UNCACHED_MAC,
        mode: MODE_BRIDGE,
        flags: EP_F_SPOOFCHK,
    };
    table_only(&uncached)?;
    for (slot, &p) in parents.iter().take(nparents).enumerate() {
        let row: Vec<Endpoint> = eps
            .iter()
            .filter(|e| e.parent_ifindex == p)
            .copied()
            .collect();
        dp.write_flood_row(slot as u32, &row)?;
        dp.put_parent(
            p,
            &ParentCfg {
                slot: slot as u32,
                nports: row.len() as u32,
                mac: parent_mac(slot),
                ..Default::default()
            },
        )?;
    }
    Ok(Tables {
        dp,
        dir: dir.to_owned(),
        parent0: parents[0],
        fanout: n.min(PER_PARENT),
        eps,
        uncached,
    })
}

/// (frame, ifindex the frame arrives on) for a path.
fn input(t: &Tables, f: Frame) -> (Vec<u8>, u32) {
    let target = &t.eps[t.fanout - 1];
    let ip = |x| std::net::Ipv4Addr::new(10, 0, 0, x);
    match f {
        Frame::ToEndpoint => (udp_frame(target.mac, EXT_MAC, ip(1), ip(2)), t.parent0),
        Frame::ToUncachedEndpoint => (udp_frame(t.uncached.mac, EXT_MAC, ip(1), ip(5)), t.parent0),
        Frame::Unknown => (udp_frame(UNKNOWN_MAC, EXT_MAC, ip(1), ip(3)), t.parent0),
        Frame::Broadcast => (arp_broadcast(EXT_MAC), t.parent0),
        Frame::FromEndpoint => (
            udp_frame(EXT_MAC, t.eps[0].mac, ip(2), ip(1)),
            t.eps[0].host_ifindex,
        ),
        Frame::EndpointToEndpoint => (
            udp_frame(t.eps[1].mac, t.eps[0].mac, ip(2), ip(4)),
            t.eps[0].host_ifindex,
        ),
        Frame::FromNode => (udp_frame(EXT_MAC, parent_mac(0), ip(9), ip(1)), t.parent0),
    }
}

/// One test run: (ns per packet, return value).
fn test_run(t: &mut Tables, p: &PathDef, repeat: u32) -> Result<(f64, u32)> {
    let (frame, ifindex) = input(t, p.frame);
    let r = match p.hook {
        Hook::Tc => {
            let mut ctx = [0u8; 192];
            ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
            t.dp.classifier(p.prog)?.test_run(TestRunOptions {
                data_in: Some(&frame),
                ctx_in: Some(&ctx),
                repeat,
                ..Default::default()
            })
        }
        Hook::Xdp => {
            let mut ctx = [0u8; 24];
            ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
            ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
            t.dp.xdp(p.prog)?.test_run(TestRunOptions {
                data_in: Some(&frame),
                ctx_in: Some(&ctx),
                repeat,
                ..Default::default()
            })
        }
    }
    .map_err(|e| Error::from(e).context(format!("test run of {} ({})", p.prog, p.id)))?;
    Ok((r.duration.as_nanos() as f64, r.return_value))
}

/// Program id, translated size and JIT size.
fn program_info(dp: &mut Datapath, name: &str, hook: Hook) -> Result<(u32, u32, u32)> {
    let info = match hook {
        Hook::Tc => dp.classifier(name)?.info(),
        Hook::Xdp => dp.xdp(name)?.info(),
    }
    .map_err(|e| Error::from(e).context(format!("info of {name}")))?;
    Ok((
        info.id(),
        info.size_translated().unwrap_or(0) / 8,
        info.size_jitted(),
    ))
}

pub fn run(
    sizes: &[usize],
    rounds: u32,
    pin_root: &Path,
    cpu: usize,
    listing: Option<&Path>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<M6> {
    let pin_root = pin_root.to_owned();
    let sizes = sizes.to_vec();
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: affects this thread only; its namespace (and every
            // device made in it) goes when the thread ends.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(Error::system(format!(
                    "unshare(CLONE_NEWNET): {}",
                    std::io::Error::last_os_error()
                )));
            }
            pin_to(cpu).map_err(|e| Error::system(format!("pinning M6 to CPU {cpu}: {e}")))?;
            high_priority().map_err(|e| Error::system(format!("nice -20: {e}")))?;
            measure(&sizes, rounds, &pin_root, listing, progress)
        })
        .join()
        .map_err(|_| Error::system("the M6 thread panicked"))?
    })
}

fn measure(
    sizes: &[usize],
    rounds: u32,
    pin_root: &Path,
    listing: Option<&Path>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<M6> {
    for knob in ["all", "default"] {
        crate::sys::sysctl_set(&format!("net.ipv6.conf.{knob}.disable_ipv6"), "1")?;
    }
    let max = *sizes.iter().max().unwrap_or(&1);
    let nreal = max.min(PER_PARENT);
    let nparents = max.div_ceil(PER_PARENT).max(1);
    progress(&format!(
        "M6: {nparents} parent(s) and {nreal} endpoint veth pair(s) in a namespace of its own"
    ));
    let mut cmds = Vec::new();
    for p in 0..nparents {
        cmds.push(format!("link add m6p{p} type veth peer name m6p{p}x"));
        cmds.push(format!("link set m6p{p} up"));
        cmds.push(format!("link set m6p{p}x up"));
    }
    for i in 0..nreal {
        cmds.push(format!("link add e{i} type veth peer name e{i}x"));
        cmds.push(format!("link set e{i} up"));
        cmds.push(format!("link set e{i}x up"));
    }
    ip_batch(&cmds)?;
    let parents: Vec<u32> = (0..nparents)
        .map(|p| ifindex(&format!("m6p{p}")))
        .collect::<Result<_>>()?;
    let real: Vec<u32> = (0..nreal)
        .map(|i| ifindex(&format!("e{i}")))
        .collect::<Result<_>>()?;

    let mut results: Vec<PathResult> = PATHS
        .iter()
        .map(|p| PathResult {
            id: p.id,
            what: p.what,
            program: p.prog,
            hot: p.hot,
            at: Vec::new(),
            max_insns: None,
            decision_insns: None,
        })
        .collect();
    // Every table size at once, so sizes can be interleaved like contenders.
    let mut tables = Vec::new();
    for &n in sizes {
        cleanup::check()?;
        tables.push(fill(&pin_root.join(format!("m6-{n}")), n, &real, &parents)?);
    }
    let Some(first) = tables.first_mut() else {
        return Err(Error::invalid("M6 needs at least one table size"));
    };
    // Sizes and paths depend on the code, not the tables: once.
    let mut programs = Vec::new();
    let mut dumps: StdHashMap<&str, Vec<Insn>> = StdHashMap::new();
    for p in &PATHS {
        if dumps.contains_key(p.prog) {
            continue;
        }
        let (id, xlated, jited) = program_info(&mut first.dp, p.prog, p.hook)?;
        programs.push(ProgramSize {
            program: p.prog,
            xlated_insns: xlated,
            jited_bytes: jited,
        });
        dumps.insert(p.prog, xlated_dump(id)?);
    }
    let parents_id = MapData::from_pin(first.dir.join(MAP_PARENTS))
        .and_then(|m| m.info())
        .map_err(|e| Error::from(e).context("the parents map's id"))?
        .id();
    let parents_load = format!("map[id:{parents_id}]");
    let endpoints_id = MapData::from_pin(first.dir.join(MAP_ENDPOINTS))
        .and_then(|m| m.info())
        .map_err(|e| Error::from(e).context("the endpoint table's id"))?
        .id();
    let endpoints_load = format!("map[id:{endpoints_id}]");
    for (r, p) in results.iter_mut().zip(&PATHS) {
        if p.id == "rx_broadcast" {
            continue; // a loop over the parent's endpoints
        }
        let avoid: Vec<&str> = p
            .avoid
            .iter()
            .map(|a| match *a {
                PARENTS_MAP => parents_load.as_str(),
                ENDPOINTS_MAP => endpoints_load.as_str(),
                _ => a,
            })
            .collect();
        r.max_insns = longest_path(&dumps[p.prog], p.through, &avoid);
        let quiet: Vec<&str> = avoid.iter().copied().chain(NOT_ON_A_DELIVERY).collect();
        // One search: with a listing, it also returns the path.
        let decision = search(&dumps[p.prog], p.through, &quiet, listing.is_some());
        r.decision_insns = decision.as_ref().map(|(n, _)| *n);
        if let Some(dir) = listing {
            write_listing(dir, p, &dumps[p.prog], decision.as_ref())?;
        }
    }
    if let Some(dir) = listing {
        progress(&format!("M6 path listings written to {}", dir.display()));
    }

    // Warm-up (discarded) and calibration: about RUN_NS per measured run;
    // each path is checked to really take its decision.
    let mut repeat: StdHashMap<(usize, usize), u32> = StdHashMap::new();
    progress("M6 warm-up and calibration (discarded)");
    for (k, t) in tables.iter_mut().enumerate() {
        for (j, p) in PATHS.iter().enumerate() {
            if t.eps.len() < p.min_endpoints {
                continue;
            }
            cleanup::check()?;
            let probe = if p.id == "rx_broadcast" { 20 } else { 100_000 };
            let (ns, ret) = test_run(t, p, probe)?;
            if ret != p.want {
                return Err(Error::system(format!(
                    "M6 {} with {} endpoints: {} returned {ret:#x}, expected {:#x}: the path was not taken",
                    p.id,
                    t.eps.len(),
                    p.prog,
                    p.want
                )));
            }
            repeat.insert((k, j), (RUN_NS / ns.max(1.0)).clamp(20.0, 5e6) as u32);
        }
    }
    let mut samples: StdHashMap<(usize, usize), Vec<f64>> = StdHashMap::new();
    for round in 0..rounds {
        for (k, t) in tables.iter_mut().enumerate() {
            for (j, p) in PATHS.iter().enumerate() {
                let Some(&rep) = repeat.get(&(k, j)) else {
                    continue;
                };
                cleanup::check()?;
                let ns = test_run(t, p, rep)?.0;
                samples.entry((k, j)).or_default().push(ns);
            }
        }
        progress(&format!("M6 round {}/{rounds} done", round + 1));
    }
    for (k, t) in tables.iter().enumerate() {
        for (j, (r, p)) in results.iter_mut().zip(&PATHS).enumerate() {
            let Some(v) = samples.remove(&(k, j)) else {
                continue;
            };
            let ns = Summary::of(&v).expect("rounds > 0");
            progress(&format!(
                "M6 {:<18} {:>5} endpoints: {:>8.1} ns/packet (min {:.1}, max {:.1})",
                p.id,
                t.eps.len(),
                ns.median,
                ns.min,
                ns.max
            ));
            r.at.push(PathAt {
                endpoints: t.eps.len(),
                ns,
                samples: v,
                repeat: repeat[&(k, j)],
                fanout: (p.id == "rx_broadcast").then_some(t.fanout),
            });
        }
    }
    Ok(M6 {
        endpoints: sizes.to_vec(),
        paths: results,
        programs,
    })
}

/// One translated instruction.
#[derive(Clone, Debug)]
pub struct Insn {
    pub pc: usize,
    pub code: u8,
    pub off: i16,
    pub imm: i32,
    /// 2 for a 64-bit immediate load, else 1 (as counted in the xlated size).
    pub slots: u32,
    pub disasm: String,
}

fn hex(v: &serde_json::Value) -> u8 {
    v.as_str()
        .and_then(|s| u8::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0)
}

/// `bpftool prog dump xlated id <id>`: the instructions as the kernel runs them.
fn xlated_dump(id: u32) -> Result<Vec<Insn>> {
    let out = Command::new("bpftool")
        .args([
            "-j",
            "prog",
            "dump",
            "xlated",
            "id",
            &id.to_string(),
            "opcodes",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::system(format!("cannot run bpftool: {e}")))?;
    if !out.status.success() {
        return Err(Error::system(format!(
            "bpftool prog dump xlated id {id}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::system(format!("bpftool output: {e}")))?;
    let mut pc = 0;
    let mut insns = Vec::new();
    for e in v.as_array().map(Vec::as_slice).unwrap_or_default() {
        let op = &e["opcodes"];
        let code = hex(&op["code"]);
        let b = |k: &str, i: usize| hex(&op[k][i]);
        let off = i16::from_le_bytes([b("off", 0), b("off", 1)]);
        let imm = i32::from_le_bytes([b("imm", 0), b("imm", 1), b("imm", 2), b("imm", 3)]);
        let slots = if code == 0x18 { 2 } else { 1 };
        insns.push(Insn {
            pc,
            code,
            off,
            imm,
            slots,
            disasm: e["disasm"].as_str().unwrap_or_default().to_owned(),
        });
        pc += slots as usize;
    }
    Ok(insns)
}

/// The longest run of instructions from the entry to an `exit` of the main
/// program that passes a call matching `through` (if given), no call or map
/// load matching `avoid`, no subprogram call (the flood loop's callback) and
/// not the non-linear header fallback (`bpf_skb_load_bytes`, `bpf_skb_pull_data`).
///
/// An execution that does not loop visits each instruction at most once,
/// so it is a simple path of the control-flow graph: the longest such path
/// bounds it. LLVM shares code between branches, which makes cycles in the
/// graph that no execution follows; paths are therefore searched as simple
/// paths within each strongly connected component, and memoised between
/// components. `None` if the search is too large.
pub fn longest_path(insns: &[Insn], through: Option<&str>, avoid: &[&str]) -> Option<u32> {
    search(insns, through, avoid, false).map(|(n, _)| n)
}

/// [`longest_path`], and with `want_path` the path it was found on: the
/// `pc` of each instruction, in order.
fn search(
    insns: &[Insn],
    through: Option<&str>,
    avoid: &[&str],
    want_path: bool,
) -> Option<(u32, Vec<usize>)> {
    let at: StdHashMap<usize, usize> = insns.iter().enumerate().map(|(i, x)| (x.pc, i)).collect();
    // Subprograms start where calls `pc+N` point; the main program ends at
    // the first of them.
    // (The dump's opcodes hide a subprogram call's offset; its text has it.)
    let end = insns
        .iter()
        .filter(|x| x.code == 0x85)
        .filter_map(|x| {
            let rest = &x.disasm[x.disasm.find("pc+")? + 3..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            Some(x.pc + digits.parse::<usize>().ok()? + 1)
        })
        .min()
        .unwrap_or(usize::MAX);
    let n = insns.iter().take_while(|x| x.pc < end).count();
    let is_call = |x: &Insn| x.code == 0x85;
    let blocked: Vec<bool> = insns[..n]
        .iter()
        .map(|x| {
            let map_load = x.code == 0x18;
            (is_call(x) || map_load)
                && (x.disasm.contains("call pc+")
                    || x.disasm.contains("bpf_skb_load_bytes")
                    || x.disasm.contains("bpf_skb_pull_data")
                    || avoid.iter().any(|a| x.disasm.contains(a)))
        })
        .collect();
    let marks: Vec<bool> = insns[..n]
        .iter()
        .map(|x| is_call(x) && through.is_some_and(|t| x.disasm.contains(t)))
        .collect();
    let exit: Vec<bool> = insns[..n]
        .iter()
        .map(|x| x.code & 7 == 5 && x.code & 0xf0 == 0x90)
        .collect();
    let succ: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            let x = &insns[i];
            if blocked[i] {
                return vec![];
            }
            let class = x.code & 7;
            let next = x.pc + x.slots as usize;
            let jump = |off: i64| (x.pc as i64 + off + 1) as usize;
            let pcs: Vec<usize> = if class == 5 || class == 6 {
                match x.code & 0xf0 {
                    0x90 => vec![],
                    0x80 => vec![next],
                    0x00 if class == 5 => vec![jump(i64::from(x.off))],
                    0x00 => vec![jump(i64::from(x.imm))],
                    _ => vec![next, jump(i64::from(x.off))],
                }
            } else {
                vec![next]
            };
            pcs.into_iter()
                .filter_map(|pc| at.get(&pc).copied())
                .filter(|&j| j < n && !blocked[j])
                .collect()
        })
        .collect();
    if n == 0 || blocked[0] {
        return None;
    }
    let comp = sccs(&succ);
    let mut w = Walk {
        insns,
        succ: &succ,
        comp: &comp,
        marks: &marks,
        exit: &exit,
        need: through.is_some(),
        memo: StdHashMap::new(),
        visited: vec![false; n],
        steps: 0,
    };
    let v = w.fresh(0, false);
    let longest = (w.steps <= Walk::MAX_STEPS).then_some(v).flatten()?;
    let mut path = Vec::new();
    if want_path {
        w.trace(0, false, &mut path);
    }
    Some((longest, path.into_iter().map(|i| insns[i].pc).collect()))
}

struct Walk<'a> {
    insns: &'a [Insn],
    succ: &'a [Vec<usize>],
    comp: &'a [usize],
    marks: &'a [bool],
    exit: &'a [bool],
    need: bool,
    memo: StdHashMap<(usize, bool), Option<u32>>,
    visited: Vec<bool>,
    steps: u64,
}

impl Walk<'_> {
    const MAX_STEPS: u64 = 20_000_000;

    /// Longest path from `v` entering its component afresh (memoised: what
    /// follows cannot revisit anything before it outside this component).
    fn fresh(&mut self, v: usize, seen: bool) -> Option<u32> {
        if let Some(r) = self.memo.get(&(v, seen)) {
            return *r;
        }
        let r = self.walk(v, seen);
        self.memo.insert((v, seen), r);
        r
    }

    fn walk(&mut self, v: usize, seen: bool) -> Option<u32> {
        self.steps += 1;
        if self.steps > Self::MAX_STEPS {
            return None;
        }
        let seen = seen || self.marks[v];
        let slots = self.insns[v].slots;
        if self.exit[v] {
            return (seen || !self.need).then_some(slots);
        }
        self.visited[v] = true;
        let best = self.best_successor(v, seen);
        self.visited[v] = false;
        best.map(|(b, _)| b + slots)
    }

    /// The successor of `v` (marked visited) with the longest path on, and
    /// that path's length; ties go to the later successor.
    fn best_successor(&mut self, v: usize, seen: bool) -> Option<(u32, usize)> {
        let mut best: Option<(u32, usize)> = None;
        for k in 0..self.succ[v].len() {
            let s = self.succ[v][k];
            let r = if self.comp[s] == self.comp[v] {
                if self.visited[s] {
                    continue;
                }
                self.walk(s, seen)
            } else {
                self.fresh(s, seen)
            };
            if let Some(r) = r
                && best.is_none_or(|(b, _)| r >= b)
            {
                best = Some((r, s));
            }
        }
        best
    }

    /// Follows the longest path from `v` (as [`Walk::walk`] found it),
    /// appending its instructions to `out`.
    fn trace(&mut self, v: usize, seen: bool, out: &mut Vec<usize>) {
        out.push(v);
        if self.exit[v] {
            return;
        }
        let seen = seen || self.marks[v];
        // Left marked: the rest of the path is not to come back here.
        self.visited[v] = true;
        if let Some((_, s)) = self.best_successor(v, seen) {
            self.trace(s, seen, out);
        }
    }
}

/// DIR/<path>.txt: the program's translated instructions, those on `path`
/// marked `>`.
fn write_listing(
    dir: &Path,
    p: &PathDef,
    insns: &[Insn],
    path: Option<&(u32, Vec<usize>)>,
) -> Result<()> {
    let on: std::collections::HashSet<usize> = path
        .map(|(_, pcs)| pcs.iter().copied().collect())
        .unwrap_or_default();
    let total: u32 = insns.iter().map(|x| x.slots).sum();
    let mut text = format!("# {}: {}\n", p.id, p.what);
    text.push_str(&match path {
        Some((n, _)) => format!(
            "# {}: {n} of its {total} translated instructions on the path with tracing off \
             (marked >; a 64-bit load counts 2)\n",
            p.prog
        ),
        None => format!("# {}: no bound for this path (a loop)\n", p.prog),
    });
    for x in insns {
        let mark = if on.contains(&x.pc) { '>' } else { ' ' };
        text.push_str(&format!("{mark} {:>5}: {}\n", x.pc, x.disasm));
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(dir.join(format!("{}.txt", p.id)), text))
        .map_err(|e| Error::system(format!("--listing: cannot write to {}: {e}", dir.display())))
}

/// Strongly connected components (Tarjan, iterative): a component id per node.
fn sccs(succ: &[Vec<usize>]) -> Vec<usize> {
    let n = succ.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut comp = vec![usize::MAX; n];
    let mut next_index = 0;
    let mut ncomp = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, next successor to look at)
        let mut call: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut k)) = call.last_mut() {
            if *k < succ[v].len() {
                let w = succ[v][*k];
                *k += 1;
                if index[w] == usize::MAX {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                call.pop();
                if let Some(&(u, _)) = call.last() {
                    low[u] = low[u].min(low[v]);
                }
                if low[v] == index[v] {
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp[w] = ncomp;
                        if w == v {
                            break;
                        }
                    }
                    ncomp += 1;
                }
            }
        }
    }
    comp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insn(pc: usize, code: u8, off: i16, disasm: &str) -> Insn {
        Insn {
            pc,
            code,
            off,
            imm: 0,
            slots: if code == 0x18 { 2 } else { 1 },
            disasm: disasm.into(),
        }
    }

    #[test]
    fn longest_path_through_a_call() {
        // 0: if r1 == 0 goto 3;  1: call bpf_redirect_peer#1;  2: goto 5
        // 3: r0 = 1 (ldimm64, 2 slots);  5: exit
        let p = vec![
            insn(0, 0x15, 2, "if"),
            insn(1, 0x85, 0, "call bpf_redirect_peer#1"),
            insn(2, 0x05, 2, "goto pc+2"),
            insn(3, 0x18, 0, "r0 = 1"),
            insn(5, 0x95, 0, "exit"),
        ];
        assert_eq!(longest_path(&p, Some("redirect_peer"), &[]), Some(4));
        assert_eq!(
            search(&p, Some("redirect_peer"), &[], true),
            Some((4, vec![0, 1, 2, 5]))
        );
        // Not through the call: the branch with the 64-bit load (2 slots).
        assert_eq!(
            search(&p, None, &["redirect_peer"], true),
            Some((4, vec![0, 3, 5]))
        );
        assert_eq!(longest_path(&p, None, &[]), Some(4));
        assert_eq!(longest_path(&p, None, &["redirect_peer"]), Some(4));
        assert_eq!(longest_path(&p, Some("bpf_loop"), &[]), None);
    }

    #[test]
    fn subprograms_are_not_the_main_program() {
        // 0: if r1 == 0 goto 2;  1: call pc+2 (subprogram at 4);  2: r0 = 0
        // 3: exit;  4: r0 = 1 (subprogram);  5: exit
        let mut call = insn(1, 0x85, 0, "call pc+2#bpf_prog_x_flood_one");
        call.imm = 1; // as the dump shows it
        let p = vec![
            insn(0, 0x15, 1, "if"),
            call,
            insn(2, 0xb7, 0, "r0 = 0"),
            insn(3, 0x95, 0, "exit"),
            insn(4, 0xb7, 0, "r0 = 1"),
            insn(5, 0x95, 0, "exit"),
        ];
        assert_eq!(longest_path(&p, None, &[]), Some(3));
    }

    #[test]
    fn shared_code_is_counted_once_per_path() {
        // 0: if r1 == 0 goto 3;  1: r2 = 1;  2: goto 4;  3: r2 = 2
        // 4: if r3 != 0 goto 1 (a cycle in the graph);  5: exit
        let p = vec![
            insn(0, 0x15, 2, "if"),
            insn(1, 0xb7, 0, "r2 = 1"),
            insn(2, 0x05, 1, "goto pc+1"),
            insn(3, 0xb7, 0, "r2 = 2"),
            insn(4, 0x55, -4, "if r3 != 0 goto pc-4"),
            insn(5, 0x95, 0, "exit"),
        ];
        // Longest simple path: 0 3 4 1 2 (4 again is a revisit) … the
        // simple paths to exit are 0 1 2 4 5 and 0 3 4 5: 5 instructions.
        assert_eq!(longest_path(&p, None, &[]), Some(5));
        assert_eq!(search(&p, None, &[], true), Some((5, vec![0, 1, 2, 4, 5])));
    }
}
