//! The container side of an attachment, common to every backend: naming,
//! addressing and announcing the interface inside the container's namespace.

use crate::{
    addr::Mac,
    announce,
    error::{Context as _, Result},
    model::Attachment,
    netlink::{LinkChange, Rtnl},
    netns::Netns,
};

/// Prefix of every host-side interface the engine creates.
pub const HOST_IF_PREFIX: &str = "atk";

/// The host-side veth of (namespace, ifname): derived, so `del` finds it
/// even without a record.
pub fn host_ifname(netns_inode: u64, ifname: &str) -> String {
    let bytes: Vec<u8> = netns_inode
        .to_le_bytes()
        .iter()
        .chain(ifname.as_bytes())
        .copied()
        .collect();
    format!("{HOST_IF_PREFIX}{:010x}", fnv1a(&bytes) & 0xff_ffff_ffff)
}

/// FNV-1a: stable across releases, unlike std's hasher.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A name for a link being born in a container, before it is renamed:
/// never the final name, so a failed attach cannot clash with it.
pub fn temp_ifname() -> String {
    let r = Mac::random().0;
    format!("attmp{:02x}{:02x}{:02x}{:02x}", r[2], r[3], r[4], r[5])
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_fit_and_differ() {
        let a = host_ifname(4026532000, "eth0");
        let b = host_ifname(4026532000, "eth1");
        let c = host_ifname(4026532001, "eth0");
        assert!(a.len() <= 15 && a.starts_with(HOST_IF_PREFIX));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, host_ifname(4026532000, "eth0"));
    }

    #[test]
    fn temp_names_fit() {
        assert!(temp_ifname().len() <= 15);
    }
}
