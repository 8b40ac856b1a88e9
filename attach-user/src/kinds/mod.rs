//! The attach kinds. Each module provides the same three steps, which the
//! engine drives under its lock:
//! - `plan`: check a request against the system and the node's other
//!   attachments, and return the record to create (nothing changes yet);
//! - `create`: make it, noting in the record what exists so far;
//! - `teardown`: remove whatever of a record exists, continuing past
//!   failures (used by `del`, and to roll back a failed `create`).

pub mod macvlan;

use crate::{
    engine::Engine,
    error::{Error, Result},
    model::{Attachment, Kind},
    netns::Netns,
};

/// What `attach add <kind>` asks for.
#[derive(Clone, Debug)]
pub enum AddRequest {
    Macvlan(macvlan::MacvlanRequest),
}

impl AddRequest {
    /// The container namespace and interface name the request is for.
    pub fn target(&self) -> (&str, &str) {
        match self {
            AddRequest::Macvlan(r) => (&r.netns, &r.ifname),
        }
    }

    /// Checks what can be checked without looking at the system.
    pub fn validate(&self) -> Result<()> {
        match self {
            AddRequest::Macvlan(r) => r.validate(),
        }
    }
}

/// Refuses addresses already used on `parent`: by the node itself, or by
/// another attachment of it.
pub(crate) async fn check_addresses_free(
    engine: &Engine,
    parent: &crate::netlink::Link,
    ips: &[crate::addr::IpNet],
    on_parent: &[&Attachment],
) -> Result<()> {
    let own = engine.rtnl.addresses(parent.index).await?;
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

pub(crate) async fn plan(
    engine: &Engine,
    req: &AddRequest,
    ns: &Netns,
    records: &[Attachment],
) -> Result<Attachment> {
    match req {
        AddRequest::Macvlan(r) => macvlan::plan(engine, r, ns, records).await,
    }
}

pub(crate) async fn create(
    engine: &Engine,
    rec: &mut Attachment,
    ns: &Netns,
    records: &[Attachment],
) -> Result<()> {
    match rec.kind {
        Kind::Macvlan => macvlan::create(engine, rec, ns, records).await,
        other => Err(Error::system(format!(
            "{} attachments are not built yet",
            other.name()
        ))),
    }
}

/// Checks that what `rec` describes really exists and works as recorded:
/// links, addresses, and for the eBPF backend the map entries and attached
/// programs. The error says what drifted.
pub(crate) async fn check(engine: &Engine, rec: &Attachment) -> Result<()> {
    match rec.kind {
        Kind::Macvlan => macvlan::check(engine, rec).await,
        other => Err(Error::system(format!(
            "{} attachments are not built yet",
            other.name()
        ))),
    }
}

/// The part of `check` every kind shares: the interface inside the
/// container has its name, MAC, MTU, state and addresses.
pub(crate) async fn check_container_side(rec: &Attachment) -> Result<()> {
    let ns = Netns::open(&rec.netns_path.to_string_lossy())
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
        return Err(drift("the MAC", rec.mac.to_string(), link.mac.to_string()));
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
pub(crate) async fn repair(engine: &Engine, rec: &Attachment, others: &[Attachment]) -> Result<()> {
    match rec.kind {
        Kind::Macvlan => macvlan::repair(engine, rec, others).await,
        other => Err(Error::system(format!(
            "{} attachments are not built yet",
            other.name()
        ))),
    }
}

pub(crate) async fn teardown(
    engine: &Engine,
    rec: &Attachment,
    remaining: &[Attachment],
) -> Vec<Error> {
    match rec.kind {
        Kind::Macvlan => macvlan::teardown(engine, rec, remaining).await,
        other => vec![Error::system(format!(
            "{} attachments are not built yet",
            other.name()
        ))],
    }
}
