//! The attach kinds. Each module provides the same three steps, which the
//! engine drives under its lock:
//! - `plan`: check a request against the system and the node's other
//!   attachments, and return the record to create (nothing changes yet);
//! - `create`: make it, noting in the record what exists so far;
//! - `teardown`: remove whatever of a record exists, continuing past
//!   failures (used by `del`, and to roll back a failed `create`);
//! - `check`, `repair` and `links`, for `check`, `reconcile` and `upgrade`.

pub mod bridge;
pub mod container;
pub mod host;
pub mod ipvlan;
mod ipvlan_native;
pub mod macvlan;
pub mod nested;
pub mod router;
pub mod sriov;

use std::net::IpAddr;

use crate::{
    addr::{IpNet, Mac},
    container as endpoint_names,
    node::Node,
    error::{Error, Result},
    features::Feature,
    model::{Attachment, Backend, Kind, NO_IFNAME},
    netlink::{Link, Rtnl},
    netns::Netns,
    sys,
};

/// What `attach add <kind>` asks for.
#[derive(Clone, Debug)]
pub enum AddRequest {
    Macvlan(macvlan::MacvlanRequest),
    Ipvlan(ipvlan::IpvlanRequest),
    Bridge(bridge::BridgeRequest),
    Router(router::RouterRequest),
    Nested(nested::NestedRequest),
    NestedHost(nested::NestedHostRequest),
    Host(host::HostRequest),
    Container(container::ContainerRequest),
    Sriov(sriov::SriovRequest),
}

impl AddRequest {
    /// The container namespace (NETNS as given) and interface name the
    /// request is for; [`NO_IFNAME`] for kinds without an interface; both
    /// empty for the host side of a nested attachment, which has no
    /// container namespace on this node (its kind checks its identity).
    pub fn target(&self) -> (&str, &str) {
        match self {
            AddRequest::Macvlan(r) => (&r.netns, &r.ifname),
            AddRequest::Ipvlan(r) => (&r.netns, &r.ifname),
            AddRequest::Bridge(r) => (&r.netns, &r.ifname),
            AddRequest::Router(r) => (&r.netns, &r.ifname),
            AddRequest::Nested(r) => (&r.netns, &r.ifname),
            AddRequest::NestedHost(_) => ("", ""),
            AddRequest::Host(r) => (&r.netns, NO_IFNAME),
            AddRequest::Container(r) => (&r.netns, NO_IFNAME),
            AddRequest::Sriov(r) => (&r.netns, &r.ifname),
        }
    }

    /// The network namespace the attachment lives in, to open: NETNS, but
    /// for `container` OTHER's (NETNS may not exist yet: the engine makes it).
    pub fn namespace(&self) -> &str {
        match self {
            AddRequest::Container(r) => &r.join,
            _ => self.target().0,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            AddRequest::Macvlan(_) => Kind::Macvlan,
            AddRequest::Ipvlan(_) => Kind::Ipvlan,
            AddRequest::Host(_) => Kind::Host,
            AddRequest::Container(_) => Kind::Container,
            AddRequest::Sriov(_) => Kind::Sriov,
            AddRequest::Bridge(_) => Kind::Bridge,
            AddRequest::Router(_) => Kind::Router,
            AddRequest::Nested(_) | AddRequest::NestedHost(_) => Kind::Nested,
        }
    }

    /// Checks what can be checked without looking at the system.
    pub fn validate(&self) -> Result<()> {
        // Every kind but the host side of a nested endpoint names the
        // container: empty would make the node itself the container.
        if !matches!(self, AddRequest::NestedHost(_)) && self.target().0.trim().is_empty() {
            return Err(Error::invalid(format!(
                "--netns {:?} is empty: name the container's network namespace \
                 (a name under /run/netns, a path or a pid)",
                self.target().0
            )));
        }
        match self {
            AddRequest::Macvlan(r) => r.validate(),
            AddRequest::Ipvlan(r) => r.validate(),
            AddRequest::Bridge(r) => r.validate(),
            AddRequest::Router(r) => r.validate(),
            AddRequest::Nested(r) => r.validate(),
            AddRequest::NestedHost(r) => r.validate(),
            AddRequest::Host(r) => r.validate(),
            AddRequest::Container(r) => r.validate(),
            AddRequest::Sriov(r) => r.validate(),
        }
    }
}

