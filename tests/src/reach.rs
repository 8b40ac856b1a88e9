//! Attaching containers in a lab and measuring who reaches whom: shared by
//! the differential tests and the demo.

use std::sync::Arc;

use anyhow::{Context as _, Result, bail};

use crate::{
    lab::{EXT_IF, EXT_V4, EXT_V6, Lab, NODE_IF, NODE_V4, NODE_V6},
    matrix::{Matrix, Proto},
    netns::Netns,
    probe::{arping, broadcast_reaches, ndisc, ping},
};

/// How an attachment is made: the backend and, for eBPF, the datapath.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Native,
    EbpfTc,
    EbpfXdp,
}

impl Flavor {
    pub const ALL: [Flavor; 3] = [Flavor::Native, Flavor::EbpfTc, Flavor::EbpfXdp];

    pub fn args(self) -> &'static [&'static str] {
        match self {
            Flavor::Native => &["--backend", "native"],
            Flavor::EbpfTc => &["--backend", "ebpf", "--datapath", "tc"],
            Flavor::EbpfXdp => &["--backend", "ebpf", "--datapath", "xdp"],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Flavor::Native => "native",
            Flavor::EbpfTc => "ebpf/tc",
            Flavor::EbpfXdp => "ebpf/xdp",
        }
    }
}

/// A container attached in a lab, with the addresses it was given.
pub struct Endpoint {
    pub label: String,
    pub ns: Arc<Netns>,
    pub v4: String,
    pub v6: String,
}

/// The fixed MAC of container `i`: the same on every backend, so neighbour
/// caches and the switch's table stay right across re-attaches.
pub fn mac_of(i: u8) -> String {
    format!("02:a7:00:00:00:{i:02x}")
}

