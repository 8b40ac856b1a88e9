//! Inside the container, common to every kind that gives it an interface:
//! naming, addressing and announcing the interface in the container's
//! namespace.

use crate::{
    announce,
    error::{Context as _, Result},
    model::Attachment,
    netlink::{LinkChange, Rtnl},
    netns::Netns,
};

/// Renames the new link, then [`address_and_up`].
pub async fn configure(c: &Rtnl, index: u32, rec: &Attachment) -> Result<()> {
    c.set_link(
        index,
        &LinkChange {
            name: Some(rec.ifname.clone()),
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("renaming the new interface to {}", rec.ifname))?;
    address_and_up(c, index, rec).await
}

/// Gives a link born under its final name its addresses, brings it up and
/// adds the default route.
pub async fn address_and_up(c: &Rtnl, index: u32, rec: &Attachment) -> Result<()> {
    for ip in &rec.ips {
        c.add_addr(index, ip)
            .await
            .with_context(|| format!("adding address {ip} to {}", rec.ifname))?;
    }
    c.set_link(
        index,
        &LinkChange {
            up: Some(true),
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("bringing {} up", rec.ifname))?;
    if let Some(gw) = rec.gateway {
        c.add_default_route(index, gw)
            .await
            .with_context(|| format!("adding the default route via {gw}"))?;
    }
    Ok(())
}

/// Gratuitous ARP / unsolicited NA for every address (sent by the kernel:
/// see [`announce`]). Best effort: a lost announcement only delays
/// neighbours, it does not break the attachment.
pub fn announce(ns: &Netns, rec: &Attachment) {
    let v4 = rec.ips.iter().any(|n| n.addr.is_ipv4());
    let v6 = rec.ips.iter().any(|n| n.addr.is_ipv6());
    if !(v4 || v6) {
        return;
    }
    let ifname = rec.ifname.clone();
    let sent = ns
        .run(move || announce::announce(&ifname, v4, v6))
        .and_then(|r| r.map_err(crate::error::Error::from));
    if let Err(e) = sent {
        tracing::warn!("announcing the addresses of {} failed: {e}", rec.ifname);
    }
}
