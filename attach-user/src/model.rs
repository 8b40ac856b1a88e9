//! The attachment record: what `list -o json` prints and the state directory
//! keeps. Field names are a stable contract.

use std::path::PathBuf;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::addr::{IpNet, Mac};

/// The ways a container reaches the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Macvlan,
    Ipvlan,
    Host,
    Container,
    Sriov,
    Bridge,
    Router,
    Nested,
}

impl Kind {
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Macvlan => "macvlan",
            Kind::Ipvlan => "ipvlan",
            Kind::Host => "host",
            Kind::Container => "container",
            Kind::Sriov => "sriov",
            Kind::Bridge => "bridge",
            Kind::Router => "router",
            Kind::Nested => "nested",
        }
    }
}

/// The mode of an attachment, for the kinds that have one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Bridge,
    Vepa,
    Private,
    Passthru,
    L2,
    L3,
    L3s,
}

impl Mode {
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Bridge => "bridge",
            Mode::Vepa => "vepa",
            Mode::Private => "private",
            Mode::Passthru => "passthru",
            Mode::L2 => "l2",
            Mode::L3 => "l3",
            Mode::L3s => "l3s",
        }
    }
}

/// How the attachment is implemented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A veth pair switched by our eBPF programs.
    #[default]
    Ebpf,
    /// The kernel's own driver (a real macvlan device).
    Native,
}

/// Receive path of the eBPF backend on a parent; for router endpoints,
/// who forwards (`ebpf` or `kernel`, not macvlan options).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Datapath {
    /// tcx programs, `bpf_redirect_peer` into the container.
    #[default]
    Tc,
    /// XDP on the parent (devmap redirect) for unicast, tcx for the rest.
    Xdp,
    /// router: our programs forward (`bpf_fib_lookup`, redirects).
    #[value(skip)]
    Ebpf,
    /// router: the node's own forwarding (the slow path).
    #[value(skip)]
    Kernel,
}

impl Datapath {
    pub const fn name(self) -> &'static str {
        match self {
            Datapath::Tc => "tc",
            Datapath::Xdp => "xdp",
            Datapath::Ebpf => "ebpf",
            Datapath::Kernel => "kernel",
        }
    }
}

/// Which side of a nested attachment a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NestedRole {
    /// In the VM: a container's veth, tagged onto the VM's uplink.
    Vm,
    /// On the host: a VLAN of a VM's tap, switched as its own endpoint.
    Host,
}

impl NestedRole {
    pub const fn name(self) -> &'static str {
        match self {
            NestedRole::Vm => "vm",
            NestedRole::Host => "host",
        }
    }
}

/// macvlan modes, with the kernel's semantics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum MacvlanMode {
    /// Endpoints on one parent reach each other directly (CNI/Docker default).
    #[default]
    Bridge,
    /// Everything goes out the parent; an external switch may reflect it
    /// (the kernel's default mode).
    Vepa,
    /// Like VEPA, but reflected broadcasts reach only their sender.
    Private,
    /// One endpoint takes over the parent (its MAC, all its unicast).
    Passthru,
}

impl From<MacvlanMode> for Mode {
    fn from(m: MacvlanMode) -> Self {
        match m {
            MacvlanMode::Bridge => Mode::Bridge,
            MacvlanMode::Vepa => Mode::Vepa,
            MacvlanMode::Private => Mode::Private,
            MacvlanMode::Passthru => Mode::Passthru,
        }
    }
}

/// ipvlan modes (a parent's port has one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum IpvlanMode {
    /// Endpoints switch by IP among themselves and ARP on the wire
    /// (CNI/Docker/Podman default).
    #[default]
    L2,
    /// Endpoints are NOARP; the node routes for them (the kernel's default).
    L3,
    /// As l3, with traffic passing the node's netfilter hooks.
    L3s,
}

impl From<IpvlanMode> for Mode {
    fn from(m: IpvlanMode) -> Self {
        match m {
            IpvlanMode::L2 => Mode::L2,
            IpvlanMode::L3 => Mode::L3,
            IpvlanMode::L3s => Mode::L3s,
        }
    }
}

/// ipvlan flags (a parent's port has one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum IpvlanFlag {
    /// Endpoints reach each other locally (the default).
    #[default]
    Bridge,
    /// Unicast between endpoints is dropped.
    Private,
    /// Everything goes out of the parent.
    Vepa,
}

impl IpvlanFlag {
    pub const fn name(self) -> &'static str {
        match self {
            IpvlanFlag::Bridge => "bridge",
            IpvlanFlag::Private => "private",
            IpvlanFlag::Vepa => "vepa",
        }
    }
}