/// Attaches container `i` (made if needed) with `mode`, `flavor` and extra args.
pub fn attach(lab: &Lab, i: u8, mode: &str, flavor: Flavor, extra: &[&str]) -> Result<Endpoint> {
    let label = format!("c{i}");
    let ns = lab.container(&label)?;
    let (v4, v6) = Lab::container_ip(i);
    let args = macvlan_args(ns.name(), i, mode, flavor, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.attach()
        .ok(&args)
        .with_context(|| format!("attaching {label} ({mode}, {})", flavor.name()))?;
    check_device_kind(&ns, mode, flavor)?;
    Ok(Endpoint {
        label,
        ns,
        v4: v4.split('/').next().unwrap_or_default().to_owned(),
        v6: v6.split('/').next().unwrap_or_default().to_owned(),
    })
}

/// The container's interface is what the flavor says: the kernel's own
/// macvlan in `mode` for the native backend (so a differential compares
/// with the real driver), a veth for ours.
fn check_device_kind(ns: &Netns, mode: &str, flavor: Flavor) -> Result<()> {
    let out = ns.ok(&["ip", "-d", "-j", "link", "show", "eth0"])?;
    let link: serde_json::Value = serde_json::from_str(&out)?;
    let info = &link[0]["linkinfo"];
    let (kind, want_kind) = (
        info["info_kind"].as_str(),
        match flavor {
            Flavor::Native => "macvlan",
            _ => "veth",
        },
    );
    if kind != Some(want_kind) {
        bail!(
            "{} eth0 is {kind:?}, not a {want_kind}: {out}",
            flavor.name()
        );
    }
    if flavor == Flavor::Native && info["info_data"]["mode"].as_str() != Some(mode) {
        bail!("the kernel macvlan's mode is not {mode}: {out}");
    }
    Ok(())
}

/// `attach add macvlan` of container `i` as [`attach`] makes it.
fn macvlan_args(netns: &str, i: u8, mode: &str, flavor: Flavor, extra: &[&str]) -> Vec<String> {
    let (v4, v6) = Lab::container_ip(i);
    let mut args: Vec<String> = [
        "add", "macvlan", "--mode", mode, "--parent", NODE_IF, "--netns", netns, "--ip", &v4,
        "--ip", &v6,
    ]
    .map(str::to_owned)
    .to_vec();
    if mode != "passthru" {
        args.extend(["--mac".to_owned(), mac_of(i)]);
    }
    args.extend(flavor.args().iter().chain(extra).map(|a| (*a).to_owned()));
    args
}

/// Attaches container `i` as [`attach`] would, where the attachment must be
/// refused: panics unless `attach` exits with `code` and its stderr says
/// `says`.
pub fn attach_refused(
    lab: &Lab,
    i: u8,
    mode: &str,
    flavor: Flavor,
    extra: &[&str],
    code: i32,
    says: &str,
) {
    let ns = lab.container(&format!("c{i}")).unwrap();
    let args = macvlan_args(ns.name(), i, mode, flavor, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lab.attach().run(&args).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(code) && stderr.contains(says),
        "attach {}: want exit {code} saying {says:?}, got {}\nstderr: {stderr}",
        args.join(" "),
        out.status
    );
}

/// Attaches container `i` (made if needed) as an ipvlan endpoint of the
/// node's parent: `mode` l2/l3/l3s, `flag` bridge/private/vepa.
pub fn attach_ipvlan(lab: &Lab, i: u8, mode: &str, flag: &str, extra: &[&str]) -> Result<Endpoint> {
    let label = format!("c{i}");
    let ns = lab.container(&label)?;
    let (v4, v6) = Lab::container_ip(i);
    let netns = ns.name().to_owned();
    let mut args = vec![
        "add", "ipvlan", "--mode", mode, "--flag", flag, "--parent", NODE_IF, "--netns", &netns,
        "--ip", &v4, "--ip", &v6,
    ];
    args.extend(extra);
    lab.attach()
        .ok(&args)
        .with_context(|| format!("attaching {label} (ipvlan {mode} {flag})"))?;
    Ok(Endpoint {
        label,
        ns,
        v4: v4.split('/').next().unwrap_or_default().to_owned(),
        v6: v6.split('/').next().unwrap_or_default().to_owned(),
    })
}

/// Attaches container `i` (made if needed) as a port of bridge (native) or
/// switch (ebpf) `bridge`, with its fixed MAC and addresses.
pub fn attach_bridge(
    lab: &Lab,
    i: u8,
    bridge: &str,
    backend: &str,
    extra: &[&str],
) -> Result<Endpoint> {
    let label = format!("c{i}");
    let ns = lab.container(&label)?;
    let (v4, v6) = Lab::container_ip(i);
    let mac = mac_of(i);
    let netns = ns.name().to_owned();
    let mut args = vec![
        "add",
        "bridge",
        "--bridge",
        bridge,
        "--backend",
        backend,
        "--netns",
        &netns,
        "--mac",
        &mac,
        "--ip",
        &v4,
        "--ip",
        &v6,
    ];
    args.extend(extra);
    lab.attach()
        .ok(&args)
        .with_context(|| format!("attaching {label} to {bridge} ({backend})"))?;
    Ok(Endpoint {
        label,
        ns,
        v4: v4.split('/').next().unwrap_or_default().to_owned(),
        v6: v6.split('/').next().unwrap_or_default().to_owned(),
    })
}

pub fn detach(lab: &Lab, ep: &Endpoint) -> Result<()> {
    lab.attach()
        .ok(&["del", "--netns", ep.ns.name()])
        .map(drop)
        .with_context(|| format!("detaching {}", ep.label))
}

/// Forgets every neighbour, so each probe resolves afresh and no answer
/// depends on what an earlier probe taught someone.
fn forget(all: &[&Netns]) {
    for ns in all {
        for family in ["-4", "-6"] {
            ns.ok(&["ip", family, "neigh", "flush", "all"])
                .unwrap_or_else(|e| panic!("{e:#}"));
        }
    }
}

/// Who reaches whom among the containers, the external host and the node.
/// With two containers: the container pair rows too.
pub fn measure(lab: &Lab, eps: &[&Endpoint]) -> Matrix {
    let mut m = Matrix::new();
    let mut all: Vec<&Netns> = vec![lab.ext(), lab.node()];
    all.extend(eps.iter().map(|e| e.ns.as_ref()));
    let mut probe = |from: &str, to: &str, proto: Proto, f: &dyn Fn() -> bool| {
        forget(&all);
        m.push(from, to, proto, f());
    };
    for a in eps {
        let (ns, ifn) = (a.ns.as_ref(), "eth0");
        probe(&a.label, "ext", Proto::V4, &|| ping(ns, EXT_V4));
        probe(&a.label, "ext", Proto::V6, &|| ping(ns, EXT_V6));
        probe(&a.label, "ext", Proto::Arp, &|| arping(ns, ifn, EXT_V4));
        probe("ext", &a.label, Proto::V4, &|| ping(lab.ext(), &a.v4));
        probe("ext", &a.label, Proto::V6, &|| ping(lab.ext(), &a.v6));
        probe("ext", &a.label, Proto::Bcast, &|| {
            broadcast_reaches(lab.ext(), EXT_IF, ns, ifn)
        });
        probe(&a.label, "node", Proto::V4, &|| ping(ns, NODE_V4));
        probe(&a.label, "node", Proto::V6, &|| ping(ns, NODE_V6));
        probe("node", &a.label, Proto::V4, &|| ping(lab.node(), &a.v4));
        probe("node", &a.label, Proto::V6, &|| ping(lab.node(), &a.v6));
        for b in eps.iter().filter(|b| b.label != a.label) {
            probe(&a.label, &b.label, Proto::V4, &|| ping(ns, &b.v4));
            probe(&a.label, &b.label, Proto::V6, &|| ping(ns, &b.v6));
            probe(&a.label, &b.label, Proto::Arp, &|| arping(ns, ifn, &b.v4));
            probe(&a.label, &b.label, Proto::Ndisc, &|| ndisc(ns, ifn, &b.v6));
            probe(&a.label, &b.label, Proto::Bcast, &|| {
                broadcast_reaches(ns, ifn, &b.ns, "eth0")
            });
        }
    }
    m
}
