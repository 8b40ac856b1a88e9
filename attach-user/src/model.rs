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
    /// Whether the kind gives the container an interface of its own. `host`
    /// and `container` do not: they share a namespace, so their records are
    /// named by NETNS as given (the namespace's identity is not theirs
    /// alone) and their `ifname` is [`NO_IFNAME`].
    pub const fn has_interface(self) -> bool {
        !matches!(self, Kind::Host | Kind::Container)
    }

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
    /// The kernel's own driver (a real macvlan or ipvlan device).
    Native,
}

impl Backend {
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Ebpf => "ebpf",
            Backend::Native => "native",
        }
    }
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
    /// The device the attachment hangs off (sriov: the VF's PF); `null`
    /// in JSON for kinds without one.
    #[serde(with = "empty_is_null")]
    pub parent: String,
    pub parent_ifindex: u32,
    /// `null` in JSON for kinds without an interface.
    #[serde(with = "zero_mac_is_null")]
    pub mac: Mac,
    pub ips: Vec<IpNet>,
    pub gateway: Option<std::net::IpAddr>,
    /// `null` in JSON for kinds without an interface.
    #[serde(with = "zero_is_null")]
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
    /// What the engine noticed when attaching and let pass (e.g. a port
    /// another socket already listens on). Printed on stderr too.
    #[serde(default)]
    pub warnings: Vec<String>,
    // What only some kinds have. Fields of the record itself, not a
    // flattened struct: serde buffers every key of a struct with a
    // flattened field, which doubled the time to read a record (each `add`
    // reads all of a node's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<JoinInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sriov: Option<SriovInfo>,
    /// `--dhcp`: the lease its IPv4 address comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<crate::dhcp::Lease>,
    /// Rate limits our programs enforce (`--ingress-rate`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<crate::bandwidth::Bandwidth>,
}

/// Interface name recorded for kinds without an interface of their own.
pub const NO_IFNAME: &str = "-";

/// A `host` attachment: the container shares the node's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// cgroup v2 directory whose traffic is counted (`--cgroup`).
    pub cgroup: Option<PathBuf>,
    /// Its cgroup id (the directory's inode).
    pub cgroup_id: Option<u64>,
    /// Slot of its counters in the `attach_cg_stats` map, once made.
    pub counter_id: Option<u32>,
    /// Ports the container listens on (`--ports`).
    pub ports: Vec<Port>,
}

/// A transport port, written `tcp/80` or `udp/53`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port {
    pub proto: Transport,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub const fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.proto.name(), self.port)
    }
}

impl std::str::FromStr for Port {
    type Err = crate::error::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| crate::error::Error::invalid(format!("invalid port {s:?}: {why}"));
        let (proto, port) = s
            .split_once('/')
            .ok_or_else(|| bad("expected PROTO/PORT, like tcp/80 or udp/53"))?;
        let proto = match proto.to_ascii_lowercase().as_str() {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            _ => return Err(bad("the protocol is tcp or udp")),
        };
        let port: u16 = port
            .parse()
            .map_err(|_| bad("the port is a number from 1 to 65535"))?;
        if port == 0 {
            return Err(bad("the port is a number from 1 to 65535"));
        }
        Ok(Port { proto, port })
    }
}

impl Serialize for Port {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A `container` attachment: NETNS shares OTHER's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinInfo {
    /// OTHER as given (`--join`): name, path or pid.
    pub other: String,
    pub other_path: PathBuf,
    /// The engine's bind mount of the shared namespace, once made; shared
    /// by every joiner of that namespace on this node.
    pub hold: Option<PathBuf>,
    /// Whether the engine made NETNS (a bind mount of the shared namespace)
    /// and so removes it on detach.
    pub netns_created: bool,
}

/// An `sriov` attachment: a VF (or any netdev) moved into the container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SriovInfo {
    /// The device's name in the node (restored on detach).
    pub device: String,
    /// Its index in the node before it moved.
    pub device_ifindex: u32,
    /// PCI address (`--pci`, or found for `--device`), if it has one.
    pub pci: Option<String>,
    /// The VF behind the device, when it is one.
    pub vf: Option<VfRef>,
    /// What was asked of the VF (only set ones are changed).
    pub vlan: Option<u16>,
    pub qos: Option<u8>,
    pub spoofchk: Option<bool>,
    pub trust: Option<bool>,
    /// Mbit/s.
    pub max_rate: Option<u32>,
    /// The device as it was in the node, to put back.
    pub saved: SavedDevice,
    /// The VF's settings before the attach, read through the PF.
    pub saved_vf: Option<crate::netlink::VfConfig>,
    /// Set once the device is in the container's namespace.
    pub moved: bool,
}

/// A VF: its PF in the node and its index there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfRef {
    pub pf: String,
    pub pf_ifindex: u32,
    pub index: u32,
}

/// What the engine may change on a device it takes, to put back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedDevice {
    pub mtu: u32,
    pub mac: Mac,
    pub up: bool,
}

/// `""` ⇄ `null`.
mod empty_is_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
        if v.is_empty() {
            s.serialize_none()
        } else {
            s.serialize_str(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
    }
}

/// `0` ⇄ `null`.
mod zero_is_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
        if *v == 0 {
            s.serialize_none()
        } else {
            s.serialize_u32(*v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        Ok(Option::<u32>::deserialize(d)?.unwrap_or_default())
    }
}