/// What the engine asks of particular kinds, beside the lifecycle below.
pub(crate) use macvlan::{adopt_mac, drifted_parents, resync_parents};

/// Whether `r` is the host side of a nested attachment (known by its tap,
/// S-tag and VLAN rather than a namespace).
pub(crate) fn is_nested_host_side(r: &Attachment) -> bool {
    nested::is_host_side(r)
}

/// Ages out the eBPF switches' learned FDB entries and drops those of ports
/// that are gone; returns how many went.
pub(crate) fn sweep_switches(node: &Node, records: &[Attachment]) -> Result<usize> {
    bridge::sweep(node, records)
}

/// Releases the namespace holds a crashed `add container` left under
/// `state_dir`.
pub(crate) fn release_held_namespaces(state_dir: &std::path::Path) -> Vec<Error> {
    container::release_leftovers(state_dir)
}

/// A record of `kind` for NETNS `spec` (open as `ns`) with nothing made
/// yet: kinds fill in the rest.
pub(crate) fn record(kind: Kind, spec: &str, ns: &Netns, ifname: &str) -> Attachment {
    Attachment {
        netns: spec.to_owned(),
        netns_path: ns.path.clone(),
        netns_inode: ns.inode,
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
    }
}

/// The largest MTU any interface takes (`IP_MAX_MTU`, a veth's maximum).
pub(crate) const MAX_MTU: u32 = 65535;

/// Checks a container's addressing: usable host addresses, no address
/// twice, a gateway on the subnet of an address of its family (not one of
/// them), an MTU its families can use.
pub(crate) fn check_addressing(
    ips: &[IpNet],
    gateway: Option<IpAddr>,
    mtu: Option<u32>,
) -> Result<()> {
    for (i, a) in ips.iter().enumerate() {
        check_host_address(a)?;
        if ips[..i].iter().any(|b| b.addr == a.addr) {
            return Err(Error::invalid(format!("address {} is given twice", a.addr)));
        }
    }
    if let Some(gw) = gateway {
        check_gateway(ips, gw)?;
    }
    if let Some(mtu) = mtu {
        let min = if ips.iter().any(|n| n.addr.is_ipv6()) {
            1280
        } else {
            68
        };
        if mtu < min {
            return Err(Error::invalid(format!(
                "MTU {mtu} is below the minimum of {min}{}",
                if min == 1280 { " for IPv6" } else { "" }
            )));
        }
        check_mtu_max(mtu)?;
    }
    Ok(())
}

/// Refuses an MTU no interface takes.
pub(crate) fn check_mtu_max(mtu: u32) -> Result<()> {
    if mtu > MAX_MTU {
        return Err(Error::invalid(format!(
            "MTU {mtu} exceeds the largest an interface takes ({MAX_MTU})"
        )));
    }
    Ok(())
}

/// Refuses what cannot be a container's own address: an IPv4 subnet's
/// network or broadcast address (prefixes up to /30), an IPv4-mapped IPv6
/// address, a link-local address.
pub(crate) fn check_host_address(net: &IpNet) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid(format!("address {net} {why}")));
    match net.addr {
        IpAddr::V4(v4) => {
            if v4.is_link_local() {
                return bad(
                    "is link-local (169.254.0.0/16): give the container a routable address",
                );
            }
            if net.prefix < 31 {
                let host_bits = u32::MAX >> net.prefix;
                let a = u32::from(v4);
                if a & host_bits == 0 {
                    return bad("is the network address of its subnet, not a host's");
                }
                if a & host_bits == host_bits {
                    return bad("is the broadcast address of its subnet, not a host's");
                }
            }
        }
        IpAddr::V6(v6) => {
            if v6.to_ipv4_mapped().is_some() {
                return bad("is an IPv4-mapped IPv6 address: give the IPv4 address as such");
            }
            if v6.is_unicast_link_local() {
                return bad("is link-local (fe80::/10): the kernel makes the interface's own");
            }
        }
    }
    Ok(())
}

