//! The `attach` command line: a thin layer over [`crate::engine::Engine`].

use std::{net::IpAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    addr::{IpNet, Mac},
    kinds::{
        bridge::BridgeRequest,
        container::ContainerRequest,
        host::HostRequest,
        ipvlan::IpvlanRequest,
        macvlan::MacvlanRequest,
        nested::{NestedHostRequest, NestedRequest},
        router::RouterRequest,
        sriov::SriovRequest,
    },
    model::{Backend, Datapath, IpvlanFlag, IpvlanMode, MacvlanMode, Port},
};

#[derive(Parser, Debug)]
#[command(
    name = "attach",
    version,
    about = "Attach containers to the network: macvlan and ipvlan semantics in eBPF, and every other way",
    long_about = "Attach containers to the network.\n\n\
The engine works on the node it runs in (its network namespace). `attach add <kind>` \
connects a container's network namespace in one of six ways: macvlan/ipvlan (a veth pair \
switched by XDP/tc programs that mirror the kernel's macvlan and ipvlan rules, or with \
--backend native a real kernel macvlan), bridge/router (a veth to a Linux bridge or our eBPF \
switch; a routed veth), nested (containers in a VM, one VLAN each), host (the node's own \
namespace, counted), container (another container's namespace, held) and sriov (a VF moved \
in). Attachments and their programs outlive this process; `attach agent` serves the same \
commands on a unix socket, and `attach-cni` is the CNI plugin.\n\n\
Examples:\n  \
attach add macvlan --parent eth1 --netns c1 --ip 10.0.0.2/24 --gateway 10.0.0.1\n  \
attach add macvlan --mode vepa --parent eth1 --netns /proc/1234/ns/net --datapath xdp\n  \
attach add macvlan --parent eth1 --netns c2 --backend native\n  \
attach add ipvlan --mode l3 --parent eth1 --netns c3 --ip 10.0.0.3/24\n  \
attach add bridge --bridge br0 --netns c4 --vlan 10 --backend native\n  \
attach add bridge --bridge sw1 --netns c5 --uplink eth2 --isolated\n  \
attach add router --netns c4 --ip 10.88.0.4/32 --ip fd88::4/128 --uplink eth1\n  \
attach add nested --netns c5 --uplink eth0 --vlan 100 --ip 10.0.0.5/24   # in a VM\n  \
attach add nested-host --tap tap1 --vlan 100 --parent eth1 --mac 02:00:00:00:00:05   # on its host\n  \
attach add host --netns 4321 --cgroup /sys/fs/cgroup/unified/web --ports tcp/80\n  \
attach add container --netns sidecar --join c1\n  \
attach add sriov --device eth3 --netns c3 --ip 10.0.0.3/24\n  \
attach add sriov --pci 0000:03:10.2 --netns c4 --vlan 100 --spoofchk on --max-rate 1000\n  \
attach list -o json\n  \
attach del --netns c1"
)]
pub struct Cli {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,

    /// Log format on stderr (level from RUST_LOG, default warn).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Cli {
    /// The agent's options, when the command is `agent`.
    pub fn agent_args(&self) -> Option<&crate::agent::AgentArgs> {
        match &self.command {
            Command::Agent(a) => Some(a),
            _ => None,
        }
    }
}

