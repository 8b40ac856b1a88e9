//! The bench's lab: one traffic source, one node, and one wire per
//! contender, all in namespaces of their own.
//!
//! ```text
//!  gen netns                      node netns                      containers
//!  g-host   ── veth wire ──  n-host    10.201.1.2 (the node itself)
//!  g-native ── veth wire ──  n-native  ── macvlan bridge ──────────  native, native2
//!  g-rpeer  ── veth wire ──  n-rpeer   ── bench_peer ── rp-h ══════  rpeer
//!  g-tc     ── veth wire ──  n-tc      ── attach (tc) ── atk… ═════  tc, tc2
//!  g-xdp    ── veth wire ──  n-xdp     ── attach (xdp) ── atk… ════  xdp, xdp2
//!  g-bridge ── veth wire ──  n-bridge  ── br0 ── br-h1/br-h2 ══════  bridge, bridge2
//!  g-m7     ── veth wire ──  n-m7      (M7: attach/detach timing)
//! ```
//! Wire k carries 10.201.k.0/24: the generator side is .1, the contender .2,
//! its second container (for container↔container) .3. Every wire is made
//! realistic the same way: TSO, GSO and TX checksum offload off at both ends
//! (a wire carries MTU-sized frames with complete checksums), GRO on (a NIC
//! has it; on a veth it also turns on the NAPI that XDP_TX frames need).

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::{
    cleanup::Cleanup,
    run::{Ns, fmt_mac},
};
use crate::error::{Error, Result};

/// Namespaces of a run are `atb-<pid>-<role>`.
pub const NETNS_PREFIX: &str = "atb-";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Contender {
    Host,
    Native,
    RedirectPeer,
    OursTc,
    OursXdp,
    Bridge,
}

impl Contender {
    pub const ALL: [Contender; 6] = [
        Contender::Host,
        Contender::Native,
        Contender::RedirectPeer,
        Contender::OursTc,
        Contender::OursXdp,
        Contender::Bridge,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Contender::Host => "host",
            Contender::Native => "native",
            Contender::RedirectPeer => "redirect-peer",
            Contender::OursTc => "ours-tc",
            Contender::OursXdp => "ours-xdp",
            Contender::Bridge => "bridge",
        }
    }

    /// Used in device and namespace names.
    const fn short(self) -> &'static str {
        match self {
            Contender::Host => "host",
            Contender::Native => "native",
            Contender::RedirectPeer => "rpeer",
            Contender::OursTc => "tc",
            Contender::OursXdp => "xdp",
            Contender::Bridge => "bridge",
        }
    }

    /// Number of its wire (third octet of its subnet).
    pub const fn k(self) -> u8 {
        match self {
            Contender::Host => 1,
            Contender::Native => 2,
            Contender::RedirectPeer => 3,
            Contender::OursTc => 4,
            Contender::OursXdp => 5,
            Contender::Bridge => 6,
        }
    }

    pub const fn what(self) -> &'static str {
        match self {
            Contender::Host => "the node's own address on the parent, no container (the limit)",
            Contender::Native => "kernel macvlan, bridge mode",
            Contender::RedirectPeer => {
                "tc program doing only bpf_redirect_peer to one fixed veth (no lookup)"
            }
            Contender::OursTc => "attach eBPF macvlan, tc datapath (tcx + bpf_redirect_peer)",
            Contender::OursXdp => "attach eBPF macvlan, xdp datapath (XDP devmap redirect)",
            Contender::Bridge => "veth + Linux bridge (what most CNI setups use)",
        }
    }

    /// Whether it has a second container on the same parent.
    pub const fn has_pair(self) -> bool {
        matches!(
            self,
            Contender::Native | Contender::OursTc | Contender::OursXdp | Contender::Bridge
        )
    }
}

/// Where a contender's frames land: an interface with an address.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub ns: Ns,
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

