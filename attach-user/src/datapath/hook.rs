//! The names of the hooks the engine makes: [`Hook`], one value per place a
//! program is attached, spelled as its link pin (`parent-7-rx`).
//!
//! The spelling is a contract: pins made by an earlier version are found
//! by it, records and checks carry it, and a tc hook's filter is found by
//! the place it gives ([`tc_place`]). [`Hook`]'s `Display` and `FromStr`
//! are each other's inverse over every name made here.

use std::{fmt, str::FromStr};

use aya::programs::TcAttachType;

use crate::tc_filter::Filter;

/// One hook of the datapath: where a program is attached, and what for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// macvlan receive (tc ingress) on a parent: `parent-N-rx`.
    ParentRx { ifindex: u32 },
    /// The node's own frames out of a parent (tc egress): `parent-N-host`.
    ParentHost { ifindex: u32 },
    /// macvlan receive by XDP on a parent: `parent-N-xdp`.
    ParentXdp { ifindex: u32 },
    /// ipvlan receive on a parent: `parent-N-ipvl`.
    ParentIpvlan { ifindex: u32 },
    /// The router's inbound program on an uplink: `parent-N-rt`.
    ParentRouter { ifindex: u32 },
    /// Nested receive on a VM's uplink (in the VM): `parent-N-nest`.
    ParentNested { ifindex: u32 },
    /// The switch program on an uplink: `uplink-N-sw`.
    UplinkSwitch { ifindex: u32 },
    /// An endpoint port's transmit hook: `port-N-tx`. Not a pin: ports are
    /// hooked with a filter (see [`crate::tc_filter`]), found by the
    /// ifindex this name carries; it names the hook in records, checks and
    /// upgrades.
    PortTx { host_ifindex: u32 },
    /// An xdp endpoint's container side, before Linux 5.13: the program
    /// that gives the veth its NAPI, by the host side's ifindex (the
    /// container side's is another namespace's): `port-N-xdp`.
    PortXdp { host_ifindex: u32 },
    /// The nested program on a VM's tap (on the host): `tap-N-nest`.
    TapNested { ifindex: u32 },
    /// A `host` attachment's cgroup ingress counter: `cgroup-N-in`.
    CgroupIn { counter: u32 },
    /// A `host` attachment's cgroup egress counter: `cgroup-N-eg`.
    CgroupEg { counter: u32 },
}

/// The priority of a port's filter (every port is hooked by a filter).
pub(super) const PORT_PRIORITY: u16 = 1;

impl Hook {
    /// The three words of the name: what is hooked, its number, the role.
    fn parts(self) -> (&'static str, u32, &'static str) {
        match self {
            Hook::ParentRx { ifindex } => ("parent", ifindex, "rx"),
            Hook::ParentHost { ifindex } => ("parent", ifindex, "host"),
            Hook::ParentXdp { ifindex } => ("parent", ifindex, "xdp"),
            Hook::ParentIpvlan { ifindex } => ("parent", ifindex, "ipvl"),
            Hook::ParentRouter { ifindex } => ("parent", ifindex, "rt"),
            Hook::ParentNested { ifindex } => ("parent", ifindex, "nest"),
            Hook::UplinkSwitch { ifindex } => ("uplink", ifindex, "sw"),
            Hook::PortTx { host_ifindex } => ("port", host_ifindex, "tx"),
            Hook::PortXdp { host_ifindex } => ("port", host_ifindex, "xdp"),
            Hook::TapNested { ifindex } => ("tap", ifindex, "nest"),
            Hook::CgroupIn { counter } => ("cgroup", counter, "in"),
            Hook::CgroupEg { counter } => ("cgroup", counter, "eg"),
        }
    }

