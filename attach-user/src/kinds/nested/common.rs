//! What both sides of a nested attachment share: VLAN ids and names, the
//! devices they name, the datapath keys and entries of a record.

use std::net::IpAddr;

use attach_common::{
    EP_F_IPCHK, EP_F_SPOOFCHK, Endpoint, NEST_F_HOST, NEST_F_KEEP_TAG, NestKey, NestedEp,
};

use super::super::parent;
use crate::{
    error::{Error, Result},
    model::{Attachment, Kind, NestedRole},
    naming,
    netlink::Link,
    node::Node,
    packet_socket::Tag,
};

/// Checks a VLAN id a user gave (`what`: the option).
pub fn check_vlan(vid: u16, what: &str) -> Result<()> {
    if !(1..=4094).contains(&vid) {
        return Err(Error::invalid(format!(
            "{what} {vid}: a VLAN ID is 1 to 4094 (0 and 4095 are reserved)"
        )));
    }
    Ok(())
}

pub fn vlan_ifname(qinq: Option<u16>, vlan: u16) -> String {
    match qinq {
        Some(q) => format!("vlan{q}.{vlan}"),
        None => format!("vlan{vlan}"),
    }
}

/// The tags a VM-side endpoint's frames carry on its uplink, outermost
/// first: the S-tag (`--qinq`), then its VLAN.
pub fn tags(qinq: Option<u16>, vlan: u16) -> Vec<Tag> {
    qinq.map(Tag::ad)
        .into_iter()
        .chain([Tag::q(vlan)])
        .collect()
}

pub(super) fn is_vm_side(r: &Attachment) -> bool {
    r.kind == Kind::Nested && r.role == Some(NestedRole::Vm)
}

/// A device of the node the request names (`what`: its option).
pub(super) async fn device(node: &Node, name: &str, what: &str) -> Result<Link> {
    let link = node.rtnl.link_by_name(name).await?.ok_or_else(|| {
        Error::not_found(format!(
            "{what} interface {name:?} not found in the node's network namespace"
        ))
    })?;
    if link.name.starts_with(naming::HOST_IF_PREFIX) {
        return Err(Error::invalid(format!(
            "{} is an endpoint's host-side interface, not a {what}",
            link.name
        )));
    }
    if !link.ether {
        return Err(Error::invalid(format!(
            "{what} {} is not an Ethernet device",
            link.name
        )));
    }
    Ok(link)
}

pub(super) fn key_of(ifindex: u32, qinq: Option<u16>, vlan: u16) -> NestKey {
    NestKey {
        ifindex,
        outer: qinq.unwrap_or(0),
        vid: vlan,
    }
}

pub(super) fn addrs(rec: &Attachment) -> Vec<IpAddr> {
    rec.ips.iter().map(|n| n.addr).collect()
}

/// The in-VM datapath's view of a VM-side record.
pub(super) fn vm_port_of(rec: &Attachment) -> Option<NestedEp> {
    let mut flags = 0;
    if rec.spoofchk {
        flags |= EP_F_SPOOFCHK;
        if !rec.ips.is_empty() {
            flags |= EP_F_IPCHK;
        }
    }
    Some(NestedEp {
        ep: Endpoint {
            host_ifindex: rec.host_ifindex?,
            parent_ifindex: rec.parent_ifindex,
            id: rec.endpoint_id?,
            mac: rec.mac.0,
            mode: 0,
            flags,
        },
        vid: rec.vlan?,
        outer: rec.qinq.unwrap_or(0),
        flags: 0,
        _pad: [0; 3],
    })
}

pub(super) fn host_nested_of(rec: &Attachment) -> Option<NestedEp> {
    Some(NestedEp {
        ep: parent::nested_host_endpoint_of(rec)?,
        vid: rec.vlan?,
        outer: rec.qinq.unwrap_or(0),
        flags: NEST_F_HOST | if rec.keep_tag { NEST_F_KEEP_TAG } else { 0 },
        _pad: [0; 3],
    })
}
