//! The attachment record: what `list -o json` prints and the state directory
//! keeps. Field names are a stable contract.

use std::path::PathBuf;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::addr::{IpNet, Mac};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Macvlan,
}

impl Kind {
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Macvlan => "macvlan",
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

/// Receive path of the eBPF backend on a parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Datapath {
    /// tcx programs, `bpf_redirect_peer` into the container.
    #[default]
    Tc,
    /// XDP on the parent (devmap redirect) for unicast, tcx for the rest.
    Xdp,
}

impl Datapath {
    pub const fn name(self) -> &'static str {
        match self {
            Datapath::Tc => "tc",
            Datapath::Xdp => "xdp",
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

impl MacvlanMode {
    pub const fn name(self) -> &'static str {
        match self {
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Private => "private",
            MacvlanMode::Passthru => "passthru",
        }
    }

    /// The datapath's `MODE_*` bit.
    pub const fn bit(self) -> u8 {
        match self {
            MacvlanMode::Private => attach_common::MODE_PRIVATE,
            MacvlanMode::Vepa => attach_common::MODE_VEPA,
            MacvlanMode::Bridge => attach_common::MODE_BRIDGE,
            MacvlanMode::Passthru => attach_common::MODE_PASSTHRU,
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
    pub mode: MacvlanMode,
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
}

impl Attachment {
    /// File name of this attachment's record.
    pub fn record_name(&self) -> String {
        record_name(self.netns_inode, &self.ifname)
    }

    pub fn is_ebpf(&self) -> bool {
        self.backend == Backend::Ebpf
    }
}

pub fn record_name(netns_inode: u64, ifname: &str) -> String {
    format!("{netns_inode}-{ifname}.json")
}
