//! The veth endpoint shared by the kinds our datapath switches (macvlan and
//! ipvlan in eBPF, bridge, router): a veth pair with the container end
//! configured inside the container's namespace and the host end beside the
//! parent, carrying only what the datapath sends it.

use crate::{
    error::{Context as _, Error, Result},
    inside,
    model::{Attachment, Kind},
    naming,
    netlink::{Link, LinkChange, Rtnl},
    netns::Netns,
    node::Node,
    sys,
};

/// Creates the pair and configures the container side (name, MAC, MTU,
/// addresses, routes). Fills `host_ifname`, `host_ifindex` and `ifindex` as
/// each comes to exist, so a failure can be torn down.
pub async fn create_veth(node: &Node, rec: &mut Attachment, ns: &Netns) -> Result<Rtnl> {
    let host = naming::host_ifname(rec.netns_inode, &rec.ifname);
    if node.rtnl.link_by_name(&host).await?.is_some() {
        return Err(Error::conflict(format!(
            "host-side interface {host} already exists (left by a crashed attach? `attach reset` clears leftovers)"
        )));
    }
    // The container side is born in the container under its final name
    // (the plan checked it is free there): no rename. (Not up yet: a veth
    // cannot open before its pair is complete, ENOTCONN.)
    node.rtnl
        .add_veth(&host, &rec.ifname, ns, rec.mac, rec.mtu)
        .await
        .context("creating the veth pair")?;
    rec.host_ifname = Some(host.clone());
    let host_link = node
        .rtnl
        .link_by_name(&host)
        .await?
        .ok_or_else(|| Error::system(format!("the new veth {host} vanished")))?;
    rec.host_ifindex = Some(host_link.index);

    let c = Rtnl::in_netns(ns)?;
    let link = c
        .link_by_name(&rec.ifname)
        .await?
        .ok_or_else(|| Error::system(format!("the new veth peer {} vanished", rec.ifname)))?;
    rec.ifindex = Some(link.index);
    inside::address_and_up(&c, link.index, rec).await?;

    // The host side is a wire into the datapath, not an interface of the
    // node's: no IPv6 link-local address, no neighbour discovery.
    sys::sysctl_set(&format!("net.ipv6.conf.{host}.disable_ipv6"), "1")?;
    Ok(c)
}

/// Whether `rec`'s host side follows its parent's state: the kernel's
/// macvlan and ipvlan pass their lower device's operational state on to
/// their devices (`netif_stacked_transfer_operstate`), so a container sees
/// NO-CARRIER while the parent is down or has no carrier; ours do the same
/// by taking the host side down (a veth's carrier is its peer's state).
pub fn follows_parent(rec: &Attachment) -> bool {
    rec.is_ebpf() && matches!(rec.kind, Kind::Macvlan | Kind::Ipvlan)
}

/// The state `rec`'s host side should have now: up, but down while a
/// parent it follows is down or has no carrier (a parent gone: up, the
/// reconcile deals with that).
pub async fn host_side_wanted_up(node: &Node, rec: &Attachment) -> Result<bool> {
    if !follows_parent(rec) {
        return Ok(true);
    }
    Ok(node
        .rtnl
        .link_by_index(rec.parent_ifindex)
        .await?
        .is_none_or(|p| p.up && p.carrier))
}

/// Brings the host side up (down instead while a parent it follows has no
/// carrier: [`follows_parent`]): the last step, once the datapath is ready.
/// The container can send when this returns (see [`settle_container_side`]).
pub async fn host_up(node: &Node, rec: &Attachment) -> Result<()> {
    let (Some(index), Some(name)) = (rec.host_ifindex, &rec.host_ifname) else {
        return Err(Error::system("no host-side interface to bring up"));
    };
    let up = host_side_wanted_up(node, rec).await?;
    node.rtnl
        .set_link(
            index,
            &LinkChange {
                up: Some(up),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("bringing {name} {}", if up { "up" } else { "down" }))?;
    if up {
        settle_container_side(rec);
    }
    Ok(())
}

/// The container side got its carrier when the host side went up, but the
/// kernel gives it a transmit queue only in its deferred link-state work:
/// until then what the container sends (the gratuitous ARP announcing it,
/// its first packets) is dropped. Asking for its link state runs that work
/// now. Not essential: the kernel runs it soon anyway, so a warning only.
fn settle_container_side(rec: &Attachment) {
    let ifname = rec.ifname.clone();
    let settled = rec
        .open_netns()
        .and_then(|ns| ns.run(move || sys::link_detected(&ifname)))
        .and_then(|r| r);
    match settled {
        Ok(true) => {}
        Ok(false) => tracing::warn!("{} in {:?} has no carrier", rec.ifname, rec.netns),
        Err(e) => tracing::warn!("{e}: {} may drop what it sends at first", rec.ifname),
    }
}

/// Deletes the pair (both ends go), if the host index still names our link.
pub async fn delete_veth(node: &Node, rec: &Attachment) -> Result<()> {
    let (Some(index), Some(name)) = (rec.host_ifindex, &rec.host_ifname) else {
        return Ok(());
    };
    match node.rtnl.link_by_index(index).await? {
        Some(l) if &l.name == name => node.rtnl.del_link(index).await,
        _ => Ok(()),
    }
}

/// Checks that the attachment's host-side interface is still there under
/// its recorded name, and up (or, following a parent without carrier,
/// down); returns it.
pub async fn check_host_link(node: &Node, rec: &Attachment) -> Result<Link> {
    if !follows_parent(rec) {
        return check_link(
            node,
            rec.host_ifindex,
            rec.host_ifname.as_deref(),
            "host-side interface",
        )
        .await;
    }
    let (Some(index), Some(name)) = (rec.host_ifindex, rec.host_ifname.as_deref()) else {
        return Err(Error::system("the record has no host-side interface"));
    };
    let link = match node.rtnl.link_by_index(index).await? {
        Some(l) if l.name == name => l,
        _ => {
            return Err(Error::not_found(format!(
                "host-side interface {name} is gone"
            )));
        }
    };
    let wanted = host_side_wanted_up(node, rec).await?;
    match (link.up, wanted) {
        (true, false) => Err(Error::system(format!(
            "host-side interface {name} is up while parent {} is down or has no carrier: \
             the container would not see the parent's state",
            rec.parent
        ))),
        (false, true) => Err(Error::system(format!("host-side interface {name} is down"))),
        _ => Ok(link),
    }
}

/// Checks that `what` — `index`, named `name` in the record — is still
/// there under that name, and up; returns it.
pub async fn check_link(
    node: &Node,
    index: Option<u32>,
    name: Option<&str>,
    what: &str,
) -> Result<Link> {
    let (Some(index), Some(name)) = (index, name) else {
        return Err(Error::system(format!("the record has no {what}")));
    };
    match node.rtnl.link_by_index(index).await? {
        Some(l) if l.name == name && l.up => Ok(l),
        Some(l) if l.name == name => Err(Error::system(format!("{what} {name} is down"))),
        _ => Err(Error::not_found(format!("{what} {name} is gone"))),
    }
}
