//! nested attachments: containers inside a VM, each with its own VLAN on
//! the VM's uplink. Two engines, two sides (this kernel has no 802.1Q
//! devices: the tags are pushed and popped by the programs).
//!
//! In the VM (`attach add nested`, role `vm`): the container gets a veth;
//! `attach_nest_tx` on its host side tags what it sends with its VLAN (and
//! the uplink's 802.1ad S-tag with `--qinq`) and sends it out of the
//! uplink; `attach_nest_rx` on the uplink pops the tags of frames for its
//! VLANs and delivers each into its container. One VLAN is one container
//! of the uplink; untagged frames and other VLANs are the VM's own.
//!
//! On the host (`attach add nested-host`, role `host`): each (tap, S-tag,
//! VLAN) is an endpoint of a parent's macvlan switch, as a macvlan
//! endpoint is, with its own id, counters, mode and anti-spoofing; the
//! container's MAC (`--mac`, the one the VM side gave it) is its address
//! there. `attach_nest_tap` on the tap pops the tags and switches the
//! frame as that endpoint sends it: to the host's other endpoints, the
//! node (`--host-access`) or the wire. Frames for it, from the wire or the
//! host's endpoints, get its tags pushed and go out of the tap. With
//! `--keep-tag` the 802.1Q tag stays on towards the parent (the wire
//! carries the VLAN) and only frames tagged with it are delivered; by
//! default it is stripped and only untagged frames are delivered. That is
//! what isolates VLANs: a stripping endpoint and a keep-tag one (or two
//! keep-tag ones of different VLANs) never exchange a frame.
//!
//! The host side has no container namespace on this node: its record's
//! `netns` is empty, `tap`/`vlan`/`qinq` name it (`attach del --tap TAP
//! --vlan N [--qinq S]`).

use std::net::IpAddr;

use attach_common::{
    EP_F_IPCHK, EP_F_NESTED, EP_F_SPOOFCHK, Endpoint, NEST_F_HOST, NEST_F_KEEP_TAG, NestKey,
    NestedEp,
};
use aya::programs::TcAttachType;

use super::{common, parent};
use crate::{
    addr::{IpNet, Mac, check_ifname},
    datapath::{self, PROG_NEST_RX, PROG_NEST_TAP, PROG_NEST_TX},
    endpoint,
    error::{Context as _, Error, Result},
    inside,
    model::{Attachment, Backend, Datapath as DatapathKind, Kind, MacvlanMode, Mode, NestedRole},
    naming,
    netlink::Link,
    netns::Netns,
    node::Node,
    parse::{self, de},
};

/// Checks a VLAN id a user gave (`what`: the option).
pub fn check_vlan(vid: u16, what: &str) -> Result<()> {
    if !(1..=4094).contains(&vid) {
        return Err(Error::invalid(format!(
            "{what} {vid}: a VLAN ID is 1 to 4094 (0 and 4095 are reserved)"
        )));
    }
    Ok(())
}

// Everything `attach add nested` (in the VM) takes (its help is the subcommand's, in cli.rs).
#[derive(Clone, Debug, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NestedRequest {
    /// The container's network namespace: a name under /run/netns, a path, or a pid.
    #[arg(long, value_name = "NETNS")]
    pub netns: String,
    /// Interface name inside the container.
    #[arg(long, default_value = "eth0")]
    #[serde(default = "de::eth0")]
    pub ifname: String,
    /// The VM's uplink (its NIC towards the host).
    #[arg(long, value_name = "IF")]
    pub uplink: String,
    /// The container's VLAN on the uplink (1-4094).
    #[arg(long, value_name = "N", value_parser = parse::vlan)]
    pub vlan: u16,
    /// The uplink's own 802.1ad S-tag (QinQ), outside --vlan (1-4094).
    #[arg(long, value_name = "OUTER", value_parser = parse::vlan)]
    #[serde(default)]
    pub qinq: Option<u16>,
    /// MAC address of the interface (random if not given; the host side
    /// needs it).
    #[arg(long, value_parser = parse::mac)]
    #[serde(default)]
    pub mac: Option<Mac>,
    /// Address with prefix length, IPv4 or IPv6; repeat for several.
    #[arg(long = "ip", value_name = "CIDR", value_parser = parse::cidr)]
    #[serde(rename = "ip", default, deserialize_with = "de::list")]
    pub ips: Vec<IpNet>,
    /// Default gateway (needs an address of its family).
    #[arg(long, value_name = "IP")]
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// MTU (default and maximum: the uplink's).
    #[arg(long)]
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Drop frames the container sends with a source MAC or address not its
    /// own (default on).
    #[arg(long, value_parser = parse::on_off())]
    #[serde(default, deserialize_with = "de::on_off")]
    pub spoofchk: Option<bool>,
}

