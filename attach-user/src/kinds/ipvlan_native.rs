//! `attach add ipvlan --backend native`: the kernel's own ipvlan driver,
//! where the kernel has it (`CONFIG_IPVLAN`). The slave is made on the
//! parent in the node and moved into the container in one message, then
//! configured as the eBPF endpoint's container side would be. It is also
//! what the eBPF ipvlan is compared with.

use netlink_packet_route::link::{IpVlanFlags, IpVlanMode};

use super::common;
use crate::{
    error::{Context as _, Error, ErrorKind, Result},
    inside,
    model::{Attachment, IpvlanFlag, Mode},
    naming,
    netlink::Rtnl,
    netns::Netns,
    node::Node,
};

fn driver_mode(m: Mode) -> IpVlanMode {
    match m {
        Mode::L3 => IpVlanMode::L3,
        Mode::L3s => IpVlanMode::L3S,
        _ => IpVlanMode::L2,
    }
}

fn driver_flags(f: IpvlanFlag) -> IpVlanFlags {
    match f {
        IpvlanFlag::Bridge => IpVlanFlags::empty(),
        IpvlanFlag::Private => IpVlanFlags::Private,
        IpvlanFlag::Vepa => IpVlanFlags::Vepa,
    }
}

/// Makes the slave in `ns`. On error, `rec` says what was made so far.
pub async fn create(node: &Node, rec: &mut Attachment, ns: &Netns) -> Result<()> {
    let tmp = naming::temp_ifname();
    let mode = rec.mode.unwrap_or(Mode::L2);
    node.rtnl
        .add_ipvlan(
            &tmp,
            rec.parent_ifindex,
            driver_mode(mode),
            driver_flags(rec.flag.unwrap_or_default()),
            ns,
            rec.mtu,
        )
        .await
        .map_err(|e| match e.kind {
            ErrorKind::Conflict => e.context(format!(
                "creating an ipvlan on {} (the parent may already serve another driver, \
                 or be an ipvlan port of another mode)",
                rec.parent
            )),
            _ => e.context(format!("creating an ipvlan on {}", rec.parent)),
        })?;
    let c = Rtnl::in_netns(ns)?;
    let link = c
        .link_by_name(&tmp)
        .await?
        .ok_or_else(|| Error::system(format!("the new ipvlan {tmp} vanished")))?;
    rec.ifindex = Some(link.index);
    inside::configure(&c, link.index, rec).await?;
    // l3/l3s slaves are NOARP: without a gateway, the link is the way out.
    if mode != Mode::L2 && rec.gateway.is_none() {
        for v6 in [false, true] {
            if rec.ips.iter().any(|n| n.addr.is_ipv6() == v6) {
                c.add_default_dev_route(link.index, v6)
                    .await
                    .with_context(|| format!("adding a default route via {}", rec.ifname))?;
            }
        }
    }
    if mode == Mode::L2 {
        inside::announce(ns, rec);
    }
    Ok(())
}

/// Deletes the slave in its namespace (gone with the namespace otherwise).
pub async fn teardown(rec: &Attachment) -> Vec<Error> {
    match rec.ifindex {
        Some(index) => common::del_in_netns(rec, index)
            .await
            .err()
            .into_iter()
            .collect(),
        None => Vec::new(),
    }
}