/// Whether `addr` is in the subnet of `net`.
pub(crate) fn in_subnet(net: &IpNet, addr: IpAddr) -> bool {
    match (net.addr, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(net.prefix))
                .unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(net.prefix))
                .unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// A default gateway must be a unicast address of a family the interface
/// has, on the subnet of one of its addresses (an IPv6 gateway may also be
/// link-local), and not one of them.
fn check_gateway(ips: &[IpNet], gw: IpAddr) -> Result<()> {
    let unusable = gw.is_unspecified()
        || gw.is_multicast()
        || gw.is_loopback()
        || matches!(gw, IpAddr::V4(v4) if v4.is_broadcast());
    if unusable {
        return Err(Error::invalid(format!(
            "gateway {gw} is not a unicast address"
        )));
    }
    let family: Vec<&IpNet> = ips
        .iter()
        .filter(|n| n.addr.is_ipv4() == gw.is_ipv4())
        .collect();
    if family.is_empty() {
        return Err(Error::invalid(format!(
            "gateway {gw} needs an {} address on the interface (--ip)",
            if gw.is_ipv4() { "IPv4" } else { "IPv6" }
        )));
    }
    if let Some(own) = family.iter().find(|n| n.addr == gw) {
        return Err(Error::invalid(format!(
            "gateway {gw} is the interface's own address ({own}): give the next hop's"
        )));
    }
    let link_local = matches!(gw, IpAddr::V6(v6) if v6.is_unicast_link_local());
    if !link_local && !family.iter().any(|n| in_subnet(n, gw)) {
        let nets: Vec<String> = family.iter().map(|n| n.to_string()).collect();
        return Err(Error::invalid(format!(
            "gateway {gw} is outside the subnet of the interface's address{} {}: \
             the container could not reach it",
            if nets.len() > 1 { "es" } else { "" },
            nets.join(", ")
        )));
    }
    Ok(())
}

/// The parent device `name` in the node: present, an Ethernet device, and
/// not one of our own host-side veths.
pub(crate) async fn parent_link(node: &Node, name: &str) -> Result<Link> {
    let parent = node.rtnl.link_by_name(name).await?.ok_or_else(|| {
        Error::not_found(format!(
            "parent interface {name:?} not found in the node's network namespace"
        ))
    })?;
    if parent.name.starts_with(endpoint_names::HOST_IF_PREFIX) {
        return Err(Error::invalid(format!(
            "{} is an endpoint's host-side interface, not a parent",
            parent.name
        )));
    }
    if !parent.ether {
        return Err(Error::invalid(format!(
            "parent {} is not an Ethernet device",
            parent.name
        )));
    }
    Ok(parent)
}

/// The endpoint's MTU: the parent's by default, never above it.
pub(crate) fn mtu_under(parent: &Link, mtu: Option<u32>) -> Result<u32> {
    let mtu = mtu.unwrap_or(parent.mtu);
    if mtu > parent.mtu {
        return Err(Error::invalid(format!(
            "MTU {mtu} exceeds the MTU {} of parent {}",
            parent.mtu, parent.name
        )));
    }
    Ok(mtu)
}

/// Refuses an interface name the container already has.
pub(crate) async fn check_ifname_free(ns: &Netns, netns: &str, ifname: &str) -> Result<()> {
    let c = Rtnl::in_netns(ns)?;
    if c.link_by_name(ifname).await?.is_some() {
        return Err(Error::conflict(format!(
            "interface {ifname} already exists in network namespace {netns:?}"
        )));
    }
    Ok(())
}

/// The lowest endpoint id (index of its counters) no attachment of the
/// node has, whatever its kind.
pub(crate) fn free_endpoint_id(records: &[Attachment]) -> Result<u32> {
    use attach_common::MAX_ENDPOINTS;
    (0..MAX_ENDPOINTS)
        .find(|id| records.iter().all(|r| r.endpoint_id != Some(*id)))
        .ok_or_else(|| {
            Error::conflict(format!(
                "the node already has {MAX_ENDPOINTS} eBPF endpoints"
            ))
        })
}

