//! What the node's kernel offers, and what of ours works on it.
//!
//! The engine runs on kernels from 5.10 on. Where a kernel lacks something
//! the engine prefers, it takes the older way (tcx → clsact filters, the
//! netns cookie → an id on the loopback device, `force_forwarding` → the
//! node's forwarding); where nothing can stand in, the command that needs it
//! refuses before it makes anything, naming the kernel feature, the first
//! kernel that has it, and what works instead ([`Feature::require`]).
//!
//! Cheap probes (one syscall) run when first needed and are kept for the
//! process; `attach features` runs them all, the costly ones (a verifier
//! pass, links made in a scratch namespace) included.

use std::sync::OnceLock;

use aya::programs::{ProgramType, SchedClassifier, TcAttachType};
use aya::sys::{BpfHelper, is_helper_supported};
use serde::Serialize;

use crate::error::{Error, Result};

/// A kernel feature the engine uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// tc programs as BPF links (`bpf_mprog`).
    Tcx,
    /// cls_bpf filters on a clsact qdisc.
    Clsact,
    /// `SO_NETNS_COOKIE`.
    NetnsCookie,
    /// The `bpf_loop` helper.
    BpfLoop,
    /// `net.ipv6.conf.*.force_forwarding`.
    ForceForwarding,
    /// The kernel's veth driver.
    Veth,
    /// The kernel's macvlan driver.
    Macvlan,
    /// The kernel's ipvlan driver.
    Ipvlan,
    /// The kernel's bridge driver.
    Bridge,
    /// A veth with GRO on runs NAPI, so XDP frames redirected into it
    /// arrive without an XDP program of its own.
    VethGroNapi,
}

impl Feature {
    pub const ALL: [Feature; 10] = [
        Feature::Tcx,
        Feature::Clsact,
        Feature::NetnsCookie,
        Feature::BpfLoop,
        Feature::ForceForwarding,
        Feature::Veth,
        Feature::Macvlan,
        Feature::Ipvlan,
        Feature::Bridge,
        Feature::VethGroNapi,
    ];

    /// What it is, as users know it.
    pub const fn what(self) -> &'static str {
        match self {
            Feature::Tcx => "tcx (tc programs as BPF links)",
            Feature::Clsact => "clsact qdisc with cls_bpf filters (sch_ingress, cls_bpf)",
            Feature::NetnsCookie => "SO_NETNS_COOKIE socket option",
            Feature::BpfLoop => "bpf_loop helper",
            Feature::ForceForwarding => "net.ipv6.conf.<if>.force_forwarding sysctl",
            Feature::Veth => "veth driver (CONFIG_VETH)",
            Feature::Macvlan => "macvlan driver (CONFIG_MACVLAN)",
            Feature::Ipvlan => "ipvlan driver (CONFIG_IPVLAN)",
            Feature::Bridge => "bridge driver (CONFIG_BRIDGE)",
            Feature::VethGroNapi => "XDP redirect into a veth with GRO on (NAPI without a program)",
        }
    }

    /// The first mainline kernel that has it (drivers: every supported one,
    /// when built).
    pub const fn since(self) -> &'static str {
        match self {
            Feature::Tcx => "6.6",
            Feature::Clsact => "4.5",
            Feature::NetnsCookie => "5.14",
            Feature::BpfLoop => "5.17",
            Feature::ForceForwarding => "6.17",
            Feature::VethGroNapi => "5.13",
            Feature::Veth | Feature::Macvlan | Feature::Ipvlan | Feature::Bridge => "-",
        }
    }

    /// What the engine uses it for, and does without it.
    pub const fn role(self) -> (&'static str, &'static str) {
        match self {
            Feature::Tcx => (
                "hooks the programs of parents, uplinks and taps",
                "cls_bpf filters on a clsact qdisc, same programs and order",
            ),
            Feature::Clsact => (
                "hooks the programs of endpoint ports (and every hook without tcx)",
                "no eBPF attachment: --backend native only",
            ),
            Feature::NetnsCookie => (
                "names the node's pin and state directories",
                "an id kept as an alternative name of the node's loopback (attach-node-…)",
            ),
            Feature::BpfLoop => (
                "walks a parent's flood row (broadcast and multicast copies)",
                "an unrolled walk: at most 16 eBPF endpoints per parent (ports per switch)",
            ),
            Feature::ForceForwarding => (
                "lets ipvlan host sides route IPv6 without the node forwarding",
                "net.ipv6.conf.all.forwarding is turned on (and recorded) as for `router`",
            ),
            Feature::Veth => (
                "gives every eBPF endpoint its interface",
                "no eBPF attachment",
            ),
            Feature::Macvlan => ("--backend native for macvlan", "--backend ebpf"),
            Feature::Ipvlan => ("--backend native for ipvlan", "--backend ebpf"),
            Feature::Bridge => ("--backend native for bridge", "our eBPF switch"),
            Feature::VethGroNapi => (
                "--datapath xdp: GRO on an endpoint's container side lets the parent's XDP \
                 program redirect into it",
                "an XDP program that passes all (attach_ep_xdp) on each xdp endpoint's \
                 container side turns its NAPI on",
            ),
        }
    }

    /// Whether this kernel has it (probed once per process).
    pub fn present(self) -> bool {
        static CACHE: [OnceLock<bool>; Feature::ALL.len()] =
            [const { OnceLock::new() }; Feature::ALL.len()];
        let i = Feature::ALL
            .iter()
            .position(|f| *f == self)
            .expect("every feature is in ALL");
        *CACHE[i].get_or_init(|| self.probe())
    }

    fn probe(self) -> bool {
        match self {
            Feature::Tcx => SchedClassifier::query_tcx(LOOPBACK, TcAttachType::Ingress).is_ok(),
            Feature::NetnsCookie => crate::netns::current_cookie().is_ok(),
            Feature::BpfLoop => {
                is_helper_supported(ProgramType::SchedClassifier, BpfHelper::BPF_FUNC_loop)
                    .unwrap_or(false)
            }
            Feature::ForceForwarding => {
                std::path::Path::new("/proc/sys/net/ipv6/conf/all/force_forwarding").exists()
            }
            // A behaviour of the datapath, not something to ask for: the
            // kernel's version says.
            Feature::VethGroNapi => release_at_least(&kernel_release(), (5, 13)),
            Feature::Clsact
            | Feature::Veth
            | Feature::Macvlan
            | Feature::Ipvlan
            | Feature::Bridge => scratch::has(self),
        }
    }

    /// Refuses `what` when the kernel lacks this feature: the error names
    /// the feature, the first kernel with it, and what works instead.
    pub fn require(self, what: &str) -> Result<()> {
        if self.present() {
            return Ok(());
        }
        let since = match self.since() {
            "-" => String::new(),
            v => format!(", Linux {v} and later have it"),
        };
        Err(Error::invalid(format!(
            "{what} needs the {}, which this kernel ({}) lacks{since}; {}",
            self.what(),
            kernel_release(),
            self.role().1
        )))
    }
}