    /// The place of this hook as a cls_bpf filter: its device, direction
    /// and priority. The priorities keep the order the tcx links have
    /// (nested and ipvlan receive first, as they pass on what is not
    /// theirs). None for hooks that are not tc ones (XDP, cgroup).
    pub fn tc_place(self) -> Option<Filter> {
        let (at, priority) = match self {
            Hook::PortTx { .. } => (TcAttachType::Ingress, PORT_PRIORITY),
            Hook::ParentNested { .. } | Hook::TapNested { .. } => (TcAttachType::Ingress, 2),
            Hook::ParentIpvlan { .. } => (TcAttachType::Ingress, 3),
            Hook::ParentRx { .. } => (TcAttachType::Ingress, 4),
            Hook::ParentRouter { .. } => (TcAttachType::Ingress, 5),
            Hook::UplinkSwitch { .. } => (TcAttachType::Ingress, 6),
            Hook::ParentHost { .. } => (TcAttachType::Egress, 4),
            Hook::ParentXdp { .. }
            | Hook::PortXdp { .. }
            | Hook::CgroupIn { .. }
            | Hook::CgroupEg { .. } => {
                return None;
            }
        };
        Some(Filter {
            ifindex: self.parts().1,
            at,
            priority,
        })
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, n, role) = self.parts();
        write!(f, "{what}-{n}-{role}")
    }
}

/// A name that is none of [`Hook`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAHook;

impl FromStr for Hook {
    type Err = NotAHook;

    fn from_str(name: &str) -> Result<Self, NotAHook> {
        let (what, rest) = name.split_once('-').ok_or(NotAHook)?;
        let (n, role) = rest.split_once('-').ok_or(NotAHook)?;
        let n: u32 = n.parse().map_err(|_| NotAHook)?;
        Ok(match (what, role) {
            ("parent", "rx") => Hook::ParentRx { ifindex: n },
            ("parent", "host") => Hook::ParentHost { ifindex: n },
            ("parent", "xdp") => Hook::ParentXdp { ifindex: n },
            ("parent", "ipvl") => Hook::ParentIpvlan { ifindex: n },
            ("parent", "rt") => Hook::ParentRouter { ifindex: n },
            ("parent", "nest") => Hook::ParentNested { ifindex: n },
            ("uplink", "sw") => Hook::UplinkSwitch { ifindex: n },
            ("port", "tx") => Hook::PortTx { host_ifindex: n },
            ("port", "xdp") => Hook::PortXdp { host_ifindex: n },
            ("tap", "nest") => Hook::TapNested { ifindex: n },
            ("cgroup", "in") => Hook::CgroupIn { counter: n },
            ("cgroup", "eg") => Hook::CgroupEg { counter: n },
            _ => return Err(NotAHook),
        })
    }
}

/// The place of the tc hook named `pin` as a cls_bpf filter (see
/// [`Hook::tc_place`]); None for names of other hooks and of no hook.
pub fn tc_place(pin: &str) -> Option<Filter> {
    pin.parse::<Hook>().ok()?.tc_place()
}

// The names as the kinds ask for them (strings, as records keep them).

/// Pin names of the links of a parent: receive, host, XDP receive.
pub fn parent_links(ifindex: u32) -> [String; 3] {
    [
        Hook::ParentRx { ifindex }.to_string(),
        Hook::ParentHost { ifindex }.to_string(),
        Hook::ParentXdp { ifindex }.to_string(),
    ]
}

/// Pin name of the ipvlan receive program's link on a parent.
pub fn ipvlan_parent_link(ifindex: u32) -> String {
    Hook::ParentIpvlan { ifindex }.to_string()
}

/// Pin name of the switch program's link on an uplink.
pub fn uplink_link(ifindex: u32) -> String {
    Hook::UplinkSwitch { ifindex }.to_string()
}

/// Name of an endpoint port's transmit hook (see [`Hook::PortTx`]).
pub fn port_link(host_ifindex: u32) -> String {
    Hook::PortTx { host_ifindex }.to_string()
}

/// Pin name of an xdp endpoint's container-side program (see
/// [`Hook::PortXdp`]).
pub fn port_xdp_link(host_ifindex: u32) -> String {
    Hook::PortXdp { host_ifindex }.to_string()
}

/// Pin name of the router's inbound program on an uplink.
pub fn router_uplink_link(ifindex: u32) -> String {
    Hook::ParentRouter { ifindex }.to_string()
}

/// Pin name of the nested receive program on a VM's uplink (in the VM).
pub fn nested_uplink_link(ifindex: u32) -> String {
    Hook::ParentNested { ifindex }.to_string()
}

