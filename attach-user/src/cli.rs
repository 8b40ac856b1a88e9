//! The `attach` command line: a thin layer over [`crate::engine::Engine`].

use clap::{Parser, Subcommand, ValueEnum};

use crate::{
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
    op::{CheckArgs, Op, Selector, StatsArgs},
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

pub use crate::{bench::BenchArgs, logging::LogFormat, op::Format as Output};

impl Command {
    /// The command's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Add(_) => "add",
            Command::Del(_) => "del",
            Command::List => "list",
            Command::Check(_) => "check",
            Command::Reconcile => "reconcile",
            Command::Upgrade { .. } => "upgrade",
            Command::Stats(_) => "stats",
            Command::Monitor(_) => "monitor",
            Command::Reset => "reset",
            Command::Features => "features",
            Command::Agent(_) => "agent",
            Command::Bench(_) => "bench",
            Command::Completions { .. } => "completions",
            Command::Man { .. } => "man",
        }
    }

    /// The engine operation the command asks for; `None` for those that
    /// are not one (the agent, the benchmark, monitor, completions, man).
    pub fn op(&self) -> Option<Op> {
        Some(match self {
            Command::Add(kind) => Op::Add {
                request: kind.clone().into(),
                cni: None,
            },
            Command::Del(s) => Op::Del(s.clone()),
            Command::List => Op::List,
            Command::Check(c) => Op::Check(c.clone()),
            Command::Reconcile => Op::Reconcile,
            Command::Upgrade { force } => Op::Upgrade { force: *force },
            Command::Stats(s) => Op::Stats(s.clone()),
            Command::Reset => Op::Reset,
            Command::Features => Op::Features,
            Command::Monitor(_)
            | Command::Agent(_)
            | Command::Bench(_)
            | Command::Completions { .. }
            | Command::Man { .. } => return None,
        })
    }
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
    Del(Selector),
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
    /// Stream the datapath's events from now on: every drop with its reason,
    /// and with --trace every decision (JSON Lines with -o json). Events lost
    /// to a full buffer, and those --sample or --rate leave out, are counted
    /// and reported each second and in a summary at exit.
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
    Macvlan(MacvlanRequest),
    /// An ipvlan-like interface on a parent device (eBPF only).
    ///
    /// Every endpoint shares the parent's MAC; frames are told apart by IP.
    /// Modes: l2 (endpoints reach each other and ARP on the wire; the
    /// default, as in CNI and Docker), l3 (NOARP endpoints; the node routes
    /// for them and answers ARP/ND for their addresses), l3s (as l3, through
    /// the node's netfilter). Flags: bridge (default), private (no unicast
    /// between endpoints), vepa (everything out the parent). Mode and flag
    /// belong to the parent: its ipvlan endpoints share them.
    Ipvlan(IpvlanRequest),
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
    Bridge(BridgeRequest),
    /// A routed interface: a veth with a host route per address (the CNI
    /// "ptp" shape).
    ///
    /// The container's default routes go through 169.254.1.1 (on-link) and
    /// fe80::1, which the node answers for. The node gets a /32 (/128) route
    /// per address through the host side. --datapath ebpf (default): our
    /// programs answer ARP/ND and forward with the node's tables
    /// (bpf_fib_lookup, redirects), inbound from --uplink; kernel: the
    /// node's own forwarding. Turns the node's forwarding on if it is off.
    Router(RouterRequest),
    /// A container inside a VM, on its own VLAN of the VM's uplink (run in
    /// the VM).
    ///
    /// What the container sends leaves by --uplink tagged with --vlan (inside
    /// the 802.1ad S-tag --qinq when the uplink is itself tagged); frames on
    /// the uplink tagged so are delivered to it. No 802.1Q devices are
    /// needed: eBPF pushes and pops the tags. The host-side engine attaches
    /// the same VLAN with `nested-host`. --ip addresses are first probed on
    /// the VLAN (an ARP probe, DAD for IPv6); --dhcp takes a lease there.
    Nested(NestedRequest),
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
    NestedHost(NestedHostRequest),
    /// The container uses the node's own network namespace.
    ///
    /// Nothing is created: the attachment is recorded (and listed), the
    /// container's traffic can be counted through its cgroup (`attach
    /// stats`), and ports it will listen on are checked against the node's
    /// listening sockets and other host attachments (warnings on stderr and
    /// in the JSON `warnings`). The interfaces are the node's: no --ifname.
    Host(HostRequest),
    /// The container joins another container's network namespace.
    ///
    /// The engine holds the shared namespace with a bind mount of its own,
    /// so the joiner keeps its network when the first container exits or
    /// restarts; the hold is released when its last joiner detaches.
    /// The interfaces are the other container's: no --ifname.
    Container(ContainerRequest),
    /// Move a VF (or any physical netdev) of the node into the container.
    ///
    /// For a VF, its MAC, VLAN, priority, spoof check, trust and rate are set
    /// through its PF; on detach the device returns to the node under its own
    /// name and every setting the attach changed is put back.
    Sriov(SriovRequest),
}

impl From<AddKind> for crate::kinds::AddRequest {
    fn from(k: AddKind) -> Self {
        use crate::kinds::AddRequest as R;
        match k {
            AddKind::Macvlan(r) => R::Macvlan(r),
            AddKind::Ipvlan(r) => R::Ipvlan(r),
            AddKind::Bridge(r) => R::Bridge(r),
            AddKind::Router(r) => R::Router(r),
            AddKind::Nested(r) => R::Nested(r),
            AddKind::NestedHost(r) => R::NestedHost(r),
            AddKind::Host(r) => R::Host(r),
            AddKind::Container(r) => R::Container(r),
            AddKind::Sriov(r) => R::Sriov(r),
        }
    }
}