/// Refuses addresses already used on `parent`: by the node itself, or by
/// another attachment of it.
pub(crate) async fn check_addresses_free(
    node: &Node,
    parent: &crate::netlink::Link,
    ips: &[crate::addr::IpNet],
    on_parent: &[&Attachment],
) -> Result<()> {
    let own = node.rtnl.addresses(parent.index).await?;
    for ip in ips {
        if own.contains(&ip.addr) {
            return Err(Error::conflict(format!(
                "address {} is the node's own address on parent {}",
                ip.addr, parent.name
            )));
        }
        if let Some(r) = on_parent
            .iter()
            .find(|r| r.ips.iter().any(|o| o.addr == ip.addr))
        {
            return Err(Error::conflict(format!(
                "address {} is already used on parent {} by {} in {:?}",
                ip.addr, parent.name, r.ifname, r.netns
            )));
        }
    }
    Ok(())
}

/// The kernel features `req` cannot do without, each with how to name the
/// request in a refusal: checked before anything is made.
fn required_features(req: &AddRequest) -> Vec<(Feature, String)> {
    // Every eBPF kind gives its endpoint a veth and hooks ports with clsact
    // filters where tcx is missing.
    let ebpf = |what: &str| {
        [Feature::Veth, Feature::Clsact]
            .into_iter()
            .map(|f| (f, what.to_owned()))
            .collect::<Vec<_>>()
    };
    match req {
        AddRequest::Macvlan(r) if r.backend == Backend::Native => {
            vec![(Feature::Macvlan, "macvlan --backend native".to_owned())]
        }
        AddRequest::Macvlan(r) if r.datapath == Some(crate::model::Datapath::Xdp) => {
            let mut needs = ebpf("macvlan --datapath xdp");
            needs.push((Feature::VethGroNapi, "macvlan --datapath xdp".to_owned()));
            needs
        }
        AddRequest::Macvlan(_) => ebpf("macvlan --backend ebpf"),
        AddRequest::Ipvlan(r) if r.backend == Backend::Native => {
            vec![(Feature::Ipvlan, "ipvlan --backend native".to_owned())]
        }
        AddRequest::Ipvlan(_) => ebpf("ipvlan --backend ebpf"),
        AddRequest::Bridge(r) if r.backend == Backend::Native => vec![
            (Feature::Bridge, "bridge --backend native".to_owned()),
            (Feature::Veth, "bridge --backend native".to_owned()),
        ],
        AddRequest::Bridge(_) => ebpf("bridge --backend ebpf"),
        AddRequest::Router(_) => ebpf("router"),
        AddRequest::Nested(_) => ebpf("nested"),
        AddRequest::NestedHost(_) => vec![(Feature::Clsact, "nested-host".to_owned())],
        AddRequest::Host(_) | AddRequest::Container(_) | AddRequest::Sriov(_) => Vec::new(),
    }
}

pub(crate) async fn plan(
    node: &Node,
    req: &AddRequest,
    ns: &Netns,
    records: &[Attachment],
) -> Result<Attachment> {
    for (feature, what) in required_features(req) {
        feature.require(&what)?;
    }
    match req {
        AddRequest::Macvlan(r) => macvlan::plan(node, r, ns, records).await,
        AddRequest::Ipvlan(r) => ipvlan::plan(node, r, ns, records).await,
        AddRequest::Bridge(r) => bridge::plan(node, r, ns, records).await,
        AddRequest::Router(r) => router::plan(node, r, ns, records).await,
        AddRequest::Nested(r) => nested::plan(node, r, ns, records).await,
        AddRequest::NestedHost(r) => nested::plan_host(node, r, records).await,
        AddRequest::Host(r) => host::plan(node, r, ns, records).await,
        AddRequest::Container(r) => container::plan(node, r, ns, records).await,
        AddRequest::Sriov(r) => sriov::plan(node, r, ns, records).await,
    }
}

