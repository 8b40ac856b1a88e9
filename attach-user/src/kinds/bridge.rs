//! bridge attachments: a veth whose host side is a port of a Linux bridge
//! (`--backend native`), or of our own eBPF L2 switch (`--backend ebpf`).
//!
//! Native: the bridge must exist in the node (the engine never creates or
//! reconfigures a user's bridge). The host-side veth becomes its port
//! (`IFLA_MASTER`); `--vlan N` makes it an access port (VLAN N as PVID,
//! egress untagged, the bridge's default PVID removed), which needs the
//! bridge's VLAN filtering on: with it off, the request is refused rather
//! than the bridge changed under its other ports. `--isolated` is the
//! kernel's `isolated` port flag. `--spoofchk on` puts `attach_br_guard` on
//! the port's tcx ingress, before the bridge sees the frame: the same
//! source-MAC and source-IP checks as the eBPF backends, counted as
//! `spoofed_source`, plus the endpoint's transmit counters. (The bridge's
//! own `locked` port with a static FDB entry would check the MAC only, not
//! the addresses, and would count nothing.)
//!
//! eBPF: `--bridge` names a switch, not a device. The engine makes it with
//! its first port and removes it with its last; `attach_sw` runs on every
//! port (see `attach-ebpf/src/switch.rs` for the rules). `--uplink IF`,
//! given with the first port, connects the switch to a node device as an
//! 802.1Q trunk (untagged: the ports without a VLAN; tagged N: VLAN N); the
//! device goes promiscuous, as a bridge port does, and is restored with the
//! switch's last port. A port whose MAC is enforced (`--spoofchk on`, the
//! default) gets a static FDB entry, so it is reached without flooding and
//! its MAC cannot be taken over by another port.

use std::net::IpAddr;

use attach_common::{
    FDB_F_STATIC, FdbEntry, FdbKey, MAX_SWITCHES, SW_AGEING_NS, SW_F_GUARD, SW_F_IPCHK,
    SW_F_ISOLATED, SW_F_SPOOFCHK, SW_F_UPLINK, SwPort, Switch,
};
use aya::programs::TcAttachType;

use super::common;
use crate::{
    addr::{IpNet, Mac, check_ifname},
    datapath::{self, Datapath, PROG_BR_GUARD, PROG_SW},
    endpoint,
    error::{Context as _, Error, Result},
    inside,
    model::{Attachment, Backend, Datapath as DatapathKind, Kind, SavedParent},
    naming,
    netlink::{Link, LinkChange},
    netns::Netns,
    node::Node,
};

/// Largest MTU a veth takes.
const VETH_MAX_MTU: u32 = 65535;
/// MTU of a switch port without an uplink, unless given.
const DEFAULT_MTU: u32 = 1500;

/// Everything `attach add bridge` takes.
#[derive(Clone, Debug)]
pub struct BridgeRequest {
    pub netns: String,
    pub ifname: String,
    /// native: the Linux bridge; ebpf: the switch's name.
    pub bridge: String,
    pub mac: Option<Mac>,
    pub ips: Vec<IpNet>,
    pub gateway: Option<IpAddr>,
    pub mtu: Option<u32>,
    /// Access VLAN (1..=4094); none: untagged.
    pub vlan: Option<u16>,
    pub backend: Backend,
    pub isolated: bool,
    /// `None`: on for ebpf, off for native.
    pub spoofchk: Option<bool>,
    /// ebpf: the switch's uplink device (with its first port).
    pub uplink: Option<String>,
}

impl BridgeRequest {
    /// Checks what can be checked without looking at the system.
    pub fn validate(&self) -> Result<()> {
        check_ifname(&self.ifname)?;
        check_ifname(&self.bridge).map_err(|e| e.context("--bridge"))?;
        if let Some(m) = &self.mac {
            m.check_unicast("--mac")?;
        }
        if let Some(v) = self.vlan {
            check_vlan(v)?;
        }
        if let Some(u) = &self.uplink {
            check_ifname(u).map_err(|e| e.context("--uplink"))?;
            if self.backend == Backend::Native {
                return Err(Error::invalid(format!(
                    "--uplink is for the ebpf backend: a native bridge reaches the wire through its own ports (ip link set {u} master {})",
                    self.bridge
                )));
            }
        }
        if let Some(m) = self.mtu
            && m > VETH_MAX_MTU
        {
            return Err(Error::invalid(format!(
                "MTU {m} exceeds the largest a veth takes ({VETH_MAX_MTU})"
            )));
        }
        super::check_addressing(&self.ips, self.gateway, self.mtu)
    }

