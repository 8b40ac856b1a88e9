//! The attach kinds. Each module provides the same three steps, which the
//! engine drives under its lock:
//! - `plan`: check a request against the system and the node's other
//!   attachments, and return the record to create (nothing changes yet);
//! - `create`: make it, noting in the record what exists so far;
//! - `teardown`: remove whatever of a record exists, continuing past
//!   failures (used by `del`, and to roll back a failed `create`);
//! - `check`, `repair` and `links`, for `check`, `reconcile` and `upgrade`.
//!
//! The kinds act on the node through [`Node`], never on the engine. What
//! several kinds share sits below them, never in a kind nor here:
//! `common` (the record's checks, the container side), `addressing` (what
//! a request's addresses must be) and `parent` (a parent device's checks
//! and its macvlan switch, for macvlan, ipvlan and nested).

mod addressing;
mod bandwidth;
pub mod bridge;
mod common;
pub mod container;
pub mod host;
pub mod ipvlan;
mod ipvlan_native;
mod lease;
pub mod macvlan;
pub mod nested;
mod parent;
mod probe;
pub mod router;
pub mod sriov;

pub use lease::{GiveBack, acquire_lease, give_back_lease_on_wire};
pub use probe::probe_addresses;

use crate::{
    error::{Error, Result},
    model::{Attachment, Backend, Kind, NO_IFNAME},
    netns::Netns,
    node::Node,
};

/// What `attach add <kind>` asks for (as JSON: the kind's options, named as
/// the CLI's, beside `"kind"`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
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

    /// Whether the request asks for DHCP (`--dhcp`), and then the MTU it
    /// gives (the lease's does not override it).
    pub fn dhcp(&self) -> Option<Option<u32>> {
        match self {
            AddRequest::Macvlan(r) => r.dhcp.then_some(r.mtu),
            AddRequest::Ipvlan(r) => r.dhcp.then_some(r.mtu),
            AddRequest::Bridge(r) => r.dhcp.then_some(r.mtu),
            AddRequest::Sriov(r) => r.dhcp.then_some(r.mtu),
            AddRequest::Nested(r) => r.dhcp.then_some(r.mtu),
            _ => None,
        }
    }

    /// The rate limits the request asks for (checked, bursts given).
    pub fn bandwidth(&self) -> Result<Option<crate::bandwidth::Bandwidth>> {
        use crate::bandwidth::Bandwidth;
        macro_rules! of {
            ($r:expr) => {
                Bandwidth::of(
                    $r.ingress_rate,
                    $r.ingress_burst,
                    $r.egress_rate,
                    $r.egress_burst,
                )
            };
        }
        match self {
            AddRequest::Macvlan(r) => of!(r),
            AddRequest::Ipvlan(r) => of!(r),
            AddRequest::Bridge(r) => of!(r),
            AddRequest::Router(r) => of!(r),
            AddRequest::Nested(r) => of!(r),
            _ => Ok(None),
        }
    }

    /// Whether our programs carry the endpoint's frames (what enforces
    /// rate limits).
    fn on_our_datapath(&self) -> bool {
        use crate::model::Datapath;
        match self {
            AddRequest::Macvlan(r) => r.backend == Backend::Ebpf,
            AddRequest::Ipvlan(r) => r.backend == Backend::Ebpf,
            AddRequest::Bridge(r) => r.backend == Backend::Ebpf,
            AddRequest::Router(r) => r.datapath == Datapath::Ebpf,
            AddRequest::Nested(_) => true,
            _ => false,
        }
    }

    /// Checks what can be checked without looking at the system.
    pub fn validate(&self) -> Result<()> {
        if self.bandwidth()?.is_some() && !self.on_our_datapath() {
            return Err(Error::invalid(format!(
                "--ingress-rate/--egress-rate: rate limits are enforced by the eBPF datapath, \
                 which `{}` does not use",
                way_of(self)
            )));
        }
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

// The engine reaches the kinds through this file alone: these, and the
// lifecycle functions below.
pub(crate) use common::free_endpoint_id;
pub(crate) use macvlan::{adopt_mac, drifted_parents, resync_parents};

use common::parent_gone;

/// Whether `r` is the host side of a nested attachment (known by its tap,
/// S-tag and VLAN rather than a namespace).
/// Writes every flood row whole from `records` (made by a build with
/// another flood table), macvlan parents' and ipvlan ports'.
pub(crate) fn rewrite_flood_rows(
    dp: &mut crate::datapath::Datapath,
    records: &[Attachment],
) -> Result<()> {
    parent::rewrite_rows(dp, records)?;
    ipvlan::rewrite_rows(dp, records)
}

pub(crate) fn is_nested_host_side(r: &Attachment) -> bool {
    parent::is_nested_host(r)
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

/// Which of our ways (`attach features`) `req` asks for.
fn way_of(req: &AddRequest) -> &'static str {
    use crate::model::Datapath;
    match req {
        AddRequest::Macvlan(r) if r.backend == Backend::Native => "macvlan --backend native",
        AddRequest::Macvlan(r) if r.datapath == Some(Datapath::Xdp) => {
            "macvlan --backend ebpf --datapath xdp"
        }
        AddRequest::Macvlan(_) => "macvlan --backend ebpf --datapath tc",
        AddRequest::Ipvlan(r) if r.backend == Backend::Native => "ipvlan --backend native",
        AddRequest::Ipvlan(_) => "ipvlan --backend ebpf",
        AddRequest::Bridge(r) if r.backend == Backend::Native => "bridge --backend native",
        AddRequest::Bridge(_) => "bridge --backend ebpf",
        AddRequest::Router(r) if r.datapath == Datapath::Kernel => "router --datapath kernel",
        AddRequest::Router(_) => "router --datapath ebpf",
        AddRequest::Nested(_) => "nested",
        AddRequest::NestedHost(_) => "nested-host",
        AddRequest::Host(_) => "host",
        AddRequest::Container(_) => "container",
        AddRequest::Sriov(_) => "sriov",
    }
}

pub(crate) async fn plan(
    node: &Node,
    req: &AddRequest,
    ns: &Netns,
    records: &[Attachment],
) -> Result<Attachment> {
    // Before anything is made: a way whose kernel features are missing.
    let way = crate::capabilities::way(way_of(req));
    for feature in way.needs {
        feature.require(way.name)?;
    }
    let mut rec = match req {
        AddRequest::Macvlan(r) => macvlan::plan(node, r, ns, records).await,
        AddRequest::Ipvlan(r) => ipvlan::plan(node, r, ns, records).await,
        AddRequest::Bridge(r) => bridge::plan(node, r, ns, records).await,
        AddRequest::Router(r) => router::plan(node, r, ns, records).await,
        AddRequest::Nested(r) => nested::plan(node, r, ns, records).await,
        AddRequest::NestedHost(r) => nested::plan_host(node, r, records).await,
        AddRequest::Host(r) => host::plan(node, r, ns, records).await,
        AddRequest::Container(r) => container::plan(node, r, ns, records).await,
        AddRequest::Sriov(r) => sriov::plan(node, r, ns, records).await,
    }?;
    rec.bandwidth = req.bandwidth()?;
    Ok(rec)
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
    }?;
    bandwidth::put(node, rec)
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
    }?;
    bandwidth::check(node, rec)
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
    }?;
    bandwidth::put(node, rec)
}