pub(crate) async fn create(
    node: &Node,
    rec: &mut Attachment,
    ns: &Netns,
    records: &[Attachment],
) -> Result<()> {
    match rec.kind {
        Kind::Macvlan => macvlan::create(node, rec, ns, records).await,
        Kind::Ipvlan => ipvlan::create(node, rec, ns, records).await,
        Kind::Bridge => bridge::create(node, rec, ns, records).await,
        Kind::Router => router::create(node, rec, ns, records).await,
        Kind::Nested => nested::create(node, rec, ns, records).await,
        Kind::Host => host::create(node, rec, records).await,
        Kind::Container => container::create(node, rec, ns, records).await,
        Kind::Sriov => sriov::create(node, rec, ns).await,
    }
}

/// Checks that what `rec` describes really exists and works as recorded:
/// links, addresses, and for the eBPF backend the map entries and attached
/// programs. The error says what drifted.
pub(crate) async fn check(node: &Node, rec: &Attachment) -> Result<()> {
    // Said first: everything else that drifts then follows from it.
    if parent_gone(node, rec).await? {
        return Err(Error::not_found(format!(
            "{} {} (ifindex {}) is gone",
            if rec.kind == Kind::Router {
                "uplink"
            } else {
                "parent"
            },
            rec.parent,
            rec.parent_ifindex
        )));
    }
    match rec.kind {
        Kind::Macvlan => macvlan::check(node, rec).await,
        Kind::Ipvlan => ipvlan::check(node, rec).await,
        Kind::Bridge => bridge::check(node, rec).await,
        Kind::Router => router::check(node, rec).await,
        Kind::Nested => nested::check(node, rec).await,
        Kind::Host => host::check(node, rec).await,
        Kind::Container => container::check(rec).await,
        Kind::Sriov => sriov::check(node, rec).await,
    }
}

/// Whether the parent device a macvlan or ipvlan endpoint hangs off (the
/// uplink of a router endpoint) was deleted.
pub(crate) async fn parent_gone(node: &Node, rec: &Attachment) -> Result<bool> {
    Ok(
        matches!(rec.kind, Kind::Macvlan | Kind::Ipvlan | Kind::Router)
            && !rec.parent.is_empty()
            && node
                .rtnl
                .link_by_index(rec.parent_ifindex)
                .await?
                .is_none(),
    )
}

/// Where the device an attachment hangs off is now.
pub(crate) enum ParentNow {
    /// As recorded (or the kind has none).
    Same,
    /// Deleted and made again under its name (a NIC reset, a VF made
    /// anew): a new device, with this ifindex.
    Remade(u32),
    /// A macvlan/ipvlan parent, deleted.
    Gone,
    /// The uplink of a router endpoint or an eBPF switch, deleted. Unlike a
    /// macvlan's parent, the endpoint lives on without it: it still reaches
    /// the node and its peers.
    UplinkGone(String),
}

pub(crate) async fn parent_now(node: &Node, rec: &Attachment) -> Result<ParentNow> {
    Ok(match rec.kind {
        Kind::Macvlan | Kind::Ipvlan | Kind::Router => {
            if !parent_gone(node, rec).await? {
                ParentNow::Same
            } else if let Some(link) = node.rtnl.link_by_name(&rec.parent).await? {
                ParentNow::Remade(link.index)
            } else if rec.kind == Kind::Router {
                ParentNow::UplinkGone(rec.parent.clone())
            } else {
                ParentNow::Gone
            }
        }
        // A switch takes its uplink by name again in its repair.
        Kind::Bridge => match &rec.uplink {
            Some(u) if node.rtnl.link_by_name(u).await?.is_none() => {
                ParentNow::UplinkGone(u.clone())
            }
            _ => ParentNow::Same,
        },
        _ => ParentNow::Same,
    })
}

