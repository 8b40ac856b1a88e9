//! `--backend native`: the host-side veth a port of a Linux bridge of the
//! node, as an access port with `--vlan`, isolated with `--isolated`, and
//! with `--spoofchk on` the `attach_br_guard` program on its ingress.

use attach_common::{SW_F_GUARD, SW_F_IPCHK, SW_F_SPOOFCHK, SwPort};
use aya::programs::TcAttachType;

use super::ports::addrs;
use crate::kinds::common;
use crate::{
    datapath::{self, Datapath, PROG_BR_GUARD},
    endpoint,
    error::{Context as _, Error, Result},
    inside,
    model::Attachment,
    netlink::{Link, LinkChange},
    netns::Netns,
    node::Node,
};

/// The Linux bridge `name` of the node, able to take the request's VLAN.
pub(super) async fn native_bridge(node: &Node, name: &str, vlan: Option<u16>) -> Result<Link> {
    let link = node.rtnl.link_by_name(name).await?.ok_or_else(|| {
        Error::not_found(format!(
            "unknown bridge {name:?}: no such device in the node's network namespace \
             (create it first: ip link add {name} type bridge)"
        ))
    })?;
    if link.kind.as_deref() != Some("bridge") {
        return Err(Error::invalid(format!(
            "unknown bridge {name:?}: it is a {} device, not a Linux bridge",
            link.kind.as_deref().unwrap_or("plain")
        )));
    }
    let settings = link.bridge.unwrap_or_default();
    if let Some(v) = vlan
        && !settings.vlan_support
    {
        return Err(Error::invalid(format!(
            "--vlan {v} on a native bridge needs the kernel's bridge VLAN filtering, which this kernel lacks \
             (CONFIG_BRIDGE_VLAN_FILTERING is off); the ebpf backend's switch has VLANs of its own"
        )));
    }
    if let Some(v) = vlan
        && !settings.vlan_filtering
    {
        return Err(Error::conflict(format!(
            "bridge {name} does not filter VLANs (vlan_filtering 0), so --vlan {v} cannot make an access port; \
             turn filtering on (ip link set {name} type bridge vlan_filtering 1) or attach without --vlan"
        )));
    }
    Ok(link)
}

pub(super) async fn create_native(
    node: &Node,
    rec: &mut Attachment,
    ns: &Netns,
    records: &[Attachment],
) -> Result<()> {
    endpoint::create_veth(node, rec, ns).await?;
    let host = rec.host_ifindex.expect("set by create_veth");
    let bridge = native_bridge(node, &rec.parent, rec.vlan).await?;
    if rec.mtu < bridge.mtu {
        // The bridge follows its smallest port's MTU: keep its own.
        node.rtnl
            .set_link(
                host,
                &LinkChange {
                    mtu: Some(bridge.mtu),
                    ..Default::default()
                },
            )
            .await
            .context("setting the host side's MTU to the bridge's")?;
    }
    if rec.spoofchk {
        // Before the port joins: no frame reaches the bridge unchecked.
        rec.endpoint_id = Some(common::free_endpoint_id(records)?);
        put_guard(&mut node.datapath_for(rec)?, rec)?;
    }
    join_native(node, rec, &bridge).await?;
    endpoint::host_up(node, rec).await?;
    inside::announce(ns, rec);
    Ok(())
}

/// Makes the host-side veth a port of `bridge` as the record says (also
/// what `repair` runs: idempotent).
pub(super) async fn join_native(node: &Node, rec: &Attachment, bridge: &Link) -> Result<()> {
    let (Some(host), Some(name)) = (rec.host_ifindex, &rec.host_ifname) else {
        return Err(Error::system("the record has no host-side interface"));
    };
    node.rtnl
        .set_controller(host, bridge.index)
        .await
        .with_context(|| format!("adding {name} to bridge {}", bridge.name))?;
    node.rtnl
        .set_port_isolated(host, rec.isolated)
        .await
        .with_context(|| format!("setting isolated on {name}"))?;
    if let Some(vid) = rec.vlan {
        node.rtnl
            .add_port_vlan(host, vid, true, true)
            .await
            .with_context(|| format!("putting {name} in VLAN {vid}"))?;
        // The port joined with the bridge's default PVID (and whatever
        // else it had): an access port has its own VLAN only.
        for v in node.rtnl.port_vlans(host).await? {
            if v.vid != vid {
                node.rtnl
                    .del_port_vlan(host, v.vid)
                    .await
                    .with_context(|| format!("removing VLAN {} from {name}", v.vid))?;
            }
        }
    }
    Ok(())
}

