//! Attach modes and flags, as the datapath sees them.

/// macvlan modes, with the kernel's own bit values (`MACVLAN_MODE_*`), so the
/// flood rules read as masks exactly as in `drivers/net/macvlan.c`.
pub const MODE_PRIVATE: u8 = 1;
pub const MODE_VEPA: u8 = 2;
pub const MODE_BRIDGE: u8 = 4;
pub const MODE_PASSTHRU: u8 = 8;
pub const MODE_ALL: u8 = MODE_PRIVATE | MODE_VEPA | MODE_BRIDGE | MODE_PASSTHRU;

/// The node's own stack on the parent may reach this endpoint and back.
pub const EP_F_HOST_ACCESS: u8 = 1;
/// Frames the endpoint sends must carry its own source MAC.
pub const EP_F_SPOOFCHK: u8 = 2;
/// IPv4/IPv6/ARP packets the endpoint sends must carry one of its own
/// addresses as source (`attach_ep_ips`); set with `EP_F_SPOOFCHK` when the
/// endpoint has addresses.
pub const EP_F_IPCHK: u8 = 4;
/// A nested endpoint (a container in a VM, on the host side): its frames
/// are delivered by pushing its VLAN tag(s) (`attach_nest_ids`) and
/// redirecting to the VM's tap (`host_ifindex`), not into a veth peer.
pub const EP_F_NESTED: u8 = 8;
/// ipvlan, on kernels whose `bpf_fib_lookup` cannot look in a given table
/// (`BPF_FIB_LOOKUP_TBID`, Linux 6.8): the endpoint is down, so its
/// addresses do not count. The engine keeps it from the host side's
/// carrier (the agent within a second, `reconcile` otherwise); newer
/// kernels tell it by a route lookup and never read it.
pub const EP_F_DOWN: u8 = 16;
/// With source checks on: the endpoint may send router advertisements and
/// redirects (a router container).
pub const EP_F_ROUTER: u8 = 32;
/// With source checks on: the endpoint may send DHCP / DHCPv6 server
/// messages (a DHCP server or relay container).
pub const EP_F_DHCP_SERVER: u8 = 64;

/// The parent has a passthru endpoint (and no other).
pub const PARENT_F_PASSTHRU: u8 = 1;
/// The parent is also the uplink of an eBPF switch, whose untagged ports
/// and the parent's bridge-mode endpoints reach each other locally.
pub const PARENT_F_SWITCH: u8 = 2;

/// Receive path of a parent: tcx programs only.
pub const DATAPATH_TC: u8 = 0;
/// Receive path of a parent: XDP for unicast, tcx for the rest.
pub const DATAPATH_XDP: u8 = 1;