/// One contender on its wire.
#[derive(Clone, Debug)]
pub struct Site {
    pub contender: Contender,
    pub gen_if: String,
    pub gen_ifindex: u32,
    pub gen_mac: [u8; 6],
    pub gen_ip: Ipv4Addr,
    /// The node side of the wire (the "NIC").
    pub parent: String,
    pub parent_ifindex: u32,
    pub rx: Endpoint,
    pub pair: Option<Endpoint>,
}

/// Facts about the lab recorded with the results.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LabFacts {
    /// The engine's pins of the node namespace (removed when the run ends).
    pub node_pins: Option<String>,
    /// XDP attach mode of the ours-xdp parent ("native" or "generic").
    pub xdp_mode: Option<String>,
    /// br_netfilter in the node namespace (contender `bridge`).
    pub br_netfilter: BTreeMap<String, String>,
    /// Offload settings (`ethtool -k`) of every interface on a measured path.
    pub offloads: BTreeMap<String, BTreeMap<String, String>>,
    /// Per contender: parent, container namespace, address, MAC.
    pub sites: Vec<BTreeMap<String, String>>,
}

pub struct Lab {
    pub tag: String,
    pub exe: PathBuf,
    pub source: Ns,
    pub node: Ns,
    pub sites: Vec<Site>,
    /// The parent M7 attaches to (no traffic).
    pub m7_parent: String,
    pub facts: LabFacts,
}

const fn mac(k: u8, last: u8) -> [u8; 6] {
    [0x02, 0xa7, 0xb0, k, 0x00, last]
}

const fn ip(k: u8, last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 201, k, last)
}

/// ethtool features recorded for every interface.
const FEATURES: [&str; 8] = [
    "tx-checksumming",
    "scatter-gather",
    "tcp-segmentation-offload",
    "generic-segmentation-offload",
    "generic-receive-offload",
    "large-receive-offload",
    "rx-udp-gro-forwarding",
    "rx-gro-list",
];

impl Lab {
    pub fn build(
        cleanup: &Cleanup,
        exe: &Path,
        contenders: &[Contender],
        parent_gro_list: bool,
        progress: &dyn Fn(&str),
    ) -> Result<Lab> {
        let tag = format!("{NETNS_PREFIX}{}", std::process::id());
        let source = Ns::create(cleanup, &format!("{tag}-gen"))?;
        let node = Ns::create(cleanup, &format!("{tag}-node"))?;
        // Before anything is attached: `attach reset` there on the way out.
        cleanup.engine_node(&node.path, exe);

        let mut wires: Vec<(String, String, u8)> = contenders
            .iter()
            .map(|c| {
                (
                    format!("g-{}", c.short()),
                    format!("n-{}", c.short()),
                    c.k(),
                )
            })
            .collect();
        wires.push(("g-m7".into(), "n-m7".into(), 7));
        let mut gen_cmds = Vec::new();
        let mut node_cmds = Vec::new();
        for (g, n, k) in &wires {
            gen_cmds.push(format!(
                "link add {g} address {} type veth peer name {n} address {} netns {}",
                fmt_mac(&mac(*k, 1)),
                fmt_mac(&mac(*k, 0xfe)),
                node.name
            ));
            gen_cmds.push(format!("addr add {}/24 dev {g}", ip(*k, 1)));
            gen_cmds.push(format!("link set {g} up"));
            node_cmds.push(format!("link set {n} up"));
        }
        source.ip(&gen_cmds.iter().map(String::as_str).collect::<Vec<_>>())?;
        node.ip(&node_cmds.iter().map(String::as_str).collect::<Vec<_>>())?;
        for (g, n, _) in &wires {
            for (ns, dev) in [(&source, g), (&node, n)] {
                ns.ok(&[
                    "ethtool", "-K", dev, "tso", "off", "gso", "off", "tx", "off", "gro", "on",
                ])?;
            }
            if parent_gro_list {
                node.ok(&["ethtool", "-K", n, "rx-gro-list", "on"])?;
            }
        }

        let mut lab = Lab {
            tag: tag.clone(),
            exe: exe.to_owned(),
            source,
            node,
            sites: Vec::new(),
            m7_parent: "n-m7".into(),
            facts: LabFacts::default(),
        };
        for &c in contenders {
            progress(&format!("setting up {} ({})", c.name(), c.what()));
            let site = lab.make_site(cleanup, c)?;
            lab.sites.push(site);
        }
        lab.neighbours()?;
        lab.check_reachable()?;
        lab.record_facts()?;
        Ok(lab)
    }