/// The guard's view of a native port.
pub(super) fn guard_port_of(rec: &Attachment) -> Option<SwPort> {
    let mut flags = SW_F_GUARD | SW_F_SPOOFCHK;
    if !rec.ips.is_empty() {
        flags |= SW_F_IPCHK;
    }
    Some(SwPort {
        ifindex: rec.host_ifindex?,
        switch_id: 0,
        id: rec.endpoint_id?,
        vlan: rec.vlan.unwrap_or(0),
        flags,
        allow: 0,
        mac: rec.mac.0,
        _pad2: [0; 2],
    })
}

pub(super) fn put_guard(dp: &mut Datapath, rec: &Attachment) -> Result<()> {
    let port = guard_port_of(rec).ok_or_else(|| Error::system("the record has no endpoint id"))?;
    dp.zero_stats(port.id)?;
    dp.put_endpoint_ips(port.ifindex, &addrs(rec))?;
    dp.put_sw_port(&port)?;
    dp.attach_tc(
        PROG_BR_GUARD,
        port.ifindex,
        TcAttachType::Ingress,
        &datapath::port_link(port.ifindex),
    )
    .context("attaching the source guard")?;
    Ok(())
}

pub(super) fn teardown_guard(node: &Node, rec: &Attachment) -> Result<()> {
    let mut dp = node.datapath_for(rec)?;
    let h = rec.host_ifindex.expect("checked");
    dp.unpin(&datapath::port_link(h))?;
    dp.remove_sw_port(h)?;
    dp.remove_endpoint_ips(h, &addrs(rec))
}

pub(super) async fn check_native(node: &Node, rec: &Attachment, link: &Link) -> Result<()> {
    let host_name = &link.name;
    let bridge = native_bridge(node, &rec.parent, None).await?;
    if link.controller != Some(bridge.index) {
        return Err(Error::system(format!(
            "{host_name} is not a port of bridge {}",
            rec.parent
        )));
    }
    if link.port_isolated.unwrap_or(false) != rec.isolated {
        return Err(Error::system(format!(
            "{host_name}: isolated is {}, expected {}",
            !rec.isolated, rec.isolated
        )));
    }
    if let Some(vid) = rec.vlan {
        let vlans = node.rtnl.port_vlans(link.index).await?;
        let access = vlans.iter().any(|v| v.vid == vid && v.pvid && v.untagged);
        if !access || vlans.len() != 1 {
            let have: Vec<String> = vlans.iter().map(|v| v.vid.to_string()).collect();
            return Err(Error::system(format!(
                "{host_name} should be an access port of VLAN {vid} (PVID, untagged) only; its VLANs: [{}]",
                have.join(", ")
            )));
        }
    }
    if rec.endpoint_id.is_some() {
        let mut dp = node.datapath_for(rec)?;
        let want = guard_port_of(rec).expect("ids are set");
        if dp.sw_port(link.index)? != Some(want) {
            return Err(Error::system(format!(
                "the guard entry of {host_name} is missing or stale"
            )));
        }
        if !dp.has_endpoint_ips(link.index, &addrs(rec))? {
            return Err(Error::system(format!(
                "the source addresses of {host_name} are missing from the anti-spoofing table"
            )));
        }
        dp.check_tcx(
            PROG_BR_GUARD,
            &datapath::port_link(link.index),
            link.index,
            TcAttachType::Ingress,
            "source guard",
        )?;
    }
    Ok(())
}

/// `repair` of a Linux bridge port: its guard and its port settings put
/// back (idempotent).
pub(super) async fn repair(node: &Node, rec: &Attachment) -> Result<()> {
    let bridge = native_bridge(node, &rec.parent, rec.vlan).await?;
    if rec.endpoint_id.is_some() {
        put_guard(&mut node.datapath_for(rec)?, rec)?;
    }
    join_native(node, rec, &bridge).await?;
    Ok(())
}