/// Brings the host sides of the endpoints that follow parent `ifindex`
/// (see [`crate::endpoint::follows_parent`]) to the parent's state; how
/// many there were.
pub(crate) async fn follow_parent(
    node: &Node,
    ifindex: u32,
    records: &[Attachment],
) -> Result<usize> {
    let mut n = 0;
    for rec in records
        .iter()
        .filter(|r| r.parent_ifindex == ifindex && crate::endpoint::follows_parent(r))
    {
        if rec.kind == Kind::Ipvlan {
            // Its routes and its "down" flag go with the host side.
            let others: Vec<Attachment> = records.iter().filter(|r| *r != rec).cloned().collect();
            ipvlan::repair(node, rec, &others).await?;
        } else {
            crate::endpoint::host_up(node, rec).await?;
        }
        n += 1;
    }
    Ok(n)
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
    // First, while the node's maps are pinned (the last endpoint's
    // teardown removes them): the id goes to another endpoint later.
    let mut errors: Vec<Error> = bandwidth::clear(node, rec).err().into_iter().collect();
    errors.extend(match rec.kind {
        Kind::Macvlan => macvlan::teardown(node, rec, remaining).await,
        Kind::Ipvlan => ipvlan::teardown(node, rec, remaining).await,
        Kind::Bridge => bridge::teardown(node, rec, remaining).await,
        Kind::Router => router::teardown(node, rec, remaining).await,
        Kind::Nested => nested::teardown(node, rec, remaining).await,
        Kind::Host => host::teardown(node, rec).await,
        Kind::Container => container::teardown(node, rec, remaining).await,
        Kind::Sriov => sriov::teardown(node, rec).await,
    });
    errors
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::capabilities::{WAYS, way};

    /// Every request names a way of the table `attach features` lists, and
    /// every way of it is one a request can ask for: one table for both.
    #[test]
    fn every_request_is_one_listed_way_and_back() {
        let requests = [
            json!({"kind": "macvlan", "netns": "c", "parent": "p"}),
            json!({"kind": "macvlan", "netns": "c", "parent": "p", "datapath": "xdp"}),
            json!({"kind": "macvlan", "netns": "c", "parent": "p", "backend": "native"}),
            json!({"kind": "ipvlan", "netns": "c", "parent": "p"}),
            json!({"kind": "ipvlan", "netns": "c", "parent": "p", "backend": "native"}),
            json!({"kind": "bridge", "netns": "c", "bridge": "b"}),
            json!({"kind": "bridge", "netns": "c", "bridge": "b", "backend": "native"}),
            json!({"kind": "router", "netns": "c"}),
            json!({"kind": "router", "netns": "c", "datapath": "kernel"}),
            json!({"kind": "nested", "netns": "c", "uplink": "u", "vlan": 5}),
            json!({"kind": "nested-host", "tap": "t", "vlan": 5, "parent": "p",
                   "mac": "02:00:00:00:00:01"}),
            json!({"kind": "host", "netns": "1"}),
            json!({"kind": "container", "netns": "c", "join": "d"}),
            json!({"kind": "sriov", "netns": "c", "device": "d"}),
        ];
        let mut asked: Vec<&str> = requests
            .into_iter()
            .map(|r| {
                let req: AddRequest = serde_json::from_value(r.clone()).expect("a request");
                way(way_of(&req)).name
            })
            .collect();
        asked.sort_unstable();
        let mut listed: Vec<&str> = WAYS.iter().map(|w| w.name).collect();
        listed.sort_unstable();
        assert_eq!(asked, listed);
    }
}
