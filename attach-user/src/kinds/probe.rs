//! Before an endpoint facing the wire takes its addresses: does another
//! host on that wire already answer for one? (An ARP probe and a DAD
//! solicitation from the endpoint's MAC, see [`crate::conflict`].)
//!
//! The wire is the parent (macvlan, ipvlan), the Linux bridge or the eBPF
//! switch's uplink (bridge), or the device itself (sriov, by --device).
//! Not probed: nested (its wire is a VLAN of the VM's uplink; the host
//! side's switch sees the addresses), a switch without an uplink, and
//! `--no-probe`.

use std::net::IpAddr;

use super::AddRequest;
use crate::{
    addr::Mac,
    conflict,
    error::{Error, Result},
    model::{Attachment, Backend, Kind},
    node::Node,
};

/// Refuses `rec`'s addresses when another host on its wire answers for one.
pub async fn probe_addresses(node: &Node, req: &AddRequest, rec: &Attachment) -> Result<()> {
    let Some(device) = wire(req, rec) else {
        return Ok(());
    };
    let addrs: Vec<IpAddr> = rec.ips.iter().map(|n| n.addr).collect();
    if addrs.is_empty() {
        return Ok(());
    }
    // Missing or down: nothing can answer there (yet).
    let Some(link) = node.rtnl.link_by_name(&device).await? else {
        return Ok(());
    };
    if !link.up {
        return Ok(());
    }
    // ipvlan endpoints speak with the parent's MAC.
    let mac: Mac = if rec.kind == Kind::Ipvlan {
        link.mac
    } else {
        rec.mac
    };
    let index = link.index;
    let found =
        tokio::task::spawn_blocking(move || conflict::probe(index, mac, &addrs, conflict::WINDOW))
            .await
            .map_err(|e| Error::system(format!("probing the addresses on {device}: {e}")))?
            .map_err(|e| Error::system(format!("probing the addresses on {device}: {e}")))?;
    match found {
        None => Ok(()),
        Some(c) => Err(Error::conflict(format!(
            "address {} is in use on the wire: {} answered for it on {device} \
             (give another address, or --no-probe to attach without this check)",
            c.addr, c.mac
        ))),
    }
}

/// The device whose wire the endpoint will be on, when it is probed.
fn wire(req: &AddRequest, rec: &Attachment) -> Option<String> {
    match req {
        AddRequest::Macvlan(r) if !r.no_probe => Some(r.parent.clone()),
        AddRequest::Ipvlan(r) if !r.no_probe => Some(r.parent.clone()),
        AddRequest::Bridge(r) if !r.no_probe => match r.backend {
            Backend::Native => Some(r.bridge.clone()),
            Backend::Ebpf => r.uplink.clone().or_else(|| rec.uplink.clone()),
        },
        AddRequest::Sriov(r) if !r.no_probe => r.device.clone(),
        _ => None,
    }
}
