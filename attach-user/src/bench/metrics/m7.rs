//! M7 — control plane: time to attach, then detach, 1, 10 and 100
//! endpoints one after another, as a runtime would (one process per
//! endpoint, in the node's namespace):
//! - `ours`: `attach add macvlan … --ip … --no-probe` / `attach del` (eBPF
//!   backend, tc; no plugin below asks the wire about its address either);
//! - `ours-probed`: `ours` with the address conflict probe, as `add` runs by
//!   default (its window, `attach::conflict::WINDOW`, is most of the cost);
//! - `ours-cni`: our CNI plugin (`attach-cni`, beside the engine's binary)
//!   with the same eBPF macvlan, invoked exactly as the reference plugin
//!   below, with the same IPAM (no agent runs: it works in-process), no
//!   probe (`"noProbe": true`);
//! - `native`: `ours` with `--backend native` (a kernel macvlan);
//! - `cni`: Debian's reference CNI macvlan plugin (`/usr/lib/cni/macvlan`,
//!   IPAM `host-local` with a data directory of the bench's own), invoked
//!   per the CNI spec: CNI_* environment, network configuration on stdin.
//!
//! Every process is started in the node's namespace directly, as by a
//! runtime living there (no `nsenter` exec on the clock): the measuring
//! thread enters the node's namespace and spawns without a fork
//! (`posix_spawn`, as Go runtimes spawn plugins with a vfork-style clone), so
//! copying the bench's own page tables is not on any contender's clock.

use std::{io::Write as _, path::Path, process::Stdio, time::Instant};

use super::{Ctx, watched};
use crate::{
    bench::{
        cleanup::Cleanup,
        run::Ns,
        stats::{Better, Case, detail, in_round_order},
    },
    error::{Error, Result},
};

pub const SIZES: [usize; 3] = crate::bench::config::M7_SIZES;
pub const CNI_PLUGIN: &str = "/usr/lib/cni/macvlan";
const CNI_DIR: &str = "/usr/lib/cni";
pub const IMPLS: [&str; 5] = ["ours", "ours-cni", "native", "cni", "ours-probed"];

const fn case(id: &'static str, title: &'static str) -> Case {
    Case {
        metric: "M7",
        id,
        title,
        unit: "ms",
        better: Better::Lower,
        refs: &["native", "cni"],
    }
}

pub fn cases() -> [Case; 6] {
    [
        case("attach_1", "Time to attach 1 endpoint"),
        case(
            "attach_10",
            "Time to attach 10 endpoints, one after another",
        ),
        case(
            "attach_100",
            "Time to attach 100 endpoints, one after another",
        ),
        case("detach_1", "Time to detach 1 endpoint"),
        case(
            "detach_10",
            "Time to detach 10 endpoints, one after another",
        ),
        case(
            "detach_100",
            "Time to detach 100 endpoints, one after another",
        ),
    ]
}

struct Containers {
    ns: Vec<Ns>,
}

/// Our CNI plugin, installed beside the engine's binary.
fn our_plugin(ctx: &Ctx) -> std::path::PathBuf {
    ctx.lab.exe.with_file_name("attach-cni")
}

/// The network configuration each plugin gets: the same mode and IPAM
/// (host-local, a data directory and subnet of each plugin's own).
fn cni_config(ctx: &Ctx, imp: &str) -> String {
    let parent = &ctx.lab.m7_parent;
    let ipam = |subnet: &str| {
        serde_json::json!({
            "type": "host-local",
            "ranges": [[{"subnet": subnet}]],
            "dataDir": ctx.tmp.join(format!("cni-{imp}")),
        })
    };
    let mut conf = if imp == "cni" {
        serde_json::json!({
            "type": "macvlan",
            "master": parent,
            "mode": "bridge",
            "ipam": ipam("10.203.0.0/16"),
        })
    } else {
        serde_json::json!({
            "type": "attach-cni",
            "kind": "macvlan",
            "parent": parent,
            "mode": "bridge",
            "noProbe": true,
            "ipam": ipam("10.204.0.0/16"),
        })
    };
    conf["cniVersion"] = "1.0.0".into();
    conf["name"] = format!("attach-bench-{imp}").into();
    conf.to_string()
}

