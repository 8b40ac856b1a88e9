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

/// How an `add` that failed after taking a lease gives it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveBack {
    /// DHCPRELEASE: the address may be offered again.
    Release,
    /// DHCPDECLINE (RFC 2131 3.1.5): another host on the wire answers for
    /// the address; the server marks it as not to be offered.
    Decline,
}

/// Gives back the lease of `rec` (an `add` that failed after taking it)
/// from the node, on the wire it was taken on; errors are logged.
pub async fn give_back_lease_on_wire(
    node: &Node,
    req: &AddRequest,
    rec: &Attachment,
    how: GiveBack,
) {
    let (Some(lease), Some(Wire { device, tags })) = (rec.dhcp.clone(), wire_device(req, rec))
    else {
        return;
    };
    let done = match node.rtnl.link_by_name(&device).await {
        Ok(Some(link)) => tokio::task::spawn_blocking(move || {
            let on = wire_name(&device, &tags);
            match how {
                GiveBack::Release => dhcp::client::release_on_wire(link.index, &tags, &on, &lease),
                GiveBack::Decline => dhcp::client::decline_on_wire(link.index, &tags, &on, &lease),
            }
        })
        .await
        .unwrap_or_else(|e| Err(Error::system(e.to_string()))),
        Ok(None) => Err(Error::not_found(format!("device {device} is gone"))),
        Err(e) => Err(e),
    };
    if let Err(e) = done {
        tracing::warn!("the lease taken for a failed add is not given back: {e}");
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
