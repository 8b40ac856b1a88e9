//! The host side of a nested container (`attach add nested-host`): a VLAN
//! of a VM's tap as an endpoint of a parent's switch — planned, made and
//! removed.

use attach_common::{EP_F_NESTED, Endpoint};
use aya::programs::TcAttachType;

use super::super::{common, parent};
use super::common::*;
use crate::{
    addr::{IpNet, Mac, check_ifname},
    datapath::{self, PROG_NEST_TAP},
    error::{Context as _, Error, Result},
    model::{Attachment, Backend, Datapath as DatapathKind, Kind, MacvlanMode, Mode, NestedRole},
    node::Node,
    parse::{self, de},
};

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
        super::super::addressing::check_addressing(&self.ips, None, None)
    }

    /// The record's interface name: the VLAN (inside the S-tag).
    pub fn ifname(&self) -> String {
        vlan_ifname(self.qinq, self.vlan)
    }
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
    parent::check_room(&parent.name, parent.index, records)?;
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

pub(super) async fn create_host(
    node: &Node,
    rec: &mut Attachment,
    records: &[Attachment],
) -> Result<()> {
    // By name: a recreation (reconcile) follows a VM whose tap came back
    // with another index.
    let tap_name = rec.tap.clone().unwrap_or_default();
    rec.tap_ifindex = Some(device(node, &tap_name, "tap").await?.index);
    let mut dp = node.datapath_for(rec)?;
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
    // The node's records and this one, not copied.
    let with_this = records.iter().chain(std::iter::once(&*rec));
    rec.xdp_mode = parent::setup_parent(node, &mut dp, rec, with_this).await?;
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

pub(super) fn teardown_host(node: &Node, rec: &Attachment, remaining: &[Attachment]) -> Result<()> {
    let mut dp = node.datapath_for(rec)?;
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
