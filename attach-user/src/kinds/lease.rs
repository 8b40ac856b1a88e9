//! Before an endpoint facing the wire is made: its IPv4 lease from a DHCP
//! server on that wire (see [`crate::dhcp`]), taken from the node on the
//! wire [`super::probe`] probes (nested: the VM's uplink, in frames tagged
//! as the container's will be), as the endpoint's MAC (ipvlan: the
//! parent's, told apart by the client identifier). The lease then stands
//! in the record as if its address, gateway and MTU had been given.

use std::net::IpAddr;

use super::{
    AddRequest,
    probe::{Wire, wire_device, wire_name},
};
use crate::{
    addr::{IpNet, Mac},
    dhcp,
    error::{Error, Result},
    model::{Attachment, Kind},
    node::Node,
};

/// Gives back the lease of `rec` (an `add` that failed after taking it)
/// from the node, on the wire device it was taken on; errors are logged.
pub async fn release_lease_on_wire(node: &Node, req: &AddRequest, rec: &Attachment) {
    let (Some(lease), Some(Wire { device, tags })) = (rec.dhcp.clone(), wire_device(req, rec))
    else {
        return;
    };
    let released = match node.rtnl.link_by_name(&device).await {
        Ok(Some(link)) => tokio::task::spawn_blocking(move || {
            dhcp::client::release_on_wire(link.index, &tags, &wire_name(&device, &tags), &lease)
        })
        .await
        .unwrap_or_else(|e| Err(Error::system(e.to_string()))),
        Ok(None) => Err(Error::not_found(format!("device {device} is gone"))),
        Err(e) => Err(e),
    };
    if let Err(e) = released {
        tracing::warn!("the lease taken for a failed add is not released: {e}");
    }
}

/// Acquires the lease `req` asks for (if it does) into `rec`, identified
/// by `client_id`.
pub async fn acquire_lease(
    node: &Node,
    req: &AddRequest,
    rec: &mut Attachment,
    client_id: Vec<u8>,
) -> Result<()> {
    let Some(mtu_given) = req.dhcp() else {
        return Ok(());
    };
    let Wire { device, tags } = wire_device(req, rec).ok_or_else(|| {
        Error::invalid(match req {
            AddRequest::Bridge(_) => {
                "--dhcp needs a wire: the switch has no uplink (give it one with --uplink)"
            }
            _ => "--dhcp is not supported by this kind",
        })
    })?;
    let link = node
        .rtnl
        .link_by_name(&device)
        .await?
        .ok_or_else(|| Error::not_found(format!("device {device} not found (for --dhcp)")))?;
    // ipvlan endpoints speak with the parent's MAC.
    let chaddr: Mac = if rec.kind == Kind::Ipvlan {
        link.mac
    } else {
        rec.mac
    };
    let index = link.index;
    let on = wire_name(&device, &tags);
    let named = on.clone();
    let lease = tokio::task::spawn_blocking(move || {
        dhcp::client::acquire(index, &tags, &named, chaddr, &client_id)
    })
    .await
    .map_err(|e| Error::system(format!("DHCP on {on}: {e}")))??;
    let net = IpNet {
        addr: IpAddr::V4(lease.address),
        prefix: lease.prefix,
    };
    super::addressing::check_host_address(&net)
        .map_err(|e| e.context(format!("the lease from {}", lease.server)))?;
    rec.ips = vec![net];
    // A router off the leased subnet could not be reached: left out.
    rec.gateway = lease
        .router
        .filter(|r| {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(lease.prefix))
                .unwrap_or(0);
            u32::from(*r) & mask == u32::from(lease.address) & mask && *r != lease.address
        })
        .map(IpAddr::V4);
    // The server's MTU when the request gave none, within what the wire
    // device takes (the planned MTU is its own).
    if mtu_given.is_none()
        && let Some(m) = lease.mtu.map(u32::from)
        && (68..=rec.mtu).contains(&m)
    {
        rec.mtu = m;
    }
    rec.dhcp = Some(lease);
    Ok(())
}