/// Checks the receive-table entry of `rec`'s MAC on its parent (it must be
/// there and be `rec`'s, as `owned` tells) and the endpoint-cache slot of it.
pub(crate) fn check_rx_entry(
    dp: &mut crate::datapath::Datapath,
    rec: &Attachment,
    owned: impl Fn(&attach_common::Endpoint) -> bool,
) -> Result<()> {
    let entry = dp
        .endpoint(rec.parent_ifindex, rec.mac.0)?
        .filter(|e| owned(e))
        .ok_or_else(|| {
            Error::system(format!(
                "{} is missing from the receive table of {}",
                rec.mac, rec.parent
            ))
        })?;
    dp.check_cached(&entry)
}

/// The part of `check` every kind shares: the interface inside the
/// container has its name, MAC, MTU, state and addresses.
pub(crate) async fn check_container_side(rec: &Attachment) -> Result<()> {
    let ns = rec
        .open_netns()
        .map_err(|e| e.context(format!("container namespace of {}", rec.ifname)))?;
    if ns.inode != rec.netns_inode {
        return Err(Error::not_found(format!(
            "network namespace {:?} is not the one attached (it was replaced)",
            rec.netns
        )));
    }
    let c = crate::netlink::Rtnl::in_netns(&ns)?;
    let link = c.link_by_name(&rec.ifname).await?.ok_or_else(|| {
        Error::not_found(format!("{} is missing from {:?}", rec.ifname, rec.netns))
    })?;
    let drift = |what: &str, want: String, got: String| {
        Error::system(format!(
            "{} in {:?}: {what} is {got}, expected {want}",
            rec.ifname, rec.netns
        ))
    };
    if rec.ifindex.is_some_and(|i| i != link.index) {
        return Err(drift(
            "the interface index",
            format!("{:?}", rec.ifindex),
            link.index.to_string(),
        ));
    }
    if link.mac != rec.mac {
        // Only a macvlan endpoint takes a new MAC on (as a kernel macvlan
        // does); the others are made again with the recorded one.
        let dropped = if rec.kind == Kind::Macvlan && rec.spoofchk {
            ": its frames are dropped as spoofed until `attach reconcile` takes the new MAC on"
        } else {
            ""
        };
        return Err(Error::system(format!(
            "{} in {:?}: its MAC was changed to {} (attached with {}){dropped}",
            rec.ifname, rec.netns, link.mac, rec.mac
        )));
    }
    if link.mtu != rec.mtu {
        return Err(drift("the MTU", rec.mtu.to_string(), link.mtu.to_string()));
    }
    if !link.up {
        return Err(drift("the state", "up".into(), "down".into()));
    }
    let have = c.addresses(link.index).await?;
    if let Some(ip) = rec.ips.iter().find(|ip| !have.contains(&ip.addr)) {
        return Err(Error::system(format!(
            "{} in {:?} lost its address {ip}",
            rec.ifname, rec.netns
        )));
    }
    Ok(())
}

/// Puts back what `check` found missing without recreating the interface
/// (map entries, programs); an error means only recreating will do.
pub(crate) async fn repair(node: &Node, rec: &Attachment, others: &[Attachment]) -> Result<()> {
    match rec.kind {
        Kind::Macvlan => macvlan::repair(node, rec, others).await,
        Kind::Ipvlan => ipvlan::repair(node, rec, others).await,
        Kind::Bridge => bridge::repair(node, rec, others).await,
        Kind::Router => router::repair(node, rec, others).await,
        Kind::Nested => nested::repair(node, rec, others).await,
        Kind::Host => host::repair(node, rec).await,
        Kind::Container => container::repair(node, rec).await,
        // Nothing to put back in place: moved back and handed over again.
        Kind::Sriov => Err(Error::system("an sriov attachment is recreated")),
    }
}

/// Whether `reconcile` may tear an attachment down and create it again
/// when `repair` cannot fix it. Not a `container`: its NETNS, made by the
/// engine, goes with the teardown, and with it the way to the namespace.
pub(crate) fn recreatable(rec: &Attachment) -> bool {
    rec.kind != Kind::Container
}