impl NestedRequest {
    /// Checks what can be checked without looking at the system.
    pub fn validate(&self) -> Result<()> {
        check_ifname(&self.ifname)?;
        check_ifname(&self.uplink).map_err(|e| e.context("--uplink"))?;
        check_vlan(self.vlan, "--vlan")?;
        if let Some(q) = self.qinq {
            check_vlan(q, "--qinq")?;
        }
        if let Some(m) = &self.mac {
            m.check_unicast("--mac")?;
        }
        super::check_addressing(&self.ips, self.gateway, self.mtu)
    }
}

// Everything `attach add nested-host` (on the host) takes (its help is the subcommand's, in cli.rs).
#[derive(Clone, Debug, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NestedHostRequest {
    /// The VM's tap (or veth) on the host.
    #[arg(long, value_name = "IF")]
    pub tap: String,
    /// The container's VLAN on the tap (1-4094).
    #[arg(long, value_name = "N", value_parser = parse::vlan)]
    pub vlan: u16,
    /// The VM uplink's 802.1ad S-tag (QinQ), outside --vlan (1-4094).
    #[arg(long, value_name = "OUTER", value_parser = parse::vlan)]
    #[serde(default)]
    pub qinq: Option<u16>,
    /// The parent (the NIC) whose switch the endpoint joins.
    #[arg(long, value_name = "IF")]
    pub parent: String,
    /// The container's MAC, as the VM side gave it.
    #[arg(long, value_parser = parse::mac)]
    pub mac: Mac,
    /// The container's addresses (for anti-spoofing); repeat for several.
    #[arg(long = "ip", value_name = "CIDR", value_parser = parse::cidr)]
    #[serde(rename = "ip", default, deserialize_with = "de::list")]
    pub ips: Vec<IpNet>,
    /// macvlan mode of the endpoint on the parent's switch (not passthru).
    #[arg(long, value_enum, default_value_t = MacvlanMode::Bridge)]
    #[serde(default)]
    pub mode: MacvlanMode,
    /// Keep the 802.1Q tag towards the parent (the wire carries the VLAN);
    /// default: strip it.
    #[arg(long)]
    #[serde(default)]
    pub keep_tag: bool,
    /// Let the node's own stack on the parent reach the endpoint and back.
    #[arg(long)]
    #[serde(default)]
    pub host_access: bool,
    /// Drop frames the container sends with a source MAC or address not its
    /// own (default on).
    #[arg(long, value_parser = parse::on_off())]
    #[serde(default, deserialize_with = "de::on_off")]
    pub spoofchk: Option<bool>,
}

impl NestedHostRequest {
    pub fn validate(&self) -> Result<()> {
        check_ifname(&self.tap).map_err(|e| e.context("--tap"))?;
        check_ifname(&self.parent).map_err(|e| e.context("--parent"))?;
        check_vlan(self.vlan, "--vlan")?;
        if let Some(q) = self.qinq {
            check_vlan(q, "--qinq")?;
        }
        self.mac.check_unicast("--mac")?;
        if self.mode == MacvlanMode::Passthru {
            return Err(Error::invalid(
                "--mode passthru does not apply to a nested endpoint (one of many on a VM's tap)",
            ));
        }
        if self.tap == self.parent {
            return Err(Error::invalid(format!(
                "--tap and --parent are both {}: the VM's tap is not the wire",
                self.tap
            )));
        }
        super::check_addressing(&self.ips, None, None)
    }