/// Whether kernel `release` ("5.10.0-46-cloud-amd64") is `want` or newer.
fn release_at_least(release: &str, want: (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= want
}

/// The loopback's ifindex, the same in every namespace.
const LOOPBACK: u32 = 1;

/// How tc programs are hooked on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TcHooks {
    Tcx,
    Clsact,
}

/// Environment variable that picks clsact filters even where tcx exists
/// (to sit beside tools that manage tc filters themselves).
pub const TC_HOOKS_ENV: &str = "ATTACH_TC_HOOKS";

/// tcx where the kernel has it, else clsact; `ATTACH_TC_HOOKS=clsact`
/// picks clsact anyway (`tcx` where the kernel lacks it is refused by the
/// first attach, naming the feature).
pub fn tc_hooks() -> TcHooks {
    static HOOKS: OnceLock<TcHooks> = OnceLock::new();
    *HOOKS.get_or_init(|| match std::env::var(TC_HOOKS_ENV).as_deref() {
        Ok("clsact") => TcHooks::Clsact,
        Ok("tcx") => TcHooks::Tcx,
        _ if Feature::Tcx.present() => TcHooks::Tcx,
        _ => TcHooks::Clsact,
    })
}

/// Checks `ATTACH_TC_HOOKS` names a way of hooking.
pub fn check_env() -> Result<()> {
    match std::env::var(TC_HOOKS_ENV) {
        Ok(v) if !matches!(v.as_str(), "tcx" | "clsact" | "") => Err(Error::invalid(format!(
            "{TC_HOOKS_ENV}={v:?}: expected tcx or clsact"
        ))),
        Ok(v) if v == "tcx" => Feature::Tcx.require(&format!("{TC_HOOKS_ENV}=tcx")),
        _ => Ok(()),
    }
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    // SAFETY: plain data filled by the kernel.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    // SAFETY: the kernel NUL-terminates the field.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

mod driver_cache;

/// The drivers and tc hooks, tried in a namespace of their own.
mod scratch {
    use std::sync::OnceLock;

    use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL};
    use netlink_packet_route::{
        RouteNetlinkMessage,
        link::{
            InfoData, InfoIpVlan, InfoKind, InfoMacVlan, InfoVeth, IpVlanMode, LinkMessage,
            MacVlanMode,
        },
        tc::{TcAttribute, TcHandle, TcMessage},
    };

    use rtnetlink::{LinkMessageBuilder, LinkUnspec};

    use super::Feature;
    use crate::nlsync;

    /// Whether the kernel has `f`: found earlier in this boot, else
    /// probed (once per process; what is found is kept for the boot).
    pub fn has(f: Feature) -> bool {
        kept().contains(&f) || probe().contains(&f)
    }

    /// What an earlier process of this boot found (read once).
    fn kept() -> &'static [Feature] {
        static KEPT: OnceLock<Vec<Feature>> = OnceLock::new();
        KEPT.get_or_init(|| super::driver_cache::read().unwrap_or_default())
    }

    fn probe() -> &'static [Feature] {
        static FOUND: OnceLock<Vec<Feature>> = OnceLock::new();
        FOUND.get_or_init(|| {
            let found = in_a_namespace_of_its_own();
            super::driver_cache::write(&found);
            found
        })
    }

    fn in_a_namespace_of_its_own() -> Vec<Feature> {
        {
            // unshare(CLONE_NEWNET) moves only the calling thread: a thread
            // of its own, whose namespace (and all made in it) goes with it.
            std::thread::spawn(|| {
                // SAFETY: affects this thread only.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                    tracing::debug!(
                        "probing drivers: cannot make a namespace: {}",
                        std::io::Error::last_os_error()
                    );
                    return Vec::new();
                }
                in_scratch()
            })
            .join()
            .unwrap_or_default()
        }
    }

    fn create(msg: LinkMessage) -> bool {
        nlsync::request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .is_ok()
    }

    fn in_scratch() -> Vec<Feature> {
        let mut found = Vec::new();
        let veth = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name("probe0".to_owned())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(
                LinkMessageBuilder::<LinkUnspec>::new()
                    .name("probe1".to_owned())
                    .build(),
            )))
            .build();
        if !create(veth) {
            return found;
        }
        found.push(Feature::Veth);
        let Some(lower) = index_of("probe0") else {
            return found;
        };
        let macvlan = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::MacVlan)
            .name("probe2".to_owned())
            .link(lower)
            .set_info_data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Bridge,
            )]))
            .build();
        if create(macvlan) {
            found.push(Feature::Macvlan);
        }
        // A device serves one of the two drivers: the ipvlan stands on the
        // veth's other end.
        let Some(other) = index_of("probe1") else {
            return found;
        };
        let ipvlan = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::IpVlan)
            .name("probe3".to_owned())
            .link(other)
            .set_info_data(InfoData::IpVlan(vec![InfoIpVlan::Mode(IpVlanMode::L2)]))
            .build();
        if create(ipvlan) {
            found.push(Feature::Ipvlan);
        }
        let bridge = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Bridge)
            .name("probe4".to_owned())
            .build();
        if create(bridge) {
            found.push(Feature::Bridge);
        }
        if clsact(lower) {
            found.push(Feature::Clsact);
        }
        found
    }

    fn index_of(name: &str) -> Option<u32> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(netlink_packet_route::link::LinkAttribute::IfName(
                name.into(),
            ));
        nlsync::request(RouteNetlinkMessage::GetLink(msg), 0)
            .ok()?
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })
    }

    /// A clsact qdisc, and a cls_bpf filter kind the kernel knows (asked for
    /// with no program: "missing program" means cls_bpf exists).
    fn clsact(ifindex: u32) -> bool {
        let mut qdisc = TcMessage::with_index(ifindex as i32);
        qdisc.header.parent = TcHandle::CLSACT;
        qdisc.header.handle = TcHandle {
            major: 0xffff,
            minor: 0,
        };
        qdisc.attributes.push(TcAttribute::Kind("clsact".into()));
        if nlsync::request(
            RouteNetlinkMessage::NewQueueDiscipline(qdisc),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .is_err()
        {
            return false;
        }
        let mut filter = TcMessage::with_index(ifindex as i32);
        filter.header.parent = TcHandle {
            major: 0xffff,
            minor: TcHandle::MIN_INGRESS,
        };
        // Protocol ETH_P_ALL, priority 1.
        filter.header.info = (1 << 16) | u32::from(0x0003u16.to_be());
        filter.attributes.push(TcAttribute::Kind("bpf".into()));
        match nlsync::request(
            RouteNetlinkMessage::NewTrafficFilter(filter),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        ) {
            // No module: ENOENT (the kind is unknown); with cls_bpf, the
            // missing program is EINVAL.
            Err(e) => e.raw_os_error() != Some(libc::ENOENT),
            Ok(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::release_at_least;

    #[test]
    fn releases_compare_by_major_and_minor() {
        assert!(!release_at_least("5.10.0-46-cloud-amd64", (5, 13)));
        assert!(release_at_least("5.13.0", (5, 13)));
        assert!(release_at_least("6.1.0-57-cloud-amd64", (5, 13)));
        assert!(release_at_least("6.18.44-fc-v1300", (6, 17)));
        assert!(!release_at_least("garbage", (5, 13)));
    }
}