    fn spoofchk(&self) -> bool {
        self.spoofchk.unwrap_or(self.backend == Backend::Ebpf)
    }
}

/// A VLAN ID a port can be in.
pub fn check_vlan(v: u16) -> Result<()> {
    if !(1..=4094).contains(&v) {
        return Err(Error::invalid(format!(
            "VLAN ID {v} is out of range: use 1 to 4094 (0 and 4095 are reserved)"
        )));
    }
    Ok(())
}

/// The other ports of the bridge/switch `rec` is (or will be) a port of.
fn members<'a>(records: &'a [Attachment], rec: &Attachment) -> Vec<&'a Attachment> {
    records
        .iter()
        .filter(|r| {
            r.kind == Kind::Bridge
                && r.backend == rec.backend
                && r.parent == rec.parent
                && !(r.netns_inode == rec.netns_inode && r.ifname == rec.ifname)
        })
        .collect()
}

/// Checks the request against the system and the other attachments, and
/// returns the record to create. Nothing is changed yet.
pub async fn plan(
    node: &Node,
    req: &BridgeRequest,
    ns: &Netns,
    records: &[Attachment],
) -> Result<Attachment> {
    common::check_ifname_free(ns, &req.netns, &req.ifname).await?;
    let ebpf = req.backend == Backend::Ebpf;
    let mut rec = Attachment {
        backend: req.backend,
        datapath: ebpf.then_some(DatapathKind::Tc),
        parent: req.bridge.clone(),
        mac: req.mac.unwrap_or_else(Mac::random),
        ips: req.ips.clone(),
        gateway: req.gateway,
        spoofchk: req.spoofchk(),
        vlan: req.vlan,
        isolated: req.isolated,
        uplink: req.uplink.clone(),
        ..Attachment::new(Kind::Bridge, &req.ifname).in_netns(&req.netns, ns)
    };
    let others = members(records, &rec);
    // The device frames leave the node by: the bridge, or the uplink.
    let device = if ebpf {
        plan_switch(node, req, &mut rec, &others, records).await?
    } else {
        Some(native_bridge(node, &req.bridge, req.vlan).await?)
    };
    rec.mtu = match (&device, req.mtu) {
        (Some(d), Some(m)) if m > d.mtu => {
            return Err(Error::invalid(format!(
                "MTU {m} exceeds the MTU {} of {} {}",
                d.mtu,
                if ebpf { "uplink" } else { "bridge" },
                d.name
            )));
        }
        (_, Some(m)) => m,
        (Some(d), None) => d.mtu,
        (None, None) => DEFAULT_MTU,
    };
    if let Some(d) = &device {
        rec.parent_ifindex = d.index;
        if d.mac == rec.mac {
            return Err(Error::conflict(format!(
                "MAC {} is the address of {} itself",
                rec.mac, d.name
            )));
        }
    }
    let what = if ebpf { "switch" } else { "bridge" };
    if let Some(o) = others.iter().find(|o| o.mac == rec.mac) {
        return Err(Error::conflict(format!(
            "MAC {} is already used on {what} {} by {} in {:?}",
            rec.mac, rec.parent, o.ifname, o.netns
        )));
    }
    let own = match &device {
        Some(d) => node.rtnl.addresses(d.index).await?,
        None => Vec::new(),
    };
    for ip in &rec.ips {
        if own.contains(&ip.addr) {
            return Err(Error::conflict(format!(
                "address {} is the node's own address on {}",
                ip.addr,
                device.as_ref().map_or("?", |d| d.name.as_str())
            )));
        }
        if let Some(o) = others
            .iter()
            .find(|o| o.ips.iter().any(|a| a.addr == ip.addr))
        {
            return Err(Error::conflict(format!(
                "address {} is already used on {what} {} by {} in {:?}",
                ip.addr, rec.parent, o.ifname, o.netns
            )));
        }
    }
    Ok(rec)
}