    /// The record's interface name: the VLAN (inside the S-tag).
    pub fn ifname(&self) -> String {
        vlan_ifname(self.qinq, self.vlan)
    }
}

pub fn vlan_ifname(qinq: Option<u16>, vlan: u16) -> String {
    match qinq {
        Some(q) => format!("vlan{q}.{vlan}"),
        None => format!("vlan{vlan}"),
    }
}

fn is_vm_side(r: &Attachment) -> bool {
    r.kind == Kind::Nested && r.role == Some(NestedRole::Vm)
}

/// A device of the node the request names (`what`: its option).
async fn device(node: &Node, name: &str, what: &str) -> Result<Link> {
    let link = node.rtnl.link_by_name(name).await?.ok_or_else(|| {
        Error::not_found(format!(
            "{what} interface {name:?} not found in the node's network namespace"
        ))
    })?;
    if link.name.starts_with(naming::HOST_IF_PREFIX) {
        return Err(Error::invalid(format!(
            "{} is an endpoint's host-side interface, not a {what}",
            link.name
        )));
    }
    if !link.ether {
        return Err(Error::invalid(format!(
            "{what} {} is not an Ethernet device",
            link.name
        )));
    }
    Ok(link)
}

fn key_of(ifindex: u32, qinq: Option<u16>, vlan: u16) -> NestKey {
    NestKey {
        ifindex,
        outer: qinq.unwrap_or(0),
        vid: vlan,
    }
}

fn addrs(rec: &Attachment) -> Vec<IpAddr> {
    rec.ips.iter().map(|n| n.addr).collect()
}

/// The VM side: checks and the record to create.
pub async fn plan(
    node: &Node,
    req: &NestedRequest,
    ns: &Netns,
    records: &[Attachment],
) -> Result<Attachment> {
    let up = device(node, &req.uplink, "uplink").await?;
    let mtu = parent::mtu_under(&up, req.mtu)?;
    if let Some(r) = records.iter().find(|r| {
        is_vm_side(r)
            && r.parent_ifindex == up.index
            && r.vlan == Some(req.vlan)
            && r.qinq == req.qinq
    }) {
        return Err(Error::conflict(format!(
            "VLAN {}{} on uplink {} is already used by {} in {:?}: a VLAN carries one container",
            req.vlan,
            req.qinq
                .map(|q| format!(" (in S-tag {q})"))
                .unwrap_or_default(),
            up.name,
            r.ifname,
            r.netns
        )));
    }
    if let Some(r) = records
        .iter()
        .find(|r| parent::is_nested_host(r) && r.tap_ifindex == Some(up.index))
    {
        return Err(Error::conflict(format!(
            "{} is a VM's tap on this node ({} {}): not an uplink",
            up.name,
            r.tap.as_deref().unwrap_or("?"),
            r.ifname
        )));
    }
    common::check_ifname_free(ns, &req.netns, &req.ifname).await?;
    super::router::check_addresses_unused(node, &req.ips, records).await?;
    Ok(Attachment {
        backend: Backend::Ebpf,
        datapath: Some(DatapathKind::Tc),
        parent: up.name.clone(),
        parent_ifindex: up.index,
        mac: req.mac.unwrap_or_else(Mac::random),
        ips: req.ips.clone(),
        gateway: req.gateway,
        mtu,
        spoofchk: req.spoofchk.unwrap_or(true),
        role: Some(NestedRole::Vm),
        vlan: Some(req.vlan),
        qinq: req.qinq,
        ..Attachment::new(Kind::Nested, &req.ifname).in_netns(&req.netns, ns)
    })
}