// `defer`: a subcommand's arguments are defined only when it is the one
// run (or its help is shown); defining all of them took most of a
// millisecond of every run (`attach bench`, M7).
#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum Command {
    /// Attach an interface to a container's network namespace.
    #[command(subcommand)]
    Add(AddKind),
    /// Detach an attachment (succeeds when nothing is attached).
    #[command(
        override_usage = "attach del --netns <NETNS> [--ifname <IFNAME>]\n       \
                                attach del --tap <IF> --vlan <N> [--qinq <OUTER>]"
    )]
    Del(DelArgs),
    /// List this node's attachments.
    List,
    /// Check an attachment (or --all) against reality: links, addresses, map
    /// entries, attached programs. Exits non-zero and says what drifted.
    #[command(
        override_usage = "attach check --netns <NETNS> [--ifname <IFNAME>]\n       \
                                attach check --tap <IF> --vlan <N> [--qinq <OUTER>]\n       \
                                attach check --all"
    )]
    Check(CheckArgs),
    /// Re-adopt every record and pin, and repair drift: put back missing map
    /// entries and programs, recreate interfaces deleted behind the engine's
    /// back, detach attachments whose namespace is gone, remove leftovers.
    Reconcile,
    /// Switch every attached program to this binary's build, atomically
    /// (link update: traffic never meets a missing program), and give xdp
    /// endpoints' containers this build's settings (fraglist GRO).
    Upgrade {
        /// Update links that already run this build too.
        #[arg(long)]
        force: bool,
    },
    /// Show datapath counters: per attachment (or only one), and verdicts by
    /// reason.
    Stats(StatsArgs),
    /// Stream the datapath's events: every drop with its reason, and with
    /// --trace every decision (JSON Lines with -o json).
    Monitor(crate::monitor::MonitorArgs),
    /// Detach everything on this node and remove all its pins and state.
    Reset,
    /// Show what this node's kernel offers and what works on it: every
    /// kernel feature the engine uses (present or not, the first kernel with
    /// it, what the engine does without it), and each kind, datapath and
    /// backend with how it works here or why it cannot.
    #[command(
        long_about = "Show what this node's kernel offers and what works on it.\n\n\
Lists every kernel feature the engine uses: whether this kernel has it, the first Linux \
release with it, what it is used for, and what the engine does without it (tcx links or \
clsact filters, the netns cookie or an id on the loopback device, ...). Then each kind, \
datapath and backend: available here or not, and why. `add` runs the same probes and refuses \
what cannot work, naming the feature.\n\n\
ATTACH_TC_HOOKS=clsact makes a new node hook its programs with clsact filters even where tcx \
exists (a node keeps its way until `attach reset`)."
    )]
    Features,
    /// Run the node agent: reconcile at start and periodically, serve
    /// Prometheus metrics, bridge the programs' logs, and serve this CLI and
    /// the CNI plugin over a unix socket (they work without it too).
    Agent(crate::agent::AgentArgs),
    /// Measure the datapaths against the host and native macvlan (see --help).
    #[command(long_about = crate::bench::HELP)]
    Bench(BenchArgs),
    /// Print attach's shell completion script for bash, zsh or fish.
    ///
    /// bash: attach completions bash > /etc/bash_completion.d/attach;
    /// zsh: attach completions zsh > "${fpath[1]}/_attach";
    /// fish: attach completions fish > ~/.config/fish/completions/attach.fish
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print attach's manual page (roff), or that of one of its commands:
    /// attach man | man -l -, attach man add macvlan > attach-add-macvlan.1
    Man {
        /// The command whose page to print (e.g. add macvlan); none: attach's.
        #[arg(value_name = "COMMAND")]
        command: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// M1, M2 and M6 only, short runs (under two minutes; what CI runs).
    #[arg(long)]
    pub quick: bool,
    /// Rounds of every contender, interleaved (at least 3).
    #[arg(long, value_name = "N")]
    pub rounds: Option<u32>,
    /// Seconds of one measured run (default 5; --quick 1).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Also write an SVG chart of the results to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
    /// Run only these metrics (comma-separated, e.g. m1,m3).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub metrics: Vec<String>,
    /// Turn on fraglist GRO (rx-gro-list) on every parent, the NIC stand-in.
    ///
    /// Off by default, as on most NICs. With it the parent chains a UDP
    /// flow's datagrams before anything else sees them, so host, native and
    /// ours-tc pass the IP layer once per chain too; ours-xdp chains in the
    /// container either way (XDP runs before the parent's GRO).
    #[arg(long)]
    pub parent_gro_list: bool,
    /// With M6: write each path's program as the kernel runs it (bpftool's
    /// translated dump) to DIR/<path>.txt, the instructions counted for the
    /// path with tracing off marked `>`.
    ///
    /// The instruction counts are an upper bound found by a search of the
    /// program's control-flow graph; the listing shows the path that bound
    /// was found on, so it can be checked by eye.
    #[arg(long, value_name = "DIR")]
    pub listing: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug, Clone)]
