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
//! Before it is made, its addresses are probed and its `--dhcp` lease
//! taken on that VLAN of the uplink, in frames tagged as the container's
//! will be (see [`super::probe`], [`super::lease`]).
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

use aya::programs::TcAttachType;

mod common;
mod host_side;

use self::{
    common::{addrs, device, host_nested_of, is_vm_side, key_of, vm_port_of},
    host_side::{create_host, teardown_host},
};
pub use self::{
    common::{check_vlan, tags, vlan_ifname},
    host_side::{NestedHostRequest, plan_host},
};
use super::{common as kinds_common, parent};
use crate::{
    addr::{IpNet, Mac, check_ifname},
    datapath::{self, PROG_NEST_RX, PROG_NEST_TAP, PROG_NEST_TX},
    endpoint,
    error::{Context as _, Error, Result},
    inside,
    model::{Attachment, Backend, Datapath as DatapathKind, Kind, NestedRole},
    netns::Netns,
    node::Node,
    parse::{self, de},
};

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
    /// Limit what reaches the container to this many bits/s (k, M, G:
    /// thousands), dropping the rest (eBPF datapath).
    #[arg(long, value_name = "BITS", value_parser = crate::bandwidth::parse_bits)]
    #[serde(default)]
    pub ingress_rate: Option<u64>,
    /// Bits the ingress limit lets through at once (default: half a second
    /// at the rate, at least 512k).
    #[arg(long, value_name = "BITS", value_parser = crate::bandwidth::parse_bits)]
    #[serde(default)]
    pub ingress_burst: Option<u64>,
    /// Limit what the container sends to this many bits/s (k, M, G:
    /// thousands), dropping the rest (eBPF datapath).
    #[arg(long, value_name = "BITS", value_parser = crate::bandwidth::parse_bits)]
    #[serde(default)]
    pub egress_rate: Option<u64>,
    /// Bits the egress limit lets through at once (default: half a second
    /// at the rate, at least 512k).
    #[arg(long, value_name = "BITS", value_parser = crate::bandwidth::parse_bits)]
    #[serde(default)]
    pub egress_burst: Option<u64>,
    /// Drop frames the container sends with a source MAC or address not its
    /// own (default on).
    #[arg(long, value_parser = parse::on_off())]
    #[serde(default, deserialize_with = "de::on_off")]
    pub spoofchk: Option<bool>,
    /// Attach without first checking that no other host on the VLAN
    /// answers for --ip (an ARP probe, DAD for IPv6, tagged as the
    /// container's frames; 60 ms).
    #[arg(long)]
    #[serde(default)]
    pub no_probe: bool,
    /// Take the IPv4 address, gateway, DNS and MTU from a DHCP server on
    /// the container's VLAN (instead of --ip); `attach agent` renews the
    /// lease. Give --mac too: the host side needs it.
    #[arg(long)]
    #[serde(default)]
    pub dhcp: bool,
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
        super::addressing::check_addressing(&self.ips, self.gateway, self.mtu)?;
        super::addressing::check_dhcp(self.dhcp, &self.ips, self.gateway)
    }
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
    kinds_common::check_ifname_free(ns, &req.netns, &req.ifname).await?;
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
    let mut dp = node.datapath_for(rec)?;
    rec.endpoint_id = Some(kinds_common::free_endpoint_id(records)?);
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
    let mut dp = node.datapath_for(rec)?;
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

/// Either side against reality: links, map entries, programs.
pub async fn check(node: &Node, rec: &Attachment) -> Result<()> {
    let mut dp;
    if parent::is_nested_host(rec) {
        endpoint::check_link(node, rec.tap_ifindex, rec.tap.as_deref(), "tap").await?;
        dp = node.datapath_for(rec)?;
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
        kinds_common::check_rx_entry(&mut dp, rec, |e| e.id == want.ep.id)?;
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
    kinds_common::check_container_side(rec).await?;
    endpoint::check_host_link(node, rec).await?;
    dp = node.datapath_for(rec)?;
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
    let mut dp = node.datapath_for(rec)?;
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
