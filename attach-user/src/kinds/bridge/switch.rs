//! `--backend ebpf`: a port of our own L2 switch (`attach_sw` on every
//! port, see `attach-ebpf/src/switch.rs`), made with its first port and
//! removed with its last, with an optional 802.1Q uplink; and the FDB's
//! housekeeping.

use attach_common::{
    FDB_F_STATIC, FdbEntry, FdbKey, MAX_SWITCHES, SW_AGEING_NS, SW_F_GUARD, SW_F_IPCHK,
    SW_F_ISOLATED, SW_F_SPOOFCHK, SW_F_UPLINK, SwPort, Switch,
};
use aya::programs::TcAttachType;

use super::ports::{addrs, members};
use crate::kinds::{common, parent};
use crate::{
    datapath::{self, Datapath, PROG_SW},
    endpoint,
    error::{Context as _, Error, Result},
    inside,
    model::{Attachment, Backend, Kind, Mode, SavedParent},
    naming,
    netlink::{Link, LinkChange},
    netns::Netns,
    node::Node,
};

/// The eBPF switch side of `plan`: joins the switch's existing ports (and
/// uplink), or checks the uplink a new switch gets. Returns the uplink.
pub(super) async fn plan_switch(
    node: &Node,
    uplink: &Option<String>,
    rec: &mut Attachment,
    others: &[&Attachment],
    records: &[Attachment],
) -> Result<Option<Link>> {
    if let Some(first) = others.first() {
        if uplink.is_some() && *uplink != first.uplink {
            return Err(Error::conflict(format!(
                "switch {} already exists {}; its uplink is given with its first port",
                rec.parent,
                match &first.uplink {
                    Some(u) => format!("with uplink {u}"),
                    None => "without an uplink".to_owned(),
                }
            )));
        }
        rec.uplink = first.uplink.clone();
    } else {
        let used: Vec<u32> = records.iter().filter_map(|r| r.switch_id).collect();
        if !(0..MAX_SWITCHES).any(|id| !used.contains(&id)) {
            return Err(Error::conflict(format!(
                "the node already has {MAX_SWITCHES} switches"
            )));
        }
    }
    let Some(name) = rec.uplink.clone() else {
        return Ok(None);
    };
    let link = node.rtnl.link_by_name(&name).await?.ok_or_else(|| {
        Error::not_found(format!(
            "uplink {name:?} not found in the node's network namespace"
        ))
    })?;
    if others.is_empty() {
        if link.name.starts_with(naming::HOST_IF_PREFIX) {
            return Err(Error::invalid(format!(
                "{name} is an endpoint's host-side interface, not an uplink"
            )));
        }
        if !link.ether {
            return Err(Error::invalid(format!(
                "uplink {name} is not an Ethernet device"
            )));
        }
        if link.kind.as_deref() == Some("bridge") {
            return Err(Error::invalid(format!(
                "uplink {name} is a Linux bridge: attach to it with --backend native"
            )));
        }
        if link.has_controller {
            return Err(Error::conflict(format!(
                "uplink {name} is already a port of another device (a bridge or bond)"
            )));
        }
        // eBPF macvlan endpoints may share the uplink (their bridge ports
        // meet the untagged ports locally); ipvlan and native macvlan
        // endpoints may not (both would switch the frames it receives).
        let compat = datapath::compat_build();
        if let Some(r) = records.iter().find(|r| {
            r.parent_ifindex == link.index
                && matches!(r.kind, Kind::Macvlan | Kind::Ipvlan)
                && (compat
                    || r.kind == Kind::Ipvlan
                    || r.backend != Backend::Ebpf
                    || r.is_mode(Mode::Passthru))
        }) {
            let why = if r.is_mode(Mode::Passthru) {
                ": a passthru endpoint takes the device's own MAC and traffic".to_owned()
            } else if r.kind == Kind::Macvlan && r.backend == Backend::Ebpf {
                format!(": sharing it {}", parent::SHARED_UPLINK_NEEDS)
            } else {
                String::new()
            };
            return Err(Error::conflict(format!(
                "uplink {name} is the parent of {} endpoints ({} in {:?}){why}",
                r.kind.name(),
                r.ifname,
                r.netns
            )));
        }
        if let Some(r) = records.iter().find(|r| {
            r.kind == Kind::Bridge && r.uplink.as_deref() == Some(&name) && r.parent != rec.parent
        }) {
            return Err(Error::conflict(format!(
                "{name} is already the uplink of switch {}",
                r.parent
            )));
        }
    }
    Ok(Some(link))
}