/// The host side: checks and the record to create.
pub async fn plan_host(
    node: &Node,
    req: &NestedHostRequest,
    records: &[Attachment],
) -> Result<Attachment> {
    let tap = device(node, &req.tap, "tap").await?;
    let parent = parent::parent_link(node, &req.parent).await?;
    if let Some(r) = records.iter().find(|r| {
        parent::is_nested_host(r)
            && r.tap_ifindex == Some(tap.index)
            && r.vlan == Some(req.vlan)
            && r.qinq == req.qinq
    }) {
        return Err(Error::conflict(format!(
            "VLAN {}{} of tap {} is already attached (as {}, to parent {}, MAC {})",
            req.vlan,
            req.qinq
                .map(|q| format!(" (in S-tag {q})"))
                .unwrap_or_default(),
            tap.name,
            r.ifname,
            r.parent,
            r.mac
        )));
    }
    if let Some(r) = records
        .iter()
        .find(|r| is_vm_side(r) && r.parent_ifindex == tap.index)
    {
        return Err(Error::conflict(format!(
            "{} is the uplink of nested container {} in {:?} on this node: not a tap",
            tap.name, r.ifname, r.netns
        )));
    }
    let on_parent: Vec<&Attachment> = records
        .iter()
        .filter(|r| r.parent_ifindex == parent.index)
        .collect();
    if let Some(p) = on_parent.iter().find(|r| r.is_mode(Mode::Passthru)) {
        return Err(Error::conflict(format!(
            "parent {} is taken by a passthru endpoint ({} in {:?})",
            parent.name, p.ifname, p.netns
        )));
    }
    if req.mac == parent.mac {
        return Err(Error::conflict(format!(
            "MAC {} is the address of parent {} itself",
            req.mac, parent.name
        )));
    }
    if let Some(r) = on_parent.iter().find(|r| r.mac == req.mac) {
        return Err(Error::conflict(format!(
            "MAC {} is already used on parent {} by {} {}",
            req.mac,
            parent.name,
            if r.netns.is_empty() {
                r.tap.clone().unwrap_or_default()
            } else {
                format!("{:?}", r.netns)
            },
            r.ifname
        )));
    }
    common::check_addresses_free(node, &parent, &req.ips, &on_parent).await?;
    // The switch of a parent has one receive path: join the one its
    // macvlan endpoints use.
    let datapath = on_parent
        .iter()
        .find(|r| r.kind == Kind::Macvlan && r.is_ebpf())
        .and_then(|r| r.datapath)
        .unwrap_or(DatapathKind::Tc);
    Ok(Attachment {
        mode: Some(req.mode.into()),
        backend: Backend::Ebpf,
        datapath: Some(datapath),
        parent: parent.name.clone(),
        parent_ifindex: parent.index,
        mac: req.mac,
        ips: req.ips.clone(),
        mtu: tap.mtu,
        host_access: req.host_access,
        spoofchk: req.spoofchk.unwrap_or(true),
        role: Some(NestedRole::Host),
        vlan: Some(req.vlan),
        qinq: req.qinq,
        keep_tag: req.keep_tag,
        tap: Some(tap.name.clone()),
        tap_ifindex: Some(tap.index),
        ..Attachment::new(Kind::Nested, &req.ifname())
    })
}

/// The in-VM datapath's view of a VM-side record.
fn vm_port_of(rec: &Attachment) -> Option<NestedEp> {
    let mut flags = 0;
    if rec.spoofchk {
        flags |= EP_F_SPOOFCHK;
        if !rec.ips.is_empty() {
            flags |= EP_F_IPCHK;
        }
    }
    Some(NestedEp {
        ep: Endpoint {
            host_ifindex: rec.host_ifindex?,
            parent_ifindex: rec.parent_ifindex,
            id: rec.endpoint_id?,
            mac: rec.mac.0,
            mode: 0,
            flags,
        },
        vid: rec.vlan?,
        outer: rec.qinq.unwrap_or(0),
        flags: 0,
        _pad: [0; 3],
    })
}

fn host_nested_of(rec: &Attachment) -> Option<NestedEp> {
    Some(NestedEp {
        ep: parent::nested_host_endpoint_of(rec)?,
        vid: rec.vlan?,
        outer: rec.qinq.unwrap_or(0),
        flags: NEST_F_HOST | if rec.keep_tag { NEST_F_KEEP_TAG } else { 0 },
        _pad: [0; 3],
    })
}