fn cni(ctx: &Ctx, imp: &str, cmd: &str, ns: &Ns, id: usize) -> Result<()> {
    let config = cni_config(ctx, imp);
    let plugin = match imp {
        "cni" => CNI_PLUGIN.into(),
        _ => our_plugin(ctx).to_string_lossy().into_owned(),
    };
    let mut c = ctx.lab.node.command(&[&plugin]);
    c.env("CNI_COMMAND", cmd)
        .env(
            "CNI_CONTAINERID",
            format!("attach-bench-{}-{imp}-{id}", std::process::id()),
        )
        .env("CNI_NETNS", &ns.path)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", CNI_DIR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .map_err(|e| Error::system(format!("cannot run {plugin}: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(config.as_bytes())
        .map_err(|e| Error::system(format!("writing the CNI config: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| Error::system(format!("waiting for {plugin}: {e}")))?;
    if !out.status.success() {
        return Err(Error::system(format!(
            "CNI {cmd} in {}: {}: {}",
            ns.name,
            out.status,
            String::from_utf8_lossy(&out.stdout).trim()
        )));
    }
    Ok(())
}

fn add(ctx: &Ctx, imp: &str, ns: &Ns, i: usize) -> Result<()> {
    let ip = format!("10.202.{}.{}/16", i / 200, i % 200 + 2);
    let mut args = vec![
        "add",
        "macvlan",
        "--parent",
        &ctx.lab.m7_parent,
        "--netns",
        &ns.name,
        "--ip",
        &ip,
    ];
    match imp {
        "ours" => args.push("--no-probe"),
        "ours-probed" => {}
        "native" => args.extend(["--backend", "native", "--no-probe"]),
        _ => return cni(ctx, imp, "ADD", ns, i),
    }
    ctx.lab.attach(&args).map(drop)
}

fn del(ctx: &Ctx, imp: &str, ns: &Ns, i: usize) -> Result<()> {
    match imp {
        "cni" | "ours-cni" => cni(ctx, imp, "DEL", ns, i),
        _ => ctx.lab.attach(&["del", "--netns", &ns.name]).map(drop),
    }
}

/// (attach ms, detach ms) of `n` endpoints, each process spawned from this
/// thread in the node's namespace.
fn cycle(ctx: &Ctx, c: &Containers, imp: &str, n: usize) -> Result<(f64, f64)> {
    ctx.lab.node.run(|| timed_cycle(ctx, c, imp, n))?
}

fn timed_cycle(ctx: &Ctx, c: &Containers, imp: &str, n: usize) -> Result<(f64, f64)> {
    let t = Instant::now();
    for (i, ns) in c.ns[..n].iter().enumerate() {
        add(ctx, imp, ns, i)?;
    }
    let attach = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    for (i, ns) in c.ns[..n].iter().enumerate() {
        del(ctx, imp, ns, i)?;
    }
    Ok((attach, t.elapsed().as_secs_f64() * 1e3))
}

pub fn run(ctx: &mut Ctx, cleanup: &Cleanup) -> Result<()> {
    let impls: Vec<&str> = IMPLS
        .iter()
        .copied()
        .filter(|i| *i != "cni" || Path::new(CNI_PLUGIN).exists())
        .filter(|i| *i != "ours-cni" || our_plugin(ctx).exists())
        .collect();
    for missing in IMPLS.iter().filter(|i| !impls.contains(i)) {
        (ctx.progress)(&match *missing {
            "cni" => format!(
                "M7: {CNI_PLUGIN} is missing (Debian package containernetworking-plugins): no CNI numbers"
            ),
            _ => format!(
                "M7: {} is missing (build attach-cni): no ours-cni numbers",
                our_plugin(ctx).display()
            ),
        });
    }
    let sizes = &ctx.cfg.m7_endpoints;
    let max = *sizes.iter().max().expect("sizes");
    (ctx.progress)(&format!(
        "M7: creating {max} container namespaces (not timed)"
    ));
    let mark = cleanup.mark();
    let result = (|| -> Result<()> {
        let mut ns = Vec::new();
        for i in 0..max {
            ns.push(Ns::create(cleanup, &format!("{}-m7-{i}", ctx.lab.tag))?);
        }
        let c = Containers { ns };
        (ctx.progress)("M7 warm-up (discarded)");
        for imp in &impls {
            cycle(ctx, &c, imp, 1)?;
        }
        let cases = cases();
        for round in 0..ctx.cfg.rounds {
            for &n in sizes {
                let k = SIZES
                    .iter()
                    .position(|s| *s == n)
                    .expect("one of the sizes");
                for imp in in_round_order(&impls, round) {
                    let ((a, d), busy) = watched(|| cycle(ctx, &c, imp, n))?;
                    let per = |ms: f64| {
                        detail(&[("endpoints", n as f64), ("ms_per_endpoint", ms / n as f64)])
                    };
                    ctx.record(&cases[k], imp, round, a, per(a), busy.clone());
                    ctx.record(&cases[k + SIZES.len()], imp, round, d, per(d), busy);
                }
            }
        }
        Ok(())
    })();
    // A hundred namespaces are not kept for the rest of the run.
    cleanup.release_netns_from(mark);
    result?;
    super::m7_scale::run(ctx, cleanup)
}