/// A switch port's entry.
pub(super) fn switch_port_of(rec: &Attachment) -> Option<SwPort> {
    let mut flags = 0;
    if rec.spoofchk {
        flags |= SW_F_SPOOFCHK;
        if !rec.ips.is_empty() {
            flags |= SW_F_IPCHK;
        }
    }
    if rec.isolated {
        flags |= SW_F_ISOLATED;
    }
    Some(SwPort {
        ifindex: rec.host_ifindex?,
        switch_id: rec.switch_id?,
        id: rec.endpoint_id?,
        vlan: rec.vlan.unwrap_or(0),
        flags,
        allow: 0,
        mac: rec.mac.0,
        _pad2: [0; 2],
    })
}

/// The static FDB entry of a port whose MAC is enforced.
pub(super) fn static_entry(rec: &Attachment) -> Option<(FdbKey, FdbEntry)> {
    if !rec.spoofchk {
        return None;
    }
    Some((
        FdbKey {
            switch_id: rec.switch_id?,
            vlan: rec.vlan.unwrap_or(0),
            mac: rec.mac.0,
        },
        FdbEntry {
            port: rec.host_ifindex?,
            flags: FDB_F_STATIC,
            seen_ns: 0,
        },
    ))
}

pub(super) async fn create_switch_port(
    node: &Node,
    rec: &mut Attachment,
    ns: &Netns,
    records: &[Attachment],
) -> Result<()> {
    endpoint::create_veth(node, rec, ns).await?;
    let others = members(records, rec);
    let first = others.is_empty();
    rec.switch_id = Some(match others.iter().find_map(|o| o.switch_id) {
        Some(id) => id,
        None => {
            let used: Vec<u32> = records.iter().filter_map(|r| r.switch_id).collect();
            (0..MAX_SWITCHES)
                .find(|id| !used.contains(id))
                .ok_or_else(|| {
                    Error::conflict(format!("the node already has {MAX_SWITCHES} switches"))
                })?
        }
    });
    if !first {
        // The uplink's saved state travels with every port: the last one
        // restores it.
        rec.saved_parent = others.iter().find_map(|o| o.saved_parent.clone());
    }
    let mut dp = node.datapath_for(rec)?;
    rec.endpoint_id = Some(common::free_endpoint_id(records)?);
    let port = switch_port_of(rec).expect("ids are set");
    dp.zero_stats(port.id)?;
    if rec.spoofchk {
        dp.put_endpoint_ips(port.ifindex, &addrs(rec))?;
    }
    dp.put_sw_port(&port)?;
    if let Some((k, e)) = static_entry(rec) {
        dp.fdb_put(&k, &e)?;
    }
    dp.attach_tc(
        PROG_SW,
        port.ifindex,
        TcAttachType::Ingress,
        &datapath::port_link(port.ifindex),
    )
    .context("attaching the switch program")?;
    if rec.uplink.is_some() {
        take_uplink(node, &mut dp, rec, first).await?;
    }
    let mut all: Vec<Attachment> = others.into_iter().cloned().collect();
    all.push(rec.clone());
    write_switch(&mut dp, rec, &all)?;
    endpoint::host_up(node, rec).await?;
    inside::announce(ns, rec);
    Ok(())
}