/// Makes either side. On error, `rec` says what was made so far.
pub async fn create(
    node: &Node,
    rec: &mut Attachment,
    ns: &Netns,
    records: &[Attachment],
) -> Result<()> {
    if parent::is_nested_host(rec) {
        return create_host(node, rec, records).await;
    }
    endpoint::create_veth(node, rec, ns).await?;
    let host_index = rec.host_ifindex.expect("set by create_veth");
    let mut dp = node.datapath()?;
    rec.endpoint_id = Some(common::free_endpoint_id(records)?);
    let n = vm_port_of(rec).expect("ids are set");
    dp.zero_stats(n.ep.id)?;
    if rec.spoofchk {
        dp.put_endpoint_ips(host_index, &addrs(rec))?;
    }
    dp.put_nest_port(&n)?;
    dp.attach_tc(
        PROG_NEST_TX,
        host_index,
        TcAttachType::Ingress,
        &datapath::port_link(host_index),
    )
    .context("attaching the nested transmit program")?;
    dp.put_nest_vlan(&key_of(rec.parent_ifindex, rec.qinq, n.vid), &n)?;
    // Before any other program of the uplink: this one passes on what is
    // not its VLANs'.
    dp.attach_tc_first(
        PROG_NEST_RX,
        rec.parent_ifindex,
        TcAttachType::Ingress,
        &datapath::nested_uplink_link(rec.parent_ifindex),
    )
    .with_context(|| format!("attaching the nested receive program to {}", rec.parent))?;
    endpoint::host_up(node, rec).await?;
    inside::announce(ns, rec);
    Ok(())
}

async fn create_host(node: &Node, rec: &mut Attachment, records: &[Attachment]) -> Result<()> {
    // By name: a recreation (reconcile) follows a VM whose tap came back
    // with another index.
    let tap_name = rec.tap.clone().unwrap_or_default();
    rec.tap_ifindex = Some(device(node, &tap_name, "tap").await?.index);
    let mut dp = node.datapath()?;
    rec.endpoint_id = Some(common::free_endpoint_id(records)?);
    let n = host_nested_of(rec).expect("ids are set");
    let tap = n.ep.host_ifindex;
    dp.zero_stats(n.ep.id)?;
    if rec.spoofchk {
        dp.put_endpoint_ips(n.ep.ip_owner(), &addrs(rec))?;
    }
    dp.put_nest_id(&n)?;
    dp.put_rx_endpoint(&n.ep)?;
    node.rtnl
        .fdb_self_add(rec.parent_ifindex, rec.mac)
        .await
        .with_context(|| format!("adding {} to the unicast filter of {}", rec.mac, rec.parent))?;
    let mut with_this: Vec<Attachment> = records.to_vec();
    with_this.push(rec.clone());
    rec.xdp_mode = parent::setup_parent(node, &mut dp, rec, &with_this).await?;
    // Last: the tap's frames are switched from here on.
    dp.put_nest_vlan(&key_of(tap, rec.qinq, n.vid), &n)?;
    dp.attach_tc_first(
        PROG_NEST_TAP,
        tap,
        TcAttachType::Ingress,
        &datapath::tap_link(tap),
    )
    .with_context(|| {
        format!(
            "attaching the nested program to tap {}",
            rec.tap.as_deref().unwrap_or("?")
        )
    })?;
    Ok(())
}

/// Removes whatever of `rec` exists, continuing past failures.
pub async fn teardown(node: &Node, rec: &Attachment, remaining: &[Attachment]) -> Vec<Error> {
    let mut errors = Vec::new();
    if parent::is_nested_host(rec) {
        if rec.endpoint_id.is_some() {
            if let Err(e) = teardown_host(node, rec, remaining) {
                errors.push(e);
            }
            if let Err(e) = node.rtnl.fdb_self_del(rec.parent_ifindex, rec.mac).await {
                errors.push(e);
            }
        }
        return errors;
    }
    if (rec.host_ifindex.is_some() || rec.endpoint_id.is_some())
        && let Err(e) = teardown_vm(node, rec, remaining)
    {
        errors.push(e);
    }
    if let Err(e) = endpoint::delete_veth(node, rec).await {
        errors.push(e);
    }
    errors
}