/// What a passthru attachment changed on its parent, to put back on detach.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedParent {
    pub mac: Mac,
    pub promisc: bool,
}

/// One attachment of a container interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The container's network namespace, as given (name, path or pid).
    pub netns: String,
    pub netns_path: PathBuf,
    pub netns_inode: u64,
    /// Interface name inside the container.
    pub ifname: String,
    pub kind: Kind,
    pub mode: Option<Mode>,
    /// ipvlan: the port's flag.
    #[serde(default)]
    pub flag: Option<IpvlanFlag>,
    pub backend: Backend,
    /// Receive path (eBPF backend only).
    pub datapath: Option<Datapath>,
    pub parent: String,
    pub parent_ifindex: u32,
    pub mac: Mac,
    pub ips: Vec<IpNet>,
    pub gateway: Option<std::net::IpAddr>,
    pub mtu: u32,
    /// Host-side veth (eBPF backend only).
    pub host_ifname: Option<String>,
    pub host_ifindex: Option<u32>,
    /// Index of the container-side interface inside its namespace.
    pub ifindex: Option<u32>,
    pub host_access: bool,
    /// Source-MAC anti-spoofing on the endpoint's transmit path.
    pub spoofchk: bool,
    /// Datapath endpoint id (index of its counters), eBPF backend only.
    pub endpoint_id: Option<u32>,
    /// How XDP ended up attached to the parent: "native" or "generic".
    pub xdp_mode: Option<String>,
    pub saved_parent: Option<SavedParent>,
    /// Seconds since the epoch.
    pub created: u64,
    /// Set when a container runtime made it through the CNI plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<CniRef>,
    /// bridge: the port's access VLAN (none: untagged); nested: the
    /// container's 802.1Q VLAN.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// bridge: an isolated port (talks to non-isolated ports only).
    #[serde(default)]
    pub isolated: bool,
    /// bridge, eBPF switch: its uplink device in the node, if it has one.
    #[serde(default)]
    pub uplink: Option<String>,
    /// bridge, eBPF switch: the switch's id in the datapath.
    #[serde(default)]
    pub switch_id: Option<u32>,
    /// router: the node's forwarding sysctls this attachment turned on
    /// (they were off); never turned off again by the engine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarding_enabled: Vec<String>,
    /// nested: which side this record is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<NestedRole>,
    /// nested: the 802.1ad S-tag of the VM's uplink (QinQ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qinq: Option<u16>,
    /// nested, host side: the 802.1Q tag stays on towards the parent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_tag: bool,
    /// nested, host side: the VM's tap (or veth) on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap_ifindex: Option<u32>,
}

/// The CNI identity of an attachment: (network name, container id); the
/// interface name is the attachment's own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniRef {
    pub network: String,
    pub container_id: String,
}

impl Attachment {
    /// File name of this attachment's record.
    pub fn record_name(&self) -> String {
        match (&self.tap, self.has_netns()) {
            // A VLAN of a VM's tap: no container namespace on this node.
            (Some(tap), false) => format!(
                "tap-{tap}-{}-{}.json",
                self.qinq.unwrap_or(0),
                self.vlan.unwrap_or(0)
            ),
            _ => record_name(self.netns_inode, &self.ifname),
        }
    }

    /// Whether the attachment lives in a container namespace of this node
    /// (all but the host side of nested ones).
    pub fn has_netns(&self) -> bool {
        !self.netns_path.as_os_str().is_empty()
    }

    /// Whether the eBPF datapath carries it, or part of it (its pins must
    /// stay): every eBPF attachment, and a native bridge port whose source
    /// our guard program checks.
    pub fn is_ebpf(&self) -> bool {
        self.endpoint_id.is_some()
    }

    /// The record with everything `create` fills in cleared: what to create
    /// again when the attachment must be rebuilt.
    pub fn fresh(&self) -> Self {
        Self {
            host_ifname: None,
            host_ifindex: None,
            ifindex: None,
            endpoint_id: None,
            xdp_mode: None,
            saved_parent: None,
            switch_id: None,
            ..self.clone()
        }
    }

    pub fn mode_name(&self) -> &'static str {
        self.mode.map_or("-", Mode::name)
    }

    pub fn is_mode(&self, m: Mode) -> bool {
        self.mode == Some(m)
    }
}

pub fn record_name(netns_inode: u64, ifname: &str) -> String {
    format!("{netns_inode}-{ifname}.json")
}
