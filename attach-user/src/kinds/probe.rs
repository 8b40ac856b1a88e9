//! Before an endpoint facing the wire takes its addresses: does another
//! host on that wire already answer for one? (An ARP probe and a DAD
//! solicitation from the endpoint's MAC, see [`crate::conflict`].)
//!
//! The wire is the parent (macvlan, ipvlan), the Linux bridge or the eBPF
//! switch's uplink (bridge), the device itself (sriov, by --device), or
//! the container's VLAN of the VM's uplink (nested, in the VM: the frames
//! carry its tags, as its datapath will push them). Not probed: the host
//! side of a nested endpoint (it has no address of its own to take), a
//! switch without an uplink, and `--no-probe`.

use std::net::IpAddr;

use super::AddRequest;
use crate::{
    addr::Mac,
    conflict,
    error::{Error, Result},
    model::{Attachment, Backend, Kind},
    node::Node,
    packet_socket::Tag,
};

/// Refuses `rec`'s addresses when another host on its wire answers for one.
pub async fn probe_addresses(node: &Node, req: &AddRequest, rec: &Attachment) -> Result<()> {
    let Some(Wire { device, tags }) = wire(req, rec) else {
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
    let on = wire_name(&device, &tags);
    let found = tokio::task::spawn_blocking(move || {
        conflict::probe(index, &tags, mac, &addrs, conflict::WINDOW)
    })
    .await
    .map_err(|e| Error::system(format!("probing the addresses on {on}: {e}")))?
    .map_err(|e| Error::system(format!("probing the addresses on {on}: {e}")))?;
    let Some(c) = found else {
        return Ok(());
    };
    let what = match &rec.dhcp {
        // The engine declines it (DHCPDECLINE), which tells the server.
        Some(l) => format!(
            "(the lease from {} is declined, DHCPDECLINE: attach again for another address)",
            l.server
        ),
        None => "(give another address, or --no-probe to attach without this check)".to_owned(),
    };
    Err(Error::conflict(format!(
        "address {} is in use on the wire: {} answered for it on {on} {what}",
        c.addr, c.mac
    )))
}

/// Where an endpoint meets its wire, as seen from the node: a device, and
/// the VLAN tags its frames carry there (outermost first; none: untagged).
pub(super) struct Wire {
    pub device: String,
    pub tags: Vec<Tag>,
}

/// How errors name a wire: the device, and its VLAN if tagged.
pub(super) fn wire_name(device: &str, tags: &[Tag]) -> String {
    match tags {
        [] => device.to_owned(),
        [q] => format!("{device} VLAN {}", q.vid),
        [s, q, ..] => format!("{device} VLAN {} in S-tag {}", q.vid, s.vid),
    }
}

/// The wire the endpoint will be on, when it is probed.
fn wire(req: &AddRequest, rec: &Attachment) -> Option<Wire> {
    let skip = match req {
        AddRequest::Macvlan(r) => r.no_probe,
        AddRequest::Ipvlan(r) => r.no_probe,
        AddRequest::Bridge(r) => r.no_probe,
        AddRequest::Sriov(r) => r.no_probe,
        AddRequest::Nested(r) => r.no_probe,
        _ => true,
    };
    if skip { None } else { wire_device(req, rec) }
}

/// The wire the endpoint will be on, from the node: the parent (macvlan,
/// ipvlan), the Linux bridge or the eBPF switch's uplink (bridge), the
/// device itself (sriov), the VM's uplink with the container's tags
/// (nested, in the VM); `None` for other kinds and a switch without an
/// uplink. DHCP speaks on it too.
pub(super) fn wire_device(req: &AddRequest, rec: &Attachment) -> Option<Wire> {
    let device = match req {
        AddRequest::Macvlan(r) => r.parent.clone(),
        AddRequest::Ipvlan(r) => r.parent.clone(),
        AddRequest::Bridge(r) => match r.backend {
            Backend::Native => r.bridge.clone(),
            Backend::Ebpf => r.uplink.clone().or_else(|| rec.uplink.clone())?,
        },
        AddRequest::Sriov(r) => r.device.clone()?,
        AddRequest::Nested(r) => {
            return Some(Wire {
                device: r.uplink.clone(),
                tags: super::nested::tags(r.qinq, r.vlan),
            });
        }
        _ => return None,
    };
    Some(Wire {
        device,
        tags: Vec::new(),
    })
}