fn teardown_vm(node: &Node, rec: &Attachment, remaining: &[Attachment]) -> Result<()> {
    let mut dp = node.datapath()?;
    if let (Some(id), Some(vid)) = (rec.endpoint_id, rec.vlan) {
        dp.remove_nest_vlan(&key_of(rec.parent_ifindex, rec.qinq, vid), id)?;
    }
    if let Some(h) = rec.host_ifindex {
        dp.remove_nest_port(h)?;
        dp.remove_endpoint_ips(h, &addrs(rec))?;
        dp.unpin(&datapath::port_link(h))?;
    }
    let up = rec.parent_ifindex;
    if !remaining
        .iter()
        .any(|r| is_vm_side(r) && r.is_ebpf() && r.parent_ifindex == up)
    {
        dp.unpin(&datapath::nested_uplink_link(up))?;
    }
    Ok(())
}

fn teardown_host(node: &Node, rec: &Attachment, remaining: &[Attachment]) -> Result<()> {
    let mut dp = node.datapath()?;
    let (Some(id), Some(tap), Some(vid)) = (rec.endpoint_id, rec.tap_ifindex, rec.vlan) else {
        return Ok(());
    };
    // The tap's frames first: none is switched as this endpoint any more.
    dp.remove_nest_vlan(&key_of(tap, rec.qinq, vid), id)?;
    if !remaining
        .iter()
        .any(|r| parent::is_nested_host(r) && r.is_ebpf() && r.tap_ifindex == Some(tap))
    {
        dp.unpin(&datapath::tap_link(tap))?;
    }
    dp.remove_rx_endpoint(rec.parent_ifindex, rec.mac.0, id)?;
    let owner = Endpoint {
        id,
        flags: EP_F_NESTED,
        ..Default::default()
    }
    .ip_owner();
    dp.remove_endpoint_ips(owner, &addrs(rec))?;
    parent::release_parent(&mut dp, rec, remaining)?;
    dp.remove_nest_id(id)
}

/// Either side against reality: links, map entries, programs.
pub async fn check(node: &Node, rec: &Attachment) -> Result<()> {
    let mut dp;
    if parent::is_nested_host(rec) {
        endpoint::check_link(node, rec.tap_ifindex, rec.tap.as_deref(), "tap").await?;
        dp = node.datapath()?;
        let want =
            host_nested_of(rec).ok_or_else(|| Error::system("the record has no endpoint id"))?;
        let tap = want.ep.host_ifindex;
        if dp.nest_vlan(&key_of(tap, rec.qinq, want.vid))? != Some(want) {
            return Err(Error::system(format!(
                "VLAN {} of tap {} is missing from the nested table",
                rec.ifname,
                rec.tap.as_deref().unwrap_or("?")
            )));
        }
        if dp.nest_id(want.ep.id)? != Some(want) {
            return Err(Error::system(format!(
                "the tags of endpoint {} are missing",
                want.ep.id
            )));
        }
        common::check_rx_entry(&mut dp, rec, |e| e.id == want.ep.id)?;
        if rec.spoofchk && !dp.has_endpoint_ips(want.ep.ip_owner(), &addrs(rec))? {
            return Err(Error::system(format!(
                "the source addresses of {} are missing from the anti-spoofing table",
                rec.ifname
            )));
        }
        if dp.parent(rec.parent_ifindex)?.is_none() {
            return Err(Error::system(format!(
                "parent {} is missing from the datapath",
                rec.parent
            )));
        }
        parent::check_parent_tc(&mut dp, rec)?;
        let [_, _, xdp] = datapath::parent_links(rec.parent_ifindex);
        if rec.datapath == Some(DatapathKind::Xdp) && !dp.has_link(&xdp) {
            return Err(Error::system(format!(
                "the XDP program of {} is not attached",
                rec.parent
            )));
        }
        return dp.check_tcx(
            PROG_NEST_TAP,
            &datapath::tap_link(tap),
            tap,
            TcAttachType::Ingress,
            "tap",
        );
    }
    common::check_container_side(rec).await?;
    endpoint::check_host_link(node, rec).await?;
    dp = node.datapath()?;
    let want = vm_port_of(rec).ok_or_else(|| Error::system("the record has no endpoint id"))?;
    let h = want.ep.host_ifindex;
    if dp.nest_port(h)? != Some(want) {
        return Err(Error::system(format!(
            "the nested port entry of {} is missing or stale",
            rec.host_ifname.as_deref().unwrap_or("?")
        )));
    }
    if dp.nest_vlan(&key_of(rec.parent_ifindex, rec.qinq, want.vid))? != Some(want) {
        return Err(Error::system(format!(
            "VLAN {} of uplink {} is missing from the nested table",
            vlan_ifname(rec.qinq, want.vid),
            rec.parent
        )));
    }
    if rec.spoofchk && !dp.has_endpoint_ips(h, &addrs(rec))? {
        return Err(Error::system(
            "the source addresses are missing from the anti-spoofing table",
        ));
    }
    dp.check_tcx(
        PROG_NEST_TX,
        &datapath::port_link(h),
        h,
        TcAttachType::Ingress,
        "nested transmit",
    )?;
    dp.check_tcx(
        PROG_NEST_RX,
        &datapath::nested_uplink_link(rec.parent_ifindex),
        rec.parent_ifindex,
        TcAttachType::Ingress,
        "nested receive",
    )
}