/// The Linux bridge `name` of the node, able to take the request's VLAN.
async fn native_bridge(node: &Node, name: &str, vlan: Option<u16>) -> Result<Link> {
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

/// The eBPF switch side of `plan`: joins the switch's existing ports (and
/// uplink), or checks the uplink a new switch gets. Returns the uplink.
async fn plan_switch(
    node: &Node,
    req: &BridgeRequest,
    rec: &mut Attachment,
    others: &[&Attachment],
    records: &[Attachment],
) -> Result<Option<Link>> {
    if let Some(first) = others.first() {
        if req.uplink.is_some() && req.uplink != first.uplink {
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
        if let Some(r) = records.iter().find(|r| {
            r.parent_ifindex == link.index && matches!(r.kind, Kind::Macvlan | Kind::Ipvlan)
        }) {
            return Err(Error::conflict(format!(
                "uplink {name} is the parent of {} endpoints ({} in {:?})",
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

/// Makes the attachment. On error, `rec` says what was made so far, for
/// `teardown` to undo.
pub async fn create(
    node: &Node,
    rec: &mut Attachment,
    ns: &Netns,
    records: &[Attachment],
) -> Result<()> {
    match rec.backend {
        Backend::Native => create_native(node, rec, ns, records).await,
        Backend::Ebpf => create_switch_port(node, rec, ns, records).await,
    }
}

async fn create_native(
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
        put_guard(&mut node.datapath()?, rec)?;
    }
    join_native(node, rec, &bridge).await?;
    endpoint::host_up(node, rec).await?;
    inside::announce(ns, rec);
    Ok(())
}

/// Makes the host-side veth a port of `bridge` as the record says (also
/// what `repair` runs: idempotent).
async fn join_native(node: &Node, rec: &Attachment, bridge: &Link) -> Result<()> {
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
fn guard_port_of(rec: &Attachment) -> Option<SwPort> {
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

fn put_guard(dp: &mut Datapath, rec: &Attachment) -> Result<()> {
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

fn addrs(rec: &Attachment) -> Vec<IpAddr> {
    rec.ips.iter().map(|n| n.addr).collect()
}

/// A switch port's entry.
fn switch_port_of(rec: &Attachment) -> Option<SwPort> {
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
fn static_entry(rec: &Attachment) -> Option<(FdbKey, FdbEntry)> {
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

async fn create_switch_port(
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
    let mut dp = node.datapath()?;
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
async fn take_uplink(
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
fn write_switch(dp: &mut Datapath, rec: &Attachment, all: &[Attachment]) -> Result<()> {
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

/// Removes whatever of `rec` exists, continuing past failures; returns them.
pub async fn teardown(node: &Node, rec: &Attachment, remaining: &[Attachment]) -> Vec<Error> {
    let mut errors = Vec::new();
    let datapath = match rec.backend {
        Backend::Native => rec.endpoint_id.is_some() && rec.host_ifindex.is_some(),
        Backend::Ebpf => rec.switch_id.is_some(),
    };
    if datapath {
        let r = match rec.backend {
            Backend::Native => teardown_guard(node, rec),
            Backend::Ebpf => teardown_switch_port(node, rec, remaining).await,
        };
        if let Err(e) = r {
            errors.push(e);
        }
    }
    // The port leaves its bridge with the veth.
    if let Err(e) = endpoint::delete_veth(node, rec).await {
        errors.push(e);
    }
    errors
}

fn teardown_guard(node: &Node, rec: &Attachment) -> Result<()> {
    let mut dp = node.datapath()?;
    let h = rec.host_ifindex.expect("checked");
    dp.unpin(&datapath::port_link(h))?;
    dp.remove_sw_port(h)?;
    dp.remove_endpoint_ips(h, &addrs(rec))
}

async fn teardown_switch_port(
    node: &Node,
    rec: &Attachment,
    remaining: &[Attachment],
) -> Result<()> {
    let mut dp = node.datapath()?;
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
async fn release_uplink(node: &Node, dp: &mut Datapath, rec: &Attachment) -> Result<()> {
    let up = rec.parent_ifindex;
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

/// The container side, the host-side veth, and: (native) its bridge port
/// settings and guard; (ebpf) the port, switch, flood row, static FDB
/// entry, uplink and programs.
pub async fn check(node: &Node, rec: &Attachment) -> Result<()> {
    common::check_container_side(rec).await?;
    let link = endpoint::check_host_link(node, rec).await?;
    match rec.backend {
        Backend::Native => check_native(node, rec, &link).await,
        Backend::Ebpf => check_switch_port(node, rec),
    }
}

async fn check_native(node: &Node, rec: &Attachment, link: &Link) -> Result<()> {
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
        let mut dp = node.datapath()?;
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

fn check_switch_port(node: &Node, rec: &Attachment) -> Result<()> {
    let mut dp = node.datapath()?;
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

/// Puts the port back as the record says without recreating it: (native)
/// its bridge, flags, VLAN and guard; (ebpf) its entries, static FDB entry,
/// programs, the switch and its uplink. Idempotent.
pub async fn repair(node: &Node, rec: &Attachment, others: &[Attachment]) -> Result<()> {
    match rec.backend {
        Backend::Native => {
            let bridge = native_bridge(node, &rec.parent, rec.vlan).await?;
            if rec.endpoint_id.is_some() {
                put_guard(&mut node.datapath()?, rec)?;
            }
            join_native(node, rec, &bridge).await?;
        }
        Backend::Ebpf => {
            let mut dp = node.datapath()?;
            let port = switch_port_of(rec)
                .ok_or_else(|| Error::system("the record has no switch port"))?;
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
        }
    }
    endpoint::host_up(node, rec).await
}

/// See [`super::links`].
pub fn links(rec: &Attachment) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let Some(h) = rec.host_ifindex else {
        return out;
    };
    match rec.backend {
        Backend::Native if rec.endpoint_id.is_some() => {
            out.push((PROG_BR_GUARD, datapath::port_link(h)));
        }
        Backend::Native => {}
        Backend::Ebpf => {
            out.push((PROG_SW, datapath::port_link(h)));
            if rec.uplink.is_some() && rec.parent_ifindex != 0 {
                out.push((PROG_SW, datapath::uplink_link(rec.parent_ifindex)));
            }
        }
    }
    out
}

/// Housekeeping for `reconcile`: removes FDB entries that no longer count
/// (learned longer ago than their switch's ageing time, or behind a port
/// that is no longer one of their switch's). Returns how many.
pub fn sweep(node: &Node, records: &[Attachment]) -> Result<usize> {
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
fn monotonic_ns() -> u64 {
    // SAFETY: plain data filled by the kernel.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(backend: Backend) -> BridgeRequest {
        BridgeRequest {
            netns: "c1".into(),
            ifname: "eth0".into(),
            bridge: "br0".into(),
            mac: None,
            ips: Vec::new(),
            gateway: None,
            mtu: None,
            vlan: None,
            backend,
            isolated: false,
            spoofchk: None,
            uplink: None,
        }
    }

    #[test]
    fn vlan_ids_outside_1_to_4094_are_refused() {
        for v in [0, 4095, 4096, u16::MAX] {
            let e = BridgeRequest {
                vlan: Some(v),
                ..req(Backend::Ebpf)
            }
            .validate()
            .unwrap_err();
            assert!(e.message.contains(&format!("VLAN ID {v}")), "{e}");
        }
        for v in [1, 10, 4094] {
            BridgeRequest {
                vlan: Some(v),
                ..req(Backend::Native)
            }
            .validate()
            .unwrap();
        }
    }

    #[test]
    fn names_and_options_are_checked() {
        let e = BridgeRequest {
            bridge: "a-very-long-bridge".into(),
            ..req(Backend::Ebpf)
        }
        .validate()
        .unwrap_err();
        assert!(
            e.message.contains("--bridge") && e.message.contains("15"),
            "{e}"
        );
        let e = BridgeRequest {
            uplink: Some("eth1".into()),
            ..req(Backend::Native)
        }
        .validate()
        .unwrap_err();
        assert!(e.message.contains("--uplink"), "{e}");
        assert!(req(Backend::Ebpf).spoofchk() && !req(Backend::Native).spoofchk());
    }
}
