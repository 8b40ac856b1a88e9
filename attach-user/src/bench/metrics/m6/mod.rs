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
    path::{Path, PathBuf},
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
        generator::udp_frame,
        run::{high_priority, pin_to},
        stats::Summary,
    },
    datapath::Datapath,
    error::{Error, Result},
};

mod emulate;
mod graph;
mod kernel_maps;
mod skb_layout;

pub use graph::{Insn, longest_path};
mod paths;

use graph::{search, xlated_dump};
use paths::{ENDPOINTS_MAP, Frame, Hook, PARENTS_MAP, PATHS, PathDef};

pub const SIZES: [usize; 3] = [1, 100, 1000];
/// Endpoints per parent (the layout M6 has always measured).
const PER_PARENT: usize = 250;
/// Target time of one measured test run.
const RUN_NS: f64 = 150e6;

const EXT_MAC: MacAddr = [0x02, 0xee, 0, 0, 0, 1];
const UNKNOWN_MAC: MacAddr = [0x02, 0xee, 0, 0, 0, 0x99];
/// An endpoint in the table but not in the endpoint cache (its slot taken
/// by another endpoint, or the cache not filled yet).
const UNCACHED_MAC: MacAddr = [0x02, 0xee, 0, 0, 0, 0x98];

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
    /// Translated instructions one execution of the path's frame ran,
    /// stepped through the program's translated dump with the maps the
    /// kernel holds (see `emulate`), its verdict the one BPF_PROG_TEST_RUN
    /// returned. Within `decision_insns`, or the bound is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executed_insns: Option<u32>,
    /// Why a path has no `executed_insns` (what the emulation met).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_executed: Option<String>,
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
    crate::bench::run::ip_batch(None, &cmds)?;
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
            executed_insns: None,
            not_executed: None,
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
    // The bound against an execution: each path's frame stepped through
    // the translated program, its verdict the kernel's.
    let skb = skb_layout::learn();
    for (r, p) in results.iter_mut().zip(&PATHS) {
        if first.eps.len() < p.min_endpoints {
            continue;
        }
        let (frame, ifindex) = input(first, p.frame);
        let ran = match (p.hook, &skb) {
            (Hook::Xdp, _) => emulate::run_xdp(&dumps[p.prog], &frame, ifindex),
            (Hook::Tc, Ok(l)) => {
                emulate::run(&dumps[p.prog], &frame, ifindex, emulate::Context::Tc(l))
            }
            (Hook::Tc, Err(e)) => Err(format!("this kernel's sk_buff layout: {e}")),
        };
        let (_, kernel) = test_run(first, p, 1)?;
        match ran {
            Ok(x) if x.verdict == kernel => r.executed_insns = Some(x.insns),
            Ok(x) => {
                r.not_executed = Some(format!(
                    "the emulated execution returned {}, BPF_PROG_TEST_RUN {kernel}",
                    x.verdict
                ));
            }
            Err(e) => r.not_executed = Some(e),
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
