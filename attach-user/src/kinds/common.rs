//! What every kind does alike: the record it starts from, the checks of a
//! container's interface name and of addresses in use, the endpoint id it
//! takes, the container side `check` looks at, the node's forwarding.

use crate::{
    addr::IpNet,
    error::{Context as _, Error, Result},
    model::{Attachment, Kind},
    netlink::Rtnl,
    netns::Netns,
    node::Node,
    sys,
};

/// Refuses an interface name the container already has.
pub(crate) async fn check_ifname_free(ns: &Netns, netns: &str, ifname: &str) -> Result<()> {
    let c = Rtnl::in_netns(ns)?;
    if c.link_by_name(ifname).await?.is_some() {
        return Err(Error::conflict(format!(
            "interface {ifname} already exists in network namespace {netns:?}"
        )));
    }
    Ok(())
}

/// The lowest endpoint id (index of its counters) no attachment of the
/// node has, whatever its kind: one pass over the records (a pass per
/// candidate id cost a millisecond per add with a thousand endpoints).
pub(crate) fn free_endpoint_id(records: &[Attachment]) -> Result<u32> {
    use attach_common::MAX_ENDPOINTS;
    let mut used = vec![false; MAX_ENDPOINTS as usize];
    for id in records.iter().filter_map(|r| r.endpoint_id) {
        if let Some(u) = used.get_mut(id as usize) {
            *u = true;
        }
    }
    used.iter()
        .position(|u| !u)
        .map(|id| id as u32)
        .ok_or_else(|| {
            Error::conflict(format!(
                "the node already has {MAX_ENDPOINTS} eBPF endpoints"
            ))
        })
}

/// Refuses addresses already used on `parent`: by the node itself, or by
/// another attachment of it.
pub(crate) async fn check_addresses_free(
    node: &Node,
    parent: &crate::netlink::Link,
    ips: &[crate::addr::IpNet],
    on_parent: &[&Attachment],
) -> Result<()> {
    let own = node.rtnl.addresses(parent.index).await?;
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

/// Checks the receive-table entry of `rec`'s MAC on its parent (it must be
/// there and be `rec`'s, as `owned` tells) and the endpoint-cache slot of it.
pub(crate) fn check_rx_entry(
    dp: &mut crate::datapath::Datapath,
    rec: &Attachment,
    owned: impl Fn(&attach_common::Endpoint) -> bool,
) -> Result<()> {
    let entry = dp
        .endpoint(rec.parent_ifindex, rec.mac.0)?
        .filter(|e| owned(e))
        .ok_or_else(|| {
            Error::system(format!(
                "{} is missing from the receive table of {}",
                rec.mac, rec.parent
            ))
        })?;
    dp.check_cached(&entry)
}

/// The part of `check` every kind shares: the interface inside the
/// container has its name, MAC, MTU, state and addresses.
pub(crate) async fn check_container_side(rec: &Attachment) -> Result<()> {
    let ns = rec
        .open_netns()
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
        // Only a macvlan endpoint takes a new MAC on (as a kernel macvlan
        // does); the others are made again with the recorded one.
        let dropped = if rec.kind == Kind::Macvlan && rec.spoofchk {
            ": its frames are dropped as spoofed until `attach reconcile` takes the new MAC on"
        } else {
            ""
        };
        return Err(Error::system(format!(
            "{} in {:?}: its MAC was changed to {} (attached with {}){dropped}",
            rec.ifname, rec.netns, link.mac, rec.mac
        )));
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

/// The node's forwarding sysctls for the families of `ips`: turned on if
/// off (`who` needs the node to forward, and is named in the warning);
/// returns those it turned on, for the record (they are never turned off
/// again: other things of the node may rely on them by then).
pub(crate) fn enable_forwarding(ips: &[IpNet], who: &str) -> Result<Vec<String>> {
    let mut turned = Vec::new();
    for (v6, key) in [
        (false, "net.ipv4.ip_forward"),
        (true, "net.ipv6.conf.all.forwarding"),
    ] {
        if !ips.iter().any(|n| n.addr.is_ipv6() == v6) {
            continue;
        }
        if sys::sysctl_get(key)? == "0" {
            sys::sysctl_set(key, "1")?;
            tracing::warn!("{key} was off in the node: turned on, {who} need the node to forward");
            turned.push(key.to_owned());
        }
    }
    Ok(turned)
}

/// Whether the parent device a macvlan or ipvlan endpoint hangs off (the
/// uplink of a router endpoint) was deleted.
pub(crate) async fn parent_gone(node: &Node, rec: &Attachment) -> Result<bool> {
    Ok(
        matches!(rec.kind, Kind::Macvlan | Kind::Ipvlan | Kind::Router)
            && !rec.parent.is_empty()
            && node.rtnl.link_by_index(rec.parent_ifindex).await?.is_none(),
    )
}

/// Deletes a kernel driver's device of `rec` in its namespace (gone with
/// the namespace otherwise). Shared with the kernel ipvlan.
pub(super) async fn del_in_netns(rec: &Attachment, index: u32) -> Result<()> {
    let Ok(ns) = rec.open_netns() else {
        return Ok(()); // The namespace is gone, and its links with it.
    };
    if ns.inode != rec.netns_inode {
        return Ok(());
    }
    let c = Rtnl::in_netns(&ns)?;
    c.del_link(index)
        .await
        .with_context(|| format!("deleting {} in {:?}", rec.ifname, rec.netns))
}
