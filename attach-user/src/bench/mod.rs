//! `attach bench`: the comparison against native macvlan, as a product
//! feature. One topology of namespaces is built fresh (see [`topology`]),
//! every contender on its own wire from one traffic source; the metrics
//! (see [`metrics`]) run contenders interleaved round by round; the results
//! come out as a table, JSON and an SVG chart ([`report`], [`svg`]); and
//! everything made is removed on the way out ([`cleanup`]).
//!
//! The bench runs in the root namespace but never touches it: it only
//! creates namespaces of its own and works inside them, running the engine
//! in its node namespace as a user would (`attach add …`, started in the
//! node's namespace).

mod args;
pub mod cleanup;
pub mod config;
pub mod generator;
pub mod machine;
pub mod metrics;
pub mod report;
pub mod run;
pub mod stats;
pub mod svg;
pub mod targets;
pub mod topology;

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use self::{
    cleanup::Cleanup,
    generator::Programs,
    machine::Machine,
    metrics::Ctx,
    stats::Results,
    topology::{Contender, Lab},
};
pub use args::BenchArgs;
pub use config::{Config, METRICS};

use crate::error::{Error, Result};

/// `attach bench --help`.
pub const HELP: &str = "\
Measure attach's datapaths against the node itself and native macvlan.

One topology is built fresh in network namespaces of its own (nothing in the root namespace is \
touched): a traffic source (`gen`), a node, and one veth wire per contender from the source to \
the node, where the node side of the wire plays the NIC (the parent). Contenders:
  host           the node's own address on the parent, no container: the limit
  native         kernel macvlan, bridge mode
  redirect-peer  a tc program doing only bpf_redirect_peer to one fixed veth (no lookup)
  ours-tc        attach's eBPF macvlan, tc datapath
  ours-xdp       attach's eBPF macvlan, xdp datapath
  bridge         veth + Linux bridge (most CNI setups; br_netfilter's state is reported)

Metrics (each as a ratio to host and to native macvlan where that makes sense):
  M1  64-byte UDP frames per second delivered into the container's stack. A generator of our \
own (BPF_PROG_TEST_RUN live frames, XDP_TX out of the wire veth) sends one flow, with UDP \
checksums; delivery is counted as the datagrams the container's IP layer took in (its \
per-datagram ECN counters; InReceives counts a GRO chain once, and is kept as IP passes). \
Generator and receiver share one vCPU. Sent vs delivered shows loss. A round's sample is made \
of slices of at least 0.25 s taken in turn with the other contenders'.
  M2  The XDP datapath's ceiling: the same frames redirected to the container veth and dropped \
there by XDP (no skb). Reference: dropping them on a parent itself.
  M3  TCP request/response latency, p50 and p99 (sockperf ping-pong, 64-byte messages; sockperf \
reports half the round trip; runs of at least 2 s, as it leaves its first 0.4 s out).
  M4  UDP socket packet rate (iperf3 -u, unpaced, 18-byte payload = 64-byte frames), received.
  M5  TCP stream throughput (iperf3, one stream): wire→container, container→wire, and \
container→container on one parent.
  M6  Per-program cost of every decision path: ns/packet (BPF_PROG_TEST_RUN, repeated) and \
translated instructions (an upper bound searched on the program, checked against the \
instructions one execution of the path's frame runs), with 1, 100 and 1000 endpoints in the \
tables.
  M7  Control plane: time to attach, then detach, 1, 10 and 100 endpoints one after another: \
ours (the CLI, and our CNI plugin attach-cni), native macvlan, and the reference CNI macvlan \
plugin (/usr/lib/cni/macvlan); both plugins with host-local IPAM, invoked as a runtime would \
(started in the node's namespace, CNI_* environment, configuration on stdin).

Method: TSO, GSO and TX checksum offload off on both ends of every wire, GRO on, fraglist GRO \
off unless --parent-gro-list (every offload setting is recorded); measured processes pinned to one vCPU at nice -20, receivers of socket \
tests on the other; other processes taking more than 10% of a CPU during a run are noted; \
neighbours are permanent entries; one discarded warm-up run per contender, then contenders \
interleaved round by round in alternating order (A B C …, … C B A, A B C …); median and min–max \
over the rounds; a ratio is the median over rounds of the contender's sample over the \
reference's sample of the same round (this VM's speed moves from one second to the next).

--quick runs M1, M2 and M6 only, with short runs (under two minutes; CI runs it so the harness \
never rots). --contenders and --m7-endpoints narrow a run to some contenders and to some of M7's \
sizes (CI runs every metric that way, with the shortest runs, so none of them rots). Progress \
goes to stderr, the table (or with -o json one JSON document) to stdout.

Needs root, bpffs on /sys/fs/bpf, and iproute2, ethtool, bpftool, iperf3, sockperf and \
(for M7's CNI numbers) Debian's containernetworking-plugins.";

fn need_root() -> Result<()> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::invalid(
            "attach bench needs root: it creates network namespaces and loads eBPF programs",
        ));
    }
    Ok(())
}

fn need_tools(cfg: &Config) -> Result<()> {
    let mut tools = vec!["ip", "ethtool", "nsenter", "ping", "bridge"];
    if cfg.wants("m3") {
        tools.push("sockperf");
    }
    if cfg.wants("m4") || cfg.wants("m5") {
        tools.push("iperf3");
    }
    if cfg.wants("m6") {
        tools.push("bpftool");
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = tools
        .into_iter()
        .filter(|t| !std::env::split_paths(&path).any(|d| d.join(t).is_file()))
        .collect();
    if !missing.is_empty() {
        return Err(Error::not_found(format!(
            "attach bench needs {} (Debian: iproute2 ethtool util-linux iputils-ping bpftool iperf3 sockperf)",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// The whole run; the report (text or JSON) is returned for stdout.
pub fn run(args: &BenchArgs, json: bool) -> Result<String> {
    cleanup::install_signal_handlers();
    let cfg = Config::from_args(args)?;
    need_root()?;
    crate::datapath::Datapath::check_bpffs()?;
    need_tools(&cfg)?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::system(format!("cannot find the attach binary itself: {e}")))?;
    let started = Instant::now();
    let progress = move |msg: &str| {
        eprintln!("[{:>6.1}s] {msg}", started.elapsed().as_secs_f64());
    };
    cleanup::sweep_stale(topology::NETNS_PREFIX, &exe);

    // Declared first, dropped last: removes everything below.
    let cleanup = Cleanup::new();
    let pid = std::process::id();
    let tmp = PathBuf::from(format!("/tmp/attach-bench-{pid}"));
    let pin_dir = PathBuf::from(format!("/sys/fs/bpf/attach-bench-{pid}"));
    for d in [&tmp, &pin_dir] {
        cleanup.dir(d);
        std::fs::create_dir_all(d)
            .map_err(|e| Error::system(format!("creating {}: {e}", d.display())))?;
    }
    let mut machine = Machine::now(cfg.measured_cpu, cfg.receiver_cpu);
    progress(&format!(
        "attach bench: {} round(s) of {:.1} s, metrics {}; {} ({} vCPU), kernel {}, load {}",
        cfg.rounds,
        cfg.duration.as_secs_f64(),
        cfg.metrics.join(" "),
        machine.cpu_model,
        machine.nproc,
        machine.kernel,
        machine.loadavg_at_start
    ));

    let contenders: &[Contender] = if cfg.needs_contenders() {
        &cfg.contenders
    } else {
        &[]
    };
    let needs_lab = cfg.needs_contenders() || cfg.wants("m7");
    let lab = if needs_lab {
        progress("building the lab");
        Some(Lab::build(
            &cleanup,
            &exe,
            contenders,
            cfg.parent_gro_list,
            &progress,
        )?)
    } else {
        None
    };
    let (peer_if, out_if) = match lab.as_ref().and_then(|l| l.site(Contender::RedirectPeer)) {
        Some(s) => (
            lab.as_ref().expect("lab").node.ifindex("rp-h")?,
            s.parent_ifindex,
        ),
        None => (0, 0),
    };
    let mut progs = Programs::load(&pin_dir.join("progs"), peer_if, out_if)?;
    if let (Some(lab), Some(site)) = (
        &lab,
        lab.as_ref().and_then(|l| l.site(Contender::RedirectPeer)),
    ) {
        progs.attach_redirect_peer(&lab.node, site.parent_ifindex, peer_if)?;
        lab.check_site(site)?;
    }

    let mut results = Results::default();
    let mut m6 = None;
    for m in &cfg.metrics {
        cleanup::check()?;
        progress(&format!("== {} ==", m.to_uppercase()));
        if m == "m6" {
            m6 = Some(metrics::m6::run(
                &metrics::m6::SIZES,
                cfg.rounds,
                &pin_dir,
                cfg.measured_cpu,
                cfg.listing.as_deref(),
                &progress,
            )?);
            continue;
        }
        let lab = lab
            .as_ref()
            .expect("the lab is built for every metric but M6");
        let mut ctx = Ctx {
            cfg: &cfg,
            lab,
            progs: &mut progs,
            results: &mut results,
            tmp: tmp.clone(),
            pin_dir: pin_dir.clone(),
            progress: &progress,
        };
        match m.as_str() {
            "m1" => metrics::m1::run(&mut ctx)?,
            "m2" => metrics::m2::run(&mut ctx)?,
            "m3" => metrics::m3::run(&mut ctx)?,
            "m4" => metrics::m4::run(&mut ctx)?,
            "m5" => metrics::m5::run(&mut ctx)?,
            "m7" => metrics::m7::run(&mut ctx, &cleanup)?,
            _ => unreachable!("metrics are checked"),
        }
    }
    results.finish(&metrics::all_cases());
    machine.loadavg_at_end = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    machine.elapsed_s = stats::round4(started.elapsed().as_secs_f64());

    let out = {
        let doc = report::Doc::new(
            &cfg,
            machine,
            lab.as_ref().map(|l| &l.facts),
            &results,
            m6.as_ref(),
            generator::used(),
        );
        if let Some(path) = &cfg.svg {
            write_svg(path, &doc)?;
            progress(&format!("chart written to {}", path.display()));
        }
        if json { doc.json() } else { doc.text() }
    };
    progress("cleaning up");
    drop(progs);
    drop(lab);
    drop(cleanup);
    Ok(out)
}

fn write_svg(path: &Path, doc: &report::Doc) -> Result<()> {
    std::fs::write(path, svg::chart(doc))
        .map_err(|e| Error::system(format!("writing {}: {e}", path.display())))
}