/// Connects the switch to its uplink: the uplink's entry and program, and
/// promiscuous mode (its previous state saved in the record when `first`).
pub(super) async fn take_uplink(
    node: &Node,
    dp: &mut Datapath,
    rec: &mut Attachment,
    first: bool,
) -> Result<()> {
    let name = rec.uplink.clone().expect("an uplink");
    let link = node
        .rtnl
        .link_by_name(&name)
        .await?
        .ok_or_else(|| Error::not_found(format!("uplink {name} vanished")))?;
    rec.parent_ifindex = link.index;
    if first {
        rec.saved_parent = Some(SavedParent {
            mac: link.mac,
            promisc: link.promisc,
        });
    }
    dp.put_sw_port(&SwPort {
        ifindex: link.index,
        switch_id: rec.switch_id.expect("set"),
        id: u32::MAX,
        vlan: 0,
        flags: SW_F_UPLINK,
        allow: 0,
        mac: link.mac.0,
        _pad2: [0; 2],
    })?;
    dp.attach_tc(
        PROG_SW,
        link.index,
        TcAttachType::Ingress,
        &datapath::uplink_link(link.index),
    )
    .with_context(|| format!("attaching the switch program to uplink {name}"))?;
    // Macvlan endpoints on the uplink: their parent meets the switch.
    parent::mark_switch(dp, link.index, true)?;
    if !link.promisc {
        node.rtnl
            .set_link(
                link.index,
                &LinkChange {
                    promisc: Some(true),
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("making uplink {name} promiscuous"))?;
    }
    Ok(())
}

/// Writes the switch's flood row from its ports in `all`, then its entry
/// (which publishes the row).
pub(super) fn write_switch(dp: &mut Datapath, rec: &Attachment, all: &[Attachment]) -> Result<()> {
    let id = rec
        .switch_id
        .ok_or_else(|| Error::system("the record has no switch id"))?;
    let ports: Vec<SwPort> = all.iter().filter_map(switch_port_of).collect();
    dp.write_sw_flood(id, &ports)?;
    let ageing_ns = dp.switch(id)?.map_or(SW_AGEING_NS, |s| s.ageing_ns);
    dp.put_switch(
        id,
        &Switch {
            nports: ports.len() as u32,
            uplink: if rec.uplink.is_some() {
                rec.parent_ifindex
            } else {
                0
            },
            ageing_ns,
        },
    )
}

pub(super) async fn teardown_switch_port(
    node: &Node,
    rec: &Attachment,
    remaining: &[Attachment],
) -> Result<()> {
    let mut dp = node.datapath_for(rec)?;
    let id = rec.switch_id.expect("checked");
    if let Some(h) = rec.host_ifindex {
        dp.unpin(&datapath::port_link(h))?;
        if dp.sw_port(h)?.is_some_and(|p| p.switch_id == id) {
            dp.remove_sw_port(h)?;
        }
        dp.remove_endpoint_ips(h, &addrs(rec))?;
        // What was learned behind the port (its index may come back as
        // another device's).
        dp.fdb_remove_where(|k, e| k.switch_id == id && e.port == h)?;
    }
    let others: Vec<Attachment> = members(remaining, rec).into_iter().cloned().collect();
    if !others.is_empty() {
        return write_switch(&mut dp, rec, &others);
    }
    // The last port: the switch goes.
    dp.remove_switch(id)?;
    dp.fdb_remove_where(|k, _| k.switch_id == id)?;
    if rec.uplink.is_some() && rec.parent_ifindex != 0 {
        release_uplink(node, &mut dp, rec).await?;
    }
    Ok(())
}

/// Detaches the switch from its uplink and restores its promiscuity.
pub(super) async fn release_uplink(node: &Node, dp: &mut Datapath, rec: &Attachment) -> Result<()> {
    let up = rec.parent_ifindex;
    parent::mark_switch(dp, up, false)?;
    dp.unpin(&datapath::uplink_link(up))?;
    if dp
        .sw_port(up)?
        .is_some_and(|p| p.has(SW_F_UPLINK) && Some(p.switch_id) == rec.switch_id)
    {
        dp.remove_sw_port(up)?;
    }
    let name = rec.uplink.as_deref().unwrap_or("?");
    match node.rtnl.link_by_index(up).await? {
        Some(l) if l.name == name => {
            if let Some(saved) = &rec.saved_parent
                && !saved.promisc
                && l.promisc
            {
                node.rtnl
                    .set_link(
                        up,
                        &LinkChange {
                            promisc: Some(false),
                            ..Default::default()
                        },
                    )
                    .await
                    .with_context(|| format!("restoring uplink {name}"))?;
            }
            Ok(())
        }
        _ => Ok(()), // The device is gone.
    }
}

pub(super) fn check_switch_port(node: &Node, rec: &Attachment) -> Result<()> {
    let mut dp = node.datapath_for(rec)?;
    let want = switch_port_of(rec).ok_or_else(|| Error::system("the record has no switch port"))?;
    let host_name = rec.host_ifname.as_deref().unwrap_or("?");
    if dp.sw_port(want.ifindex)? != Some(want) {
        return Err(Error::system(format!(
            "the switch port entry of {host_name} is missing or stale"
        )));
    }
    if rec.spoofchk && !dp.has_endpoint_ips(want.ifindex, &addrs(rec))? {
        return Err(Error::system(format!(
            "the source addresses of {host_name} are missing from the anti-spoofing table"
        )));
    }
    if let Some((k, e)) = static_entry(rec)
        && dp.fdb_get(&k)? != Some(e)
    {
        return Err(Error::system(format!(
            "the static FDB entry of {} on switch {} is missing or stale",
            rec.mac, rec.parent
        )));
    }
    let Some(sw) = dp.switch(want.switch_id)? else {
        return Err(Error::system(format!(
            "switch {} is missing from the datapath",
            rec.parent
        )));
    };
    if !dp.sw_flood(want.switch_id, sw.nports)?.contains(&want) {
        return Err(Error::system(format!(
            "{host_name} is missing from the flood list of switch {}",
            rec.parent
        )));
    }
    dp.check_tcx(
        PROG_SW,
        &datapath::port_link(want.ifindex),
        want.ifindex,
        TcAttachType::Ingress,
        "switch",
    )?;
    if let Some(up) = &rec.uplink {
        let ifindex = rec.parent_ifindex;
        if sw.uplink != ifindex
            || !dp
                .sw_port(ifindex)?
                .is_some_and(|p| p.has(SW_F_UPLINK) && p.switch_id == want.switch_id)
        {
            return Err(Error::system(format!(
                "uplink {up} of switch {} is missing from the datapath",
                rec.parent
            )));
        }
        dp.check_tcx(
            PROG_SW,
            &datapath::uplink_link(ifindex),
            ifindex,
            TcAttachType::Ingress,
            "uplink",
        )?;
    }
    Ok(())
}

/// Housekeeping for `reconcile`: removes FDB entries that no longer count
/// (learned longer ago than their switch's ageing time, or behind a port
/// that is no longer one of their switch's). Returns how many.
pub(crate) fn sweep(node: &Node, records: &[Attachment]) -> Result<usize> {
    if !records
        .iter()
        .any(|r| r.kind == Kind::Bridge && r.backend == Backend::Ebpf && r.is_ebpf())
    {
        return Ok(0);
    }
    let mut dp = node.datapath()?;
    let now = monotonic_ns();
    let mut doomed = Vec::new();
    for (k, e) in dp.fdb()? {
        let port = dp.sw_port(e.port)?;
        let member = port.is_some_and(|p| p.switch_id == k.switch_id && !p.has(SW_F_GUARD));
        let aged = e.flags & FDB_F_STATIC == 0
            && match dp.switch(k.switch_id)? {
                Some(sw) => now.saturating_sub(e.seen_ns) > sw.ageing_ns,
                None => true,
            };
        if aged || !member {
            doomed.push(k);
        }
    }
    dp.fdb_remove_where(|k, _| doomed.contains(k))
}

/// `CLOCK_MONOTONIC` in ns: the clock of `bpf_ktime_get_ns`.
pub(super) fn monotonic_ns() -> u64 {
    // SAFETY: plain data filled by the kernel.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `repair` of a switch port: its port entry, static FDB entry, program
/// and uplink put back, and the switch rewritten with it.
pub(super) async fn repair(node: &Node, rec: &Attachment, others: &[Attachment]) -> Result<()> {
    let mut dp = node.datapath_for(rec)?;
    let port = switch_port_of(rec).ok_or_else(|| Error::system("the record has no switch port"))?;
    if rec.spoofchk {
        dp.put_endpoint_ips(port.ifindex, &addrs(rec))?;
    }
    dp.put_sw_port(&port)?;
    if let Some((k, e)) = static_entry(rec) {
        dp.fdb_put(&k, &e)?;
    }
    dp.attach_tc(
        PROG_SW,
        port.ifindex,
        TcAttachType::Ingress,
        &datapath::port_link(port.ifindex),
    )?;
    let mut rec = rec.clone();
    if rec.uplink.is_some() {
        take_uplink(node, &mut dp, &mut rec, false).await?;
    }
    let mut all: Vec<Attachment> = members(others, &rec).into_iter().cloned().collect();
    all.push(rec.clone());
    write_switch(&mut dp, &rec, &all)?;
    Ok(())
}
