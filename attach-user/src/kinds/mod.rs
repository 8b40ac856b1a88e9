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