#[command(defer = true)]
pub enum AddKind {
    /// A macvlan-like interface on a parent device.
    ///
    /// Modes follow the kernel: bridge (endpoints reach each other directly),
    /// vepa (everything goes out the parent; an external switch may reflect it),
    /// private (like vepa, but reflected broadcasts reach only their sender),
    /// passthru (one endpoint takes the parent's MAC and all its unicast).
    /// The kernel's default mode is vepa; ours, like CNI's and Docker's, is bridge.
    Macvlan(MacvlanArgs),
    /// An ipvlan-like interface on a parent device (eBPF only).
    ///
    /// Every endpoint shares the parent's MAC; frames are told apart by IP.
    /// Modes: l2 (endpoints reach each other and ARP on the wire; the
    /// default, as in CNI and Docker), l3 (NOARP endpoints; the node routes
    /// for them and answers ARP/ND for their addresses), l3s (as l3, through
    /// the node's netfilter). Flags: bridge (default), private (no unicast
    /// between endpoints), vepa (everything out the parent). Mode and flag
    /// belong to the parent: its ipvlan endpoints share them.
    Ipvlan(IpvlanArgs),
    /// A port on a Linux bridge (native), or on our own eBPF L2 switch.
    ///
    /// native: --bridge names an existing Linux bridge in the node; the
    /// container's veth becomes its port. ebpf (default): --bridge names a
    /// switch, made with its first port and removed with its last: it
    /// learns MACs, floods unknown and broadcast frames, and may reach the
    /// wire through --uplink. Both: --vlan makes an access port (frames
    /// reach ports of the same VLAN only; native needs the bridge's
    /// vlan_filtering on), --isolated ports reach only non-isolated ones,
    /// --spoofchk drops frames with a source MAC or IP not the container's.
    Bridge(BridgeArgs),
    /// A routed interface: a veth with a host route per address (the CNI
    /// "ptp" shape).
    ///
    /// The container's default routes go through 169.254.1.1 (on-link) and
    /// fe80::1, which the node answers for. The node gets a /32 (/128) route
    /// per address through the host side. --datapath ebpf (default): our
    /// programs answer ARP/ND and forward with the node's tables
    /// (bpf_fib_lookup, redirects), inbound from --uplink; kernel: the
    /// node's own forwarding. Turns the node's forwarding on if it is off.
    Router(RouterArgs),
    /// A container inside a VM, on its own VLAN of the VM's uplink (run in
    /// the VM).
    ///
    /// What the container sends leaves by --uplink tagged with --vlan (inside
    /// the 802.1ad S-tag --qinq when the uplink is itself tagged); frames on
    /// the uplink tagged so are delivered to it. No 802.1Q devices are
    /// needed: eBPF pushes and pops the tags. The host-side engine attaches
    /// the same VLAN with `nested-host`.
    Nested(NestedArgs),
    /// The host side of a nested container: VLAN --vlan (in S-tag --qinq) of
    /// a VM's --tap becomes its own endpoint of --parent's switch (run on
    /// the host).
    ///
    /// It has its own counters, mode (bridge, vepa, private) and
    /// anti-spoofing, like a macvlan endpoint; --mac is the container's MAC
    /// (as given to `nested` in the VM). By default the tag is stripped
    /// towards the parent and only untagged frames reach the container;
    /// --keep-tag keeps it (the wire carries the VLAN) and only frames of
    /// that VLAN reach it. Detach with `attach del --tap TAP --vlan N`.
    #[command(name = "nested-host")]
    NestedHost(NestedHostArgs),
    /// The container uses the node's own network namespace.
    ///
    /// Nothing is created: the attachment is recorded (and listed), the
    /// container's traffic can be counted through its cgroup (`attach
    /// stats`), and ports it will listen on are checked against the node's
    /// listening sockets and other host attachments (warnings on stderr and
    /// in the JSON `warnings`). The interfaces are the node's: no --ifname.
    Host(HostArgs),
    /// The container joins another container's network namespace.
    ///
    /// The engine holds the shared namespace with a bind mount of its own,
    /// so the joiner keeps its network when the first container exits or
    /// restarts; the hold is released when its last joiner detaches.
    /// The interfaces are the other container's: no --ifname.
    Container(ContainerArgs),
    /// Move a VF (or any physical netdev) of the node into the container.
    ///
    /// For a VF, its MAC, VLAN, priority, spoof check, trust and rate are set
    /// through its PF; on detach the device returns to the node under its own
    /// name and every setting the attach changed is put back.
    Sriov(SriovArgs),
}

