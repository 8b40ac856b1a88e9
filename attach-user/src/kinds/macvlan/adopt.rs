//! A MAC changed inside the container (`ip link set eth0 address …`): a
//! kernel macvlan takes it on (its device's address is the one it
//! filters on), so a macvlan endpoint takes it on too: `reconcile` moves
//! the endpoint's receive entry, its port (the source check) and its place
//! in the parent's flood row to the new MAC, swaps it in the parent's
//! unicast filter, and records it.

use crate::kinds::parent::{macvlan_endpoint_of, setup_parent};
use crate::{
    addr::Mac,
    error::{Error, Result},
    model::{Attachment, Backend, Kind, Mode},
    netlink::Rtnl,
    node::Node,
};

/// The MAC the container gave the endpoint's interface, when it is not the
/// recorded one (the interface still the recorded one).
pub(crate) async fn changed_mac(rec: &Attachment) -> Result<Option<Mac>> {
    let Ok(ns) = rec.open_netns() else {
        return Ok(None);
    };
    if ns.inode != rec.netns_inode {
        return Ok(None);
    }
    let Some(link) = Rtnl::in_netns(&ns)?.link_by_name(&rec.ifname).await? else {
        return Ok(None);
    };
    if rec.ifindex.is_some_and(|i| i != link.index) {
        return Ok(None);
    }
    Ok((link.mac != rec.mac).then_some(link.mac))
}

/// Takes on the MAC the container set, if it did; returns the record to
/// save. Refused (an error) for a MAC the parent or another endpoint on it
/// has, and for passthru (the parent's own MAC is the endpoint's).
pub(crate) async fn adopt_mac(
    node: &Node,
    rec: &Attachment,
    others: &[Attachment],
) -> Result<Option<Attachment>> {
    if rec.kind != Kind::Macvlan || rec.is_mode(Mode::Passthru) {
        return Ok(None);
    }
    let Some(new) = changed_mac(rec).await? else {
        return Ok(None);
    };
    new.check_unicast("the container's MAC")?;
    let parent = node
        .rtnl
        .link_by_index(rec.parent_ifindex)
        .await?
        .ok_or_else(|| Error::not_found(format!("parent {} is gone", rec.parent)))?;
    if new == parent.mac {
        return Err(Error::conflict(format!(
            "the container's MAC {new} is the address of parent {} itself",
            rec.parent
        )));
    }
    if let Some(o) = others
        .iter()
        .find(|o| o.parent_ifindex == rec.parent_ifindex && o.mac == new)
    {
        return Err(Error::conflict(format!(
            "the container's MAC {new} is already used on parent {} by {} in {:?}",
            rec.parent, o.ifname, o.netns
        )));
    }
    let mut adopted = rec.clone();
    adopted.mac = new;
    if rec.backend == Backend::Ebpf {
        let host = rec
            .host_ifindex
            .ok_or_else(|| Error::system("the record has no host-side interface"))?;
        let ep = macvlan_endpoint_of(&adopted)
            .ok_or_else(|| Error::system("the record has no endpoint id"))?;
        let mut dp = node.datapath_for(rec)?;
        // The new MAC's entries first: from here the endpoint's frames pass.
        node.rtnl.fdb_self_add(rec.parent_ifindex, new).await?;
        dp.remove_endpoint(rec.parent_ifindex, rec.mac.0, host)?;
        dp.put_endpoint(&ep)?;
        let mut all = others.to_vec();
        all.push(adopted.clone());
        setup_parent(node, &mut dp, &adopted, &all).await?;
        node.rtnl.fdb_self_del(rec.parent_ifindex, rec.mac).await?;
    }
    Ok(Some(adopted))
}