/// Pin name of the nested program on a VM's tap (on the host).
pub fn tap_link(ifindex: u32) -> String {
    Hook::TapNested { ifindex }.to_string()
}

/// Pin names of the ingress and egress links of a `host` attachment's
/// cgroup counters.
pub fn cgroup_links(counter_id: u32) -> [String; 2] {
    [
        Hook::CgroupIn {
            counter: counter_id,
        }
        .to_string(),
        Hook::CgroupEg {
            counter: counter_id,
        }
        .to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of hook, with the name earlier versions pinned it as.
    fn every() -> Vec<(Hook, &'static str)> {
        vec![
            (Hook::ParentRx { ifindex: 7 }, "parent-7-rx"),
            (Hook::ParentHost { ifindex: 7 }, "parent-7-host"),
            (Hook::ParentXdp { ifindex: 7 }, "parent-7-xdp"),
            (Hook::PortXdp { host_ifindex: 9 }, "port-9-xdp"),
            (Hook::ParentIpvlan { ifindex: 7 }, "parent-7-ipvl"),
            (Hook::ParentRouter { ifindex: 7 }, "parent-7-rt"),
            (Hook::ParentNested { ifindex: 7 }, "parent-7-nest"),
            (Hook::UplinkSwitch { ifindex: 12 }, "uplink-12-sw"),
            (Hook::PortTx { host_ifindex: 4242 }, "port-4242-tx"),
            (Hook::TapNested { ifindex: 9 }, "tap-9-nest"),
            (Hook::CgroupIn { counter: 0 }, "cgroup-0-in"),
            (Hook::CgroupEg { counter: 1 }, "cgroup-1-eg"),
        ]
    }

    #[test]
    fn names_are_the_pins_of_earlier_versions() {
        for (hook, name) in every() {
            assert_eq!(hook.to_string(), name);
            assert_eq!(name.parse::<Hook>(), Ok(hook));
        }
        assert_eq!(port_link(3), "port-3-tx");
        assert_eq!(
            parent_links(5),
            ["parent-5-rx", "parent-5-host", "parent-5-xdp"]
        );
        assert_eq!(cgroup_links(2), ["cgroup-2-in", "cgroup-2-eg"]);
        assert_eq!(ipvlan_parent_link(5), "parent-5-ipvl");
        assert_eq!(uplink_link(5), "uplink-5-sw");
        assert_eq!(router_uplink_link(5), "parent-5-rt");
        assert_eq!(nested_uplink_link(5), "parent-5-nest");
        assert_eq!(tap_link(5), "tap-5-nest");
    }

    #[test]
    fn other_names_are_no_hooks() {
        for name in [
            "",
            "parent",
            "parent-7",
            "parent-x-rx",
            "parent-7-tx",
            "port-7-rx",
        ] {
            assert_eq!(name.parse::<Hook>(), Err(NotAHook), "{name}");
            assert!(tc_place(name).is_none(), "{name}");
        }
    }

    #[test]
    fn tc_places_keep_the_tcx_order() {
        let place = |name: &str| tc_place(name).map(|f| (f.ifindex, f.at, f.priority));
        assert_eq!(
            place("port-3-tx"),
            Some((3, TcAttachType::Ingress, PORT_PRIORITY))
        );
        assert_eq!(place("parent-3-nest"), Some((3, TcAttachType::Ingress, 2)));
        assert_eq!(place("tap-3-nest"), Some((3, TcAttachType::Ingress, 2)));
        assert_eq!(place("parent-3-ipvl"), Some((3, TcAttachType::Ingress, 3)));
        assert_eq!(place("parent-3-rx"), Some((3, TcAttachType::Ingress, 4)));
        assert_eq!(place("parent-3-rt"), Some((3, TcAttachType::Ingress, 5)));
        assert_eq!(place("uplink-3-sw"), Some((3, TcAttachType::Ingress, 6)));
        assert_eq!(place("parent-3-host"), Some((3, TcAttachType::Egress, 4)));
        assert_eq!(place("parent-3-xdp"), None);
        assert_eq!(place("cgroup-3-in"), None);
        assert_eq!(place("cgroup-3-eg"), None);
    }
}