#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The container's network namespace: a name under /run/netns, a path, or a pid.
    #[arg(long, value_name = "NETNS")]
    pub netns: String,
    /// Interface name inside the container.
    #[arg(long, default_value = "eth0")]
    pub ifname: String,
}

#[derive(Args, Debug, Clone)]
pub struct MacvlanArgs {
    #[command(flatten)]
    pub target: Target,
    /// macvlan mode.
    #[arg(long, value_enum, default_value_t = MacvlanMode::Bridge)]
    pub mode: MacvlanMode,
    /// Parent device in the node's namespace (the NIC).
    #[arg(long, value_name = "IF")]
    pub parent: String,
    /// MAC address of the interface (random if not given; passthru: the parent's).
    #[arg(long, value_parser = parse_mac)]
    pub mac: Option<Mac>,
    /// Address with prefix length, IPv4 or IPv6; repeat for several.
    #[arg(long = "ip", value_name = "CIDR", value_parser = parse_cidr)]
    pub ips: Vec<IpNet>,
    /// Default gateway (needs an address of its family).
    #[arg(long, value_name = "IP")]
    pub gateway: Option<IpAddr>,
    /// MTU (default and maximum: the parent's).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// ebpf: a veth switched by our programs; native: the kernel's macvlan.
    #[arg(long, value_enum, default_value_t = Backend::Ebpf)]
    pub backend: Backend,
    /// Receive path of the parent (ebpf backend): tc, or xdp for unicast.
    #[arg(long, value_enum)]
    pub datapath: Option<Datapath>,
    /// Let the node's own stack on the parent reach this endpoint and back
    /// (native macvlan cannot). ebpf backend only.
    #[arg(long)]
    pub host_access: bool,
    /// Drop frames the container sends with a source MAC not its own
    /// (ebpf backend; default on).
    #[arg(long, value_enum)]
    pub spoofchk: Option<OnOff>,
}

#[derive(Args, Debug, Clone)]
pub struct IpvlanArgs {
    #[command(flatten)]
    pub target: Target,
    /// Parent device in the node's namespace (the NIC).
    #[arg(long, value_name = "IF")]
    pub parent: String,
    /// ipvlan mode of the parent's port.
    #[arg(long, value_enum, default_value_t = IpvlanMode::L2)]
    pub mode: IpvlanMode,
    /// Flag of the parent's port (default bridge; private and vepa exclude
    /// each other).
    #[arg(long = "flag", value_enum, value_name = "FLAG")]
    pub flags: Vec<IpvlanFlag>,
    /// Address with prefix length, IPv4 or IPv6; at least one, repeat for several.
    #[arg(long = "ip", value_name = "CIDR", value_parser = parse_cidr)]
    pub ips: Vec<IpNet>,
    /// Default gateway (needs an address of its family). l3/l3s without
    /// one: a default route through the interface.
    #[arg(long, value_name = "IP")]
    pub gateway: Option<IpAddr>,
    /// MTU (default and maximum: the parent's).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// ebpf: our programs; native: the kernel's ipvlan driver (where the
    /// kernel has it: see `attach features`).
    #[arg(long, value_enum, default_value_t = Backend::Ebpf)]
    pub backend: Backend,
}