    pub fn site(&self, c: Contender) -> Option<&Site> {
        self.sites.iter().find(|s| s.contender == c)
    }

    /// Runs the engine in the node, as a user or runtime of that node would
    /// (`attach <args>`, started in the node's namespace).
    pub fn attach(&self, args: &[&str]) -> Result<String> {
        let exe = self.exe.to_string_lossy().into_owned();
        let argv: Vec<&str> = std::iter::once(exe.as_str())
            .chain(args.iter().copied())
            .collect();
        self.node.ok(&argv)
    }

    fn container(&self, cleanup: &Cleanup, c: Contender, n: u8) -> Result<Ns> {
        let suffix = if n == 2 { "2" } else { "" };
        Ns::create(cleanup, &format!("{}-{}{suffix}", self.tag, c.short()))
    }

    fn make_site(&self, cleanup: &Cleanup, c: Contender) -> Result<Site> {
        let k = c.k();
        let parent = format!("n-{}", c.short());
        let endpoint = |ns: Ns, last: u8| Endpoint {
            ns,
            ifname: "eth0".into(),
            ip: ip(k, last),
            mac: mac(k, last),
        };
        let (rx, pair) = match c {
            Contender::Host => {
                self.node
                    .ip(&[&format!("addr add {}/24 dev {parent}", ip(k, 2))])?;
                let rx = Endpoint {
                    ns: self.node.clone(),
                    ifname: parent.clone(),
                    ip: ip(k, 2),
                    mac: mac(k, 0xfe),
                };
                (rx, None)
            }
            Contender::Native | Contender::OursTc | Contender::OursXdp => {
                let mut eps = Vec::new();
                for n in 1..=2u8 {
                    let ns = self.container(cleanup, c, n)?;
                    let ep = endpoint(ns, n + 1);
                    let mut args = vec![
                        "add".to_owned(),
                        "macvlan".into(),
                        "--parent".into(),
                        parent.clone(),
                        "--netns".into(),
                        ep.ns.name.clone(),
                        "--ip".into(),
                        format!("{}/24", ep.ip),
                        "--mac".into(),
                        fmt_mac(&ep.mac),
                    ];
                    match c {
                        Contender::Native => {
                            args.extend(["--backend".into(), "native".into()]);
                        }
                        Contender::OursXdp => {
                            args.extend(["--datapath".into(), "xdp".into()]);
                        }
                        _ => {}
                    }
                    self.attach(&args.iter().map(String::as_str).collect::<Vec<_>>())
                        .map_err(|e| e.context(format!("attaching {}", c.name())))?;
                    eps.push(ep);
                }
                let pair = eps.pop();
                (eps.pop().expect("two endpoints"), pair)
            }
            Contender::RedirectPeer => {
                let ns = self.container(cleanup, c, 1)?;
                let ep = endpoint(ns, 2);
                self.node.ip(&[
                    &format!(
                        "link add rp-h type veth peer name eth0 address {} netns {}",
                        fmt_mac(&ep.mac),
                        ep.ns.name
                    ),
                    "link set rp-h up",
                ])?;
                ep.ns.ip(&[
                    &format!("addr add {}/24 dev eth0", ep.ip),
                    "link set eth0 up",
                ])?;
                // The programs are attached once they are loaded
                // (`Programs::attach_redirect_peer`): they need these indexes.
                (ep, None)
            }
            Contender::Bridge => {
                self.node.ip(&[
                    "link add br0 type bridge stp_state 0 forward_delay 0",
                    &format!("link set {parent} master br0"),
                    "link set br0 up",
                ])?;
                let mut eps = Vec::new();
                for n in 1..=2u8 {
                    let ns = self.container(cleanup, c, n)?;
                    let ep = endpoint(ns, n + 1);
                    let h = format!("br-h{n}");
                    self.node.ip(&[
                        &format!(
                            "link add {h} type veth peer name eth0 address {} netns {}",
                            fmt_mac(&ep.mac),
                            ep.ns.name
                        ),
                        &format!("link set {h} master br0"),
                        &format!("link set {h} up"),
                    ])?;
                    ep.ns.ip(&[
                        &format!("addr add {}/24 dev eth0", ep.ip),
                        "link set eth0 up",
                    ])?;
                    // Static FDB entries: no flooding while the bridge learns,
                    // no ageing during a long run.
                    self.node.ok(&[
                        "bridge",
                        "fdb",
                        "replace",
                        &fmt_mac(&ep.mac),
                        "dev",
                        &h,
                        "master",
                        "static",
                    ])?;
                    eps.push(ep);
                }
                self.node.ok(&[
                    "bridge",
                    "fdb",
                    "replace",
                    &fmt_mac(&mac(k, 1)),
                    "dev",
                    &parent,
                    "master",
                    "static",
                ])?;
                let pair = eps.pop();
                (eps.pop().expect("two endpoints"), pair)
            }
        };
        let gen_if = format!("g-{}", c.short());
        Ok(Site {
            contender: c,
            gen_ifindex: self.source.ifindex(&gen_if)?,
            gen_if,
            gen_mac: mac(k, 1),
            gen_ip: ip(k, 1),
            parent_ifindex: self.node.ifindex(&parent)?,
            parent,
            rx,
            pair,
        })
    }