/// Brings the container side of `rec` to this build's settings (what
/// `upgrade` does besides the links); true if it changed anything.
pub(crate) fn upgrade_container(rec: &Attachment) -> Result<bool> {
    match rec.kind {
        Kind::Macvlan => macvlan::upgrade_container_offloads(rec),
        _ => Ok(false),
    }
}

/// The program links an attachment relies on: (program, pin name). What
/// `upgrade` updates, and what `reconcile` keeps when sweeping orphan pins.
pub(crate) fn links(rec: &Attachment) -> Vec<(&'static str, String)> {
    match rec.kind {
        Kind::Macvlan => macvlan::links(rec),
        Kind::Ipvlan => ipvlan::links(rec),
        Kind::Bridge => bridge::links(rec),
        Kind::Router => router::links(rec),
        Kind::Nested => nested::links(rec),
        Kind::Host => host::links(rec),
        Kind::Container | Kind::Sriov => Vec::new(),
    }
}

pub(crate) async fn teardown(
    node: &Node,
    rec: &Attachment,
    remaining: &[Attachment],
) -> Vec<Error> {
    match rec.kind {
        Kind::Macvlan => macvlan::teardown(node, rec, remaining).await,
        Kind::Ipvlan => ipvlan::teardown(node, rec, remaining).await,
        Kind::Bridge => bridge::teardown(node, rec, remaining).await,
        Kind::Router => router::teardown(node, rec, remaining).await,
        Kind::Nested => nested::teardown(node, rec, remaining).await,
        Kind::Host => host::teardown(node, rec).await,
        Kind::Container => container::teardown(node, rec, remaining).await,
        Kind::Sriov => sriov::teardown(node, rec).await,
    }
}

/// The node's forwarding sysctls for the families of `ips`: turned on if
/// off (`who` needs the node to forward, and is named in the warning);
/// returns those it turned on, for the record (they are never turned off
/// again: other things of the node may rely on them by then).
pub(crate) fn enable_forwarding(ips: &[IpNet], who: &str) -> Result<Vec<String>> {
    let mut turned = Vec::new();
    for (v6, key) in [
        (false, "net.ipv4.ip_forward"),
        (true, "net.ipv6.conf.all.forwarding"),
    ] {
        if !ips.iter().any(|n| n.addr.is_ipv6() == v6) {
            continue;
        }
        if sys::sysctl_get(key)? == "0" {
            sys::sysctl_set(key, "1")?;
            tracing::warn!("{key} was off in the node: turned on, {who} need the node to forward");
            turned.push(key.to_owned());
        }
    }
    Ok(turned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn container_addresses_must_be_a_hosts() {
        for bad in [
            "10.67.0.0/24",
            "10.67.0.255/24",
            "10.67.0.4/30",
            "10.67.0.7/30",
            "::ffff:10.67.0.50/120",
            "169.254.3.4/16",
            "fe80::5/64",
        ] {
            let e = check_addressing(&nets(&[bad]), None, None).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::InvalidInput);
            assert!(e.message.contains(bad), "{bad}: {e}");
        }
        for good in [
            "10.67.0.1/24",
            "10.67.0.0/31",
            "10.67.0.1/31",
            "10.67.0.9/32",
            "fd00::/64",
        ] {
            check_addressing(&nets(&[good]), None, None).unwrap();
        }
    }

    #[test]
    fn gateway_on_the_subnet_and_not_our_own() {
        let ips = nets(&["10.67.0.50/24", "fd67::50/64"]);
        for ok in ["10.67.0.1", "fd67::1", "fe80::1"] {
            check_addressing(&ips, Some(ok.parse().unwrap()), None).unwrap();
        }
        for bad in [
            "192.168.9.1",
            "fd68::1",
            "10.67.0.50",
            "fd67::50",
            "127.0.0.1",
        ] {
            let e = check_addressing(&ips, Some(bad.parse().unwrap()), None).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::InvalidInput);
            assert!(e.message.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn mtu_range_names_the_value() {
        let e = check_addressing(&[], None, Some(65536)).unwrap_err();
        assert!(e.message.contains("65536"), "{e}");
        check_addressing(&[], None, Some(65535)).unwrap();
    }
}