impl From<IpvlanArgs> for IpvlanRequest {
    fn from(a: IpvlanArgs) -> Self {
        IpvlanRequest {
            netns: a.target.netns,
            ifname: a.target.ifname,
            parent: a.parent,
            mode: a.mode,
            flags: a.flags,
            ips: a.ips,
            gateway: a.gateway,
            mtu: a.mtu,
            backend: a.backend,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct BridgeArgs {
    #[command(flatten)]
    pub target: Target,
    /// native: an existing Linux bridge in the node; ebpf: the switch's name.
    #[arg(long, value_name = "BR")]
    pub bridge: String,
    /// MAC address of the interface (random if not given).
    #[arg(long, value_parser = parse_mac)]
    pub mac: Option<Mac>,
    /// Address with prefix length, IPv4 or IPv6; repeat for several.
    #[arg(long = "ip", value_name = "CIDR", value_parser = parse_cidr)]
    pub ips: Vec<IpNet>,
    /// Default gateway (needs an address of its family).
    #[arg(long, value_name = "IP")]
    pub gateway: Option<IpAddr>,
    /// MTU (default: the bridge's, or the uplink's; 1500 for a switch
    /// without one).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Access VLAN, 1 to 4094: the port carries it untagged, and reaches
    /// ports of the same VLAN only.
    #[arg(long, value_name = "N", value_parser = parse_vlan)]
    pub vlan: Option<u16>,
    /// native: a port of a Linux bridge; ebpf: a port of our eBPF switch.
    #[arg(long, value_enum, default_value_t = Backend::Ebpf)]
    pub backend: Backend,
    /// An isolated port: it reaches non-isolated ports only (and the uplink).
    #[arg(long)]
    pub isolated: bool,
    /// Drop frames the container sends with a source MAC or address not its
    /// own (default: on for ebpf, off for native).
    #[arg(long, value_enum)]
    pub spoofchk: Option<OnOff>,
    /// ebpf: connect the switch to this node device, an 802.1Q trunk
    /// (untagged: ports without a VLAN; tagged N: VLAN N). Given with the
    /// switch's first port.
    #[arg(long, value_name = "IF")]
    pub uplink: Option<String>,
}

impl From<BridgeArgs> for BridgeRequest {
    fn from(a: BridgeArgs) -> Self {
        BridgeRequest {
            netns: a.target.netns,
            ifname: a.target.ifname,
            bridge: a.bridge,
            mac: a.mac,
            ips: a.ips,
            gateway: a.gateway,
            mtu: a.mtu,
            vlan: a.vlan,
            backend: a.backend,
            isolated: a.isolated,
            spoofchk: a.spoofchk.map(|s| s == OnOff::On),
            uplink: a.uplink,
        }
    }
}

/// Who forwards for a router endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RouterDatapath {
    /// Our programs (bpf_fib_lookup, bpf_redirect_peer/neigh).
    Ebpf,
    /// The node's own forwarding (the slow path).
    Kernel,
}

#[derive(Args, Debug, Clone)]
pub struct RouterArgs {
    #[command(flatten)]
    pub target: Target,
    /// Address of the endpoint (routed to it as a host route); repeat for
    /// several, IPv4 and/or IPv6.
    #[arg(long = "ip", value_name = "CIDR", value_parser = parse_cidr)]
    pub ips: Vec<IpNet>,
    /// MAC address of the interface (random if not given).
    #[arg(long, value_parser = parse_mac)]
    pub mac: Option<Mac>,
    /// MTU (default: the uplink's, or 1500).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Who forwards: our eBPF programs or the node's stack.
    #[arg(long, value_enum, default_value_t = RouterDatapath::Ebpf)]
    pub datapath: RouterDatapath,
    /// The device traffic for the endpoints arrives on (ebpf; default: the
    /// device of the node's default route).
    #[arg(long, value_name = "IF")]
    pub uplink: Option<String>,
    /// Drop packets the container sends with a source MAC or address not
    /// its own (ebpf; default on).
    #[arg(long, value_enum)]
    pub spoofchk: Option<OnOff>,
}

impl From<RouterArgs> for RouterRequest {
    fn from(a: RouterArgs) -> Self {
        RouterRequest {
            netns: a.target.netns,
            ifname: a.target.ifname,
            ips: a.ips,
            mac: a.mac,
            mtu: a.mtu,
            datapath: match a.datapath {
                RouterDatapath::Ebpf => Datapath::Ebpf,
                RouterDatapath::Kernel => Datapath::Kernel,
            },
            uplink: a.uplink,
            spoofchk: a.spoofchk.map(|s| s == OnOff::On),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct NestedArgs {
    #[command(flatten)]
    pub target: Target,
    /// The VM's uplink (its NIC towards the host).
    #[arg(long, value_name = "IF")]
    pub uplink: String,
    /// The container's VLAN on the uplink (1-4094).
    #[arg(long, value_name = "N", value_parser = parse_vlan)]
    pub vlan: u16,
    /// The uplink's own 802.1ad S-tag (QinQ), outside --vlan (1-4094).
    #[arg(long, value_name = "OUTER", value_parser = parse_vlan)]
    pub qinq: Option<u16>,
    /// MAC address of the interface (random if not given; the host side
    /// needs it).
    #[arg(long, value_parser = parse_mac)]
    pub mac: Option<Mac>,
    /// Address with prefix length, IPv4 or IPv6; repeat for several.
    #[arg(long = "ip", value_name = "CIDR", value_parser = parse_cidr)]
    pub ips: Vec<IpNet>,
    /// Default gateway (needs an address of its family).
    #[arg(long, value_name = "IP")]
    pub gateway: Option<IpAddr>,
    /// MTU (default and maximum: the uplink's).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Drop frames the container sends with a source MAC or address not its
    /// own (default on).
    #[arg(long, value_enum)]
    pub spoofchk: Option<OnOff>,
}

impl From<NestedArgs> for NestedRequest {
    fn from(a: NestedArgs) -> Self {
        NestedRequest {
            netns: a.target.netns,
            ifname: a.target.ifname,
            uplink: a.uplink,
            vlan: a.vlan,
            qinq: a.qinq,
            mac: a.mac,
            ips: a.ips,
            gateway: a.gateway,
            mtu: a.mtu,
            spoofchk: a.spoofchk.map(|s| s == OnOff::On),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct NestedHostArgs {
    /// The VM's tap (or veth) on the host.
    #[arg(long, value_name = "IF")]
    pub tap: String,
    /// The container's VLAN on the tap (1-4094).
    #[arg(long, value_name = "N", value_parser = parse_vlan)]
    pub vlan: u16,
    /// The VM uplink's 802.1ad S-tag (QinQ), outside --vlan (1-4094).
    #[arg(long, value_name = "OUTER", value_parser = parse_vlan)]
    pub qinq: Option<u16>,
    /// The parent (the NIC) whose switch the endpoint joins.
    #[arg(long, value_name = "IF")]
    pub parent: String,
    /// The container's MAC, as the VM side gave it.
    #[arg(long, value_parser = parse_mac)]
    pub mac: Mac,
    /// The container's addresses (for anti-spoofing); repeat for several.
    #[arg(long = "ip", value_name = "CIDR", value_parser = parse_cidr)]
    pub ips: Vec<IpNet>,
    /// macvlan mode of the endpoint on the parent's switch (not passthru).
    #[arg(long, value_enum, default_value_t = MacvlanMode::Bridge)]
    pub mode: MacvlanMode,
    /// Keep the 802.1Q tag towards the parent (the wire carries the VLAN);
    /// default: strip it.
    #[arg(long)]
    pub keep_tag: bool,
    /// Let the node's own stack on the parent reach the endpoint and back.
    #[arg(long)]
    pub host_access: bool,
    /// Drop frames the container sends with a source MAC or address not its
    /// own (default on).
    #[arg(long, value_enum)]
    pub spoofchk: Option<OnOff>,
}

impl From<NestedHostArgs> for NestedHostRequest {
    fn from(a: NestedHostArgs) -> Self {
        NestedHostRequest {
            tap: a.tap,
            vlan: a.vlan,
            qinq: a.qinq,
            parent: a.parent,
            mac: a.mac,
            ips: a.ips,
            mode: a.mode,
            keep_tag: a.keep_tag,
            host_access: a.host_access,
            spoofchk: a.spoofchk.map(|s| s == OnOff::On),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Args, Debug, Clone)]
pub struct StatsArgs {
    /// Only this container's attachment (name under /run/netns, path or pid).
    #[arg(long, value_name = "NETNS")]
    pub netns: Option<String>,
    /// With --netns: the interface inside the container. Default: the host
    /// attachment of NETNS if there is one, else eth0.
    #[arg(long, requires = "netns")]
    pub ifname: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct HostArgs {
    /// The node's own network namespace, naming the container: typically the
    /// pid of its process (whose namespace is the node's), or a path. It must
    /// be the namespace attach runs in; it is also how `del` finds it.
    #[arg(long, value_name = "NETNS")]
    pub netns: String,
    /// The container's cgroup (v2) directory: its traffic is counted by
    /// cgroup_skb programs and shown by `attach stats`. A relative path is
    /// taken under the cgroup2 mount.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// Ports the container will listen on, like tcp/80,udp/53: a warning
    /// when a socket of the node or another host attachment has one.
    #[arg(long, value_name = "PROTO/PORT,...", value_delimiter = ',', value_parser = parse_port)]
    pub ports: Vec<Port>,
    /// Does not apply (refused with an explanation).
    #[arg(long, hide = true)]
    pub ifname: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ContainerArgs {
    /// The joiner. A path (or name under /run/netns) that does not exist yet:
    /// the engine creates it as a bind mount of the shared namespace, for the
    /// joiner's processes to enter (nsenter --net=NETNS), and removes it on
    /// detach. Or the joiner already in OTHER's namespace: its pid, or a
    /// namespace file of it.
    #[arg(long, value_name = "NETNS")]
    pub netns: String,
    /// OTHER: the container whose network namespace is joined (a name under
    /// /run/netns, a path, or the pid of one of its processes).
    #[arg(long, value_name = "OTHER")]
    pub join: String,
    /// Does not apply (refused with an explanation).
    #[arg(long, hide = true)]
    pub ifname: Option<String>,
}

#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("dev").required(true).args(["device", "pci"])))]
pub struct SriovArgs {
    #[command(flatten)]
    pub target: Target,
    /// The netdev in the node to hand over (a VF, or any physical device).
    #[arg(long, value_name = "IF")]
    pub device: Option<String>,
    /// The device by PCI address (DOMAIN:BUS:DEV.FN), e.g. a VF's.
    #[arg(long, value_name = "ADDR")]
    pub pci: Option<String>,
    /// VF only: VLAN ID (1-4094) the VF's traffic is tagged with.
    #[arg(long, value_name = "N")]
    pub vlan: Option<u32>,
    /// VF only: 802.1p priority (0-7) of the VLAN tag; needs --vlan.
    #[arg(long, value_name = "N")]
    pub qos: Option<u32>,
    /// MAC of the interface (a VF's is set through its PF too).
    #[arg(long, value_parser = parse_mac)]
    pub mac: Option<Mac>,
    /// VF only: drop frames the VF sends with another source MAC.
    #[arg(long, value_enum)]
    pub spoofchk: Option<OnOff>,
    /// VF only: let the VF change its MAC and use promiscuous modes.
    #[arg(long, value_enum)]
    pub trust: Option<OnOff>,
    /// VF only: maximum transmit rate, Mbit/s.
    #[arg(long, value_name = "MBPS")]
    pub max_rate: Option<u32>,
    /// Address with prefix length, IPv4 or IPv6; repeat for several.
    #[arg(long = "ip", value_name = "CIDR", value_parser = parse_cidr)]
    pub ips: Vec<IpNet>,
    /// Default gateway (needs an address of its family).
    #[arg(long, value_name = "IP")]
    pub gateway: Option<IpAddr>,
    /// MTU (default: the device's).
    #[arg(long)]
    pub mtu: Option<u32>,
}

#[derive(Args, Debug, Clone)]
pub struct DelArgs {
    /// The container's network namespace: a name under /run/netns, a path, or
    /// a pid (for host and container attachments: NETNS as given to add).
    // Required unless --tap (or check's --all): checked when run, since
    // clap cannot name an argument only one of its users has.
    #[arg(long, value_name = "NETNS", conflicts_with = "tap")]
    pub netns: Option<String>,
    /// Interface name inside the container. Default: the host or container
    /// attachment of NETNS if there is one, else eth0.
    #[arg(long)]
    pub ifname: Option<String>,
    /// The host side of a nested container: the VM's tap (with --vlan).
    #[arg(long, value_name = "IF", requires = "vlan", conflicts_with = "ifname")]
    pub tap: Option<String>,
    /// With --tap: the container's VLAN.
    #[arg(long, value_name = "N", value_parser = parse_vlan, requires = "tap")]
    pub vlan: Option<u16>,
    /// With --tap: the VM uplink's S-tag.
    #[arg(long, value_name = "OUTER", value_parser = parse_vlan, requires = "tap")]
    pub qinq: Option<u16>,
}

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Check every attachment of the node; exits non-zero if one drifted,
    /// naming each.
    #[arg(long, conflicts_with_all = ["netns", "tap"])]
    pub all: bool,
    #[command(flatten)]
    pub target: DelArgs,
}

impl DelArgs {
    /// Refuses an empty NETNS: it names no container (and the host side
    /// of a nested attachment is recorded without one).
    pub fn check_netns(&self) -> crate::error::Result<()> {
        match &self.netns {
            Some(ns) if ns.trim().is_empty() => Err(crate::error::Error::invalid(format!(
                "--netns {ns:?} is empty: name the container's network namespace \
                 (a name under /run/netns, a path or a pid), or give --tap with --vlan"
            ))),
            _ => Ok(()),
        }
    }

    /// "nothing attached as eth0 in NETNS", "nothing attached in NETNS",
    /// "nothing attached as VLAN of tap TAP".
    pub fn nothing(&self) -> String {
        match (&self.netns, &self.ifname) {
            (Some(ns), None) => format!("nothing attached in {ns}"),
            _ => format!("nothing attached as {}", self.what()),
        }
    }

    /// How the asked-for attachment is named in messages.
    pub fn what(&self) -> String {
        match (&self.netns, &self.tap, self.vlan) {
            (Some(ns), _, _) => match &self.ifname {
                Some(i) => format!("{i} in {ns}"),
                None => format!("an attachment in {ns}"),
            },
            (None, Some(tap), Some(v)) => format!(
                "{} of tap {tap}",
                crate::kinds::nested::vlan_ifname(self.qinq, v)
            ),
            _ => "?".into(),
        }
    }
}

/// A VLAN ID as typed: a number (its range is checked with the request,
/// so the error names the option and the rule).
fn parse_vlan(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("VLAN ID {s:?} is not a number from 1 to 4094"))
}

fn parse_mac(s: &str) -> Result<Mac, String> {
    s.parse().map_err(|e: crate::error::Error| e.message)
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    s.parse().map_err(|e: crate::error::Error| e.message)
}

fn parse_port(s: &str) -> Result<Port, String> {
    s.parse().map_err(|e: crate::error::Error| e.message)
}

impl From<AddKind> for crate::kinds::AddRequest {
    fn from(k: AddKind) -> Self {
        match k {
            AddKind::Macvlan(a) => crate::kinds::AddRequest::Macvlan(a.into()),
            AddKind::Ipvlan(a) => crate::kinds::AddRequest::Ipvlan(a.into()),
            AddKind::Bridge(a) => crate::kinds::AddRequest::Bridge(a.into()),
            AddKind::Router(a) => crate::kinds::AddRequest::Router(a.into()),
            AddKind::Nested(a) => crate::kinds::AddRequest::Nested(a.into()),
            AddKind::NestedHost(a) => crate::kinds::AddRequest::NestedHost(a.into()),
            AddKind::Host(a) => crate::kinds::AddRequest::Host(HostRequest {
                netns: a.netns,
                cgroup: a.cgroup,
                ports: a.ports,
                ifname: a.ifname,
            }),
            AddKind::Container(a) => crate::kinds::AddRequest::Container(ContainerRequest {
                netns: a.netns,
                join: a.join,
                ifname: a.ifname,
            }),
            AddKind::Sriov(a) => crate::kinds::AddRequest::Sriov(SriovRequest {
                netns: a.target.netns,
                ifname: a.target.ifname,
                device: a.device,
                pci: a.pci,
                vlan: a.vlan,
                qos: a.qos,
                mac: a.mac,
                spoofchk: a.spoofchk.map(|s| s == OnOff::On),
                trust: a.trust.map(|s| s == OnOff::On),
                max_rate: a.max_rate,
                ips: a.ips,
                gateway: a.gateway,
                mtu: a.mtu,
            }),
        }
    }
}

impl From<MacvlanArgs> for MacvlanRequest {
    fn from(a: MacvlanArgs) -> Self {
        MacvlanRequest {
            netns: a.target.netns,
            ifname: a.target.ifname,
            mode: a.mode,
            parent: a.parent,
            mac: a.mac,
            ips: a.ips,
            gateway: a.gateway,
            mtu: a.mtu,
            backend: a.backend,
            datapath: a.datapath,
            host_access: a.host_access,
            spoofchk: a.spoofchk.map(|s| s == OnOff::On),
        }
    }
}