    /// Warm neighbours: permanent entries everywhere, so no ARP happens
    /// during a run and no entry goes stale.
    fn neighbours(&self) -> Result<()> {
        let neigh = |ip: Ipv4Addr, mac: &[u8; 6], dev: &str| {
            format!(
                "neigh replace {ip} lladdr {} dev {dev} nud permanent",
                fmt_mac(mac)
            )
        };
        let mut gen_cmds = Vec::new();
        for s in &self.sites {
            let eps: Vec<&Endpoint> = std::iter::once(&s.rx).chain(s.pair.as_ref()).collect();
            for ep in &eps {
                gen_cmds.push(neigh(ep.ip, &ep.mac, &s.gen_if));
                let mut cmds = vec![neigh(s.gen_ip, &s.gen_mac, &ep.ifname)];
                for other in eps.iter().filter(|o| o.ip != ep.ip) {
                    cmds.push(neigh(other.ip, &other.mac, &ep.ifname));
                }
                ep.ns
                    .ip(&cmds.iter().map(String::as_str).collect::<Vec<_>>())?;
            }
        }
        self.source
            .ip(&gen_cmds.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Every contender answers a ping from the generator side, and its
    /// containers each other's (before anything is measured). The
    /// redirect-peer contender is checked once its programs are attached.
    fn check_reachable(&self) -> Result<()> {
        for s in &self.sites {
            if s.contender != Contender::RedirectPeer {
                self.check_site(s)?;
            }
        }
        Ok(())
    }

    pub fn check_site(&self, s: &Site) -> Result<()> {
        let ping = |from: &Ns, to: Ipv4Addr| {
            from.ok(&["ping", "-c", "1", "-W", "2", &to.to_string()])
                .map_err(|e| {
                    Error::system(format!(
                        "{}: {} cannot reach {to}; the contender does not work: {e}",
                        s.contender.name(),
                        from.name
                    ))
                })
        };
        ping(&self.source, s.rx.ip)?;
        if let Some(p) = &s.pair {
            ping(&self.source, p.ip)?;
            ping(&p.ns, s.rx.ip)?;
        }
        Ok(())
    }

    fn record_facts(&mut self) -> Result<()> {
        let cookie = self.node.run(crate::netns::current_cookie)??;
        self.facts.node_pins = Some(format!("{}/node-{cookie}", attach_common::PIN_ROOT));
        let list = self.attach(&["-o", "json", "list"])?;
        let recs: serde_json::Value = serde_json::from_str(&list)
            .map_err(|e| Error::system(format!("attach list -o json: {e}: {list}")))?;
        self.facts.xdp_mode = recs.as_array().and_then(|a| {
            a.iter()
                .find(|r| r["parent"] == "n-xdp")
                .and_then(|r| r["xdp_mode"].as_str().map(str::to_owned))
        });
        self.facts.br_netfilter = self.node.run(br_netfilter)?;
        let mut offloads = BTreeMap::new();
        let mut ifaces: Vec<(Ns, String, String)> = Vec::new();
        for s in &self.sites {
            let c = s.contender.name();
            ifaces.push((
                self.source.clone(),
                s.gen_if.clone(),
                format!("{c}: wire, generator side"),
            ));
            ifaces.push((
                self.node.clone(),
                s.parent.clone(),
                format!("{c}: wire, node side (parent)"),
            ));
            for (ep, role) in [
                (Some(&s.rx), "container"),
                (s.pair.as_ref(), "second container"),
            ] {
                if let Some(ep) = ep
                    && ep.ns.name != self.node.name
                {
                    ifaces.push((
                        ep.ns.clone(),
                        ep.ifname.clone(),
                        format!("{c}: {role} {}", ep.ifname),
                    ));
                }
            }
        }
        for (ns, dev, label) in ifaces {
            offloads.insert(format!("{label} ({dev})"), ethtool_features(&ns, &dev)?);
        }
        // Host-side veths made by the engine and by the bench.
        let links = self
            .node
            .ok(&["ip", "-br", "link", "show", "type", "veth"])?;
        for name in links
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|n| n.split('@').next().unwrap_or(n))
            .filter(|n| !n.starts_with("n-"))
        {
            offloads.insert(
                format!("node: host-side veth ({name})"),
                ethtool_features(&self.node, name)?,
            );
        }
        self.facts.offloads = offloads;
        self.facts.sites = self
            .sites
            .iter()
            .map(|s| {
                let mut m = BTreeMap::new();
                m.insert("contender".into(), s.contender.name().into());
                m.insert("what".into(), s.contender.what().into());
                m.insert("parent".into(), s.parent.clone());
                m.insert("netns".into(), s.rx.ns.name.clone());
                m.insert("ip".into(), s.rx.ip.to_string());
                m.insert("mac".into(), fmt_mac(&s.rx.mac));
                if let Some(p) = &s.pair {
                    m.insert("second_netns".into(), p.ns.name.clone());
                    m.insert("second_ip".into(), p.ip.to_string());
                }
                m
            })
            .collect();
        Ok(())
    }
}

fn ethtool_features(ns: &Ns, dev: &str) -> Result<BTreeMap<String, String>> {
    let out = ns.ok(&["ethtool", "-k", dev])?;
    let mut m = BTreeMap::new();
    for line in out.lines() {
        let Some((k, v)) = line.trim().split_once(':') else {
            continue;
        };
        if FEATURES.contains(&k) {
            let v = v.trim();
            m.insert(
                k.to_owned(),
                v.split_whitespace().next().unwrap_or(v).to_owned(),
            );
        }
    }
    Ok(m)
}

/// br_netfilter's state in the calling thread's namespace.
fn br_netfilter() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let module = if Path::new("/sys/module/br_netfilter").exists() {
        "loaded module"
    } else if Path::new("/proc/sys/net/bridge").exists() {
        "built into the kernel"
    } else {
        "absent"
    };
    m.insert("br_netfilter".into(), module.into());
    for knob in [
        "bridge-nf-call-iptables",
        "bridge-nf-call-ip6tables",
        "bridge-nf-call-arptables",
    ] {
        let v = std::fs::read_to_string(format!("/proc/sys/net/bridge/{knob}"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "n/a".into());
        m.insert(knob.into(), v);
    }
    m
}