/// `00:00:00:00:00:00` ⇄ `null`.
mod zero_mac_is_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::addr::Mac;

    pub fn serialize<S: Serializer>(v: &Mac, s: S) -> Result<S::Ok, S::Error> {
        if v.is_zero() {
            s.serialize_none()
        } else {
            v.serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        Ok(Option::<Mac>::deserialize(d)?.unwrap_or_default())
    }
}

pub use crate::cni_ref::CniRef;

impl Attachment {
    /// A record of `kind` for `ifname` with nothing planned yet, made now:
    /// every record starts here (the kinds' `plan` fills in the rest), so
    /// a field added to the record has its default in one place.
    pub fn new(kind: Kind, ifname: &str) -> Self {
        Self {
            netns: String::new(),
            netns_path: PathBuf::new(),
            netns_inode: 0,
            ifname: ifname.to_owned(),
            kind,
            mode: None,
            flag: None,
            backend: Backend::Native,
            datapath: None,
            parent: String::new(),
            parent_ifindex: 0,
            mac: Mac::default(),
            ips: Vec::new(),
            gateway: None,
            mtu: 0,
            host_ifname: None,
            host_ifindex: None,
            ifindex: None,
            host_access: false,
            spoofchk: false,
            endpoint_id: None,
            xdp_mode: None,
            saved_parent: None,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            cni: None,
            vlan: None,
            isolated: false,
            uplink: None,
            switch_id: None,
            forwarding_enabled: Vec::new(),
            role: None,
            qinq: None,
            keep_tag: false,
            tap: None,
            tap_ifindex: None,
            warnings: Vec::new(),
            host: None,
            join: None,
            sriov: None,
            dhcp: None,
            bandwidth: None,
        }
    }

    /// The record in the container namespace NETNS `spec` (as given),
    /// open as `ns`. Only the host side of a nested attachment has none.
    pub fn in_netns(self, spec: &str, ns: &crate::netns::Netns) -> Self {
        Self {
            netns: spec.to_owned(),
            netns_path: ns.path.clone(),
            netns_inode: ns.inode,
            ..self
        }
    }

    /// File name of this attachment's record.
    pub fn record_name(&self) -> String {
        match (&self.tap, self.has_netns()) {
            // A VLAN of a VM's tap: no container namespace on this node.
            (Some(tap), false) => format!(
                "tap-{tap}-{}-{}.json",
                self.qinq.unwrap_or(0),
                self.vlan.unwrap_or(0)
            ),
            _ if self.kind.has_interface() => {
                crate::naming::record_name(self.netns_inode, &self.ifname)
            }
            // Several share one namespace: named by NETNS as given.
            _ => format!(
                "{}-{}-{:010x}.json",
                self.kind.name(),
                self.netns_inode,
                crate::naming::fnv1a(self.netns_path.as_os_str().as_encoded_bytes())
                    & 0xff_ffff_ffff
            ),
        }
    }

    /// Whether the attachment lives in a container namespace of this node
    /// (all but the host side of nested ones).
    pub fn has_netns(&self) -> bool {
        !self.netns_path.as_os_str().is_empty()
    }

    /// Opens the container namespace it was attached in (by its recorded
    /// path; whether it is still the same one is the caller's question).
    pub fn open_netns(&self) -> crate::error::Result<crate::netns::Netns> {
        crate::netns::Netns::open(&self.netns_path.to_string_lossy())
    }

    /// Whether it relies on the node's pins (maps, pinned links): the eBPF
    /// datapath carries it, or part of it (a native bridge port whose
    /// source our guard program checks), or its traffic is counted by our
    /// programs.
    pub fn is_ebpf(&self) -> bool {
        self.endpoint_id.is_some() || self.host.as_ref().is_some_and(|h| h.counter_id.is_some())
    }

    /// The record with everything `create` fills in cleared: what to create
    /// again when the attachment must be rebuilt.
    pub fn fresh(&self) -> Self {
        let mut f = Self {
            host_ifname: None,
            host_ifindex: None,
            ifindex: None,
            endpoint_id: None,
            xdp_mode: None,
            saved_parent: None,
            switch_id: None,
            ..self.clone()
        };
        if let Some(h) = &mut f.host {
            h.counter_id = None;
        }
        if let Some(j) = &mut f.join {
            j.hold = None;
            j.netns_created = false;
        }
        if let Some(s) = &mut f.sriov {
            s.moved = false;
            s.saved_vf = None;
        }
        f
    }

    pub fn mode_name(&self) -> &'static str {
        self.mode.map_or("-", Mode::name)
    }

    pub fn is_mode(&self, m: Mode) -> bool {
        self.mode == Some(m)
    }
}

/// A macvlan eBPF record for unit tests: in `c<netns_inode>`, on `par0`
/// (ifindex 3), host side ifindex 4.
#[cfg(test)]
pub(crate) fn sample(netns_inode: u64, mac: &str) -> Attachment {
    serde_json::from_value(serde_json::json!({
        "netns": format!("c{netns_inode}"),
        "netns_path": format!("/run/netns/c{netns_inode}"),
        "netns_inode": netns_inode,
        "ifname": "eth0",
        "kind": "macvlan",
        "mode": "bridge",
        "backend": "ebpf",
        "datapath": "tc",
        "parent": "par0",
        "parent_ifindex": 3,
        "mac": mac,
        "ips": ["10.9.0.2/16"],
        "gateway": null,
        "mtu": 1500,
        "host_ifname": "atk0000000001",
        "host_ifindex": 4,
        "ifindex": 2,
        "host_access": false,
        "spoofchk": true,
        "endpoint_id": netns_inode,
        "xdp_mode": null,
        "saved_parent": null,
        "created": netns_inode,
    }))
    .unwrap()
}