/// Puts the datapath state back as the record says; links are left as
/// they are.
pub async fn repair(node: &Node, rec: &Attachment, others: &[Attachment]) -> Result<()> {
    let mut dp = node.datapath()?;
    if parent::is_nested_host(rec) {
        let n =
            host_nested_of(rec).ok_or_else(|| Error::system("the record has no endpoint id"))?;
        let tap = n.ep.host_ifindex;
        if rec.spoofchk {
            dp.put_endpoint_ips(n.ep.ip_owner(), &addrs(rec))?;
        }
        dp.put_nest_id(&n)?;
        dp.put_rx_endpoint(&n.ep)?;
        node.rtnl.fdb_self_add(rec.parent_ifindex, rec.mac).await?;
        let mut all = others.to_vec();
        all.push(rec.clone());
        parent::setup_parent(node, &mut dp, rec, &all).await?;
        dp.put_nest_vlan(&key_of(tap, rec.qinq, n.vid), &n)?;
        dp.attach_tc_first(
            PROG_NEST_TAP,
            tap,
            TcAttachType::Ingress,
            &datapath::tap_link(tap),
        )?;
        return Ok(());
    }
    let n = vm_port_of(rec).ok_or_else(|| Error::system("the record has no endpoint id"))?;
    let h = n.ep.host_ifindex;
    if rec.spoofchk {
        dp.put_endpoint_ips(h, &addrs(rec))?;
    }
    dp.put_nest_port(&n)?;
    dp.attach_tc(
        PROG_NEST_TX,
        h,
        TcAttachType::Ingress,
        &datapath::port_link(h),
    )?;
    dp.put_nest_vlan(&key_of(rec.parent_ifindex, rec.qinq, n.vid), &n)?;
    dp.attach_tc_first(
        PROG_NEST_RX,
        rec.parent_ifindex,
        TcAttachType::Ingress,
        &datapath::nested_uplink_link(rec.parent_ifindex),
    )?;
    endpoint::host_up(node, rec).await
}

/// See [`super::links`].
pub fn links(rec: &Attachment) -> Vec<(&'static str, String)> {
    if !rec.is_ebpf() {
        return Vec::new();
    }
    if parent::is_nested_host(rec) {
        let mut out = parent::parent_hooks(rec);
        if let Some(t) = rec.tap_ifindex {
            out.push((PROG_NEST_TAP, datapath::tap_link(t)));
        }
        return out;
    }
    let mut out = vec![(
        PROG_NEST_RX,
        datapath::nested_uplink_link(rec.parent_ifindex),
    )];
    if let Some(h) = rec.host_ifindex {
        out.push((PROG_NEST_TX, datapath::port_link(h)));
    }
    out
}
