//! macvlan attachments: the eBPF backend (a veth pair switched by our
//! programs) and the native backend (a kernel macvlan device).

mod adopt;
mod resync;

use std::net::IpAddr;

use aya::programs::TcAttachType;

pub(crate) use adopt::adopt_mac;
pub(crate) use resync::{drifted_parents, resync_parents};

use super::{common, parent};
use crate::{
    addr::{IpNet, Mac, check_ifname},
    datapath::{self, PROG_EP_XDP, PROG_HOST, PROG_RX, PROG_TX},
    endpoint,
    error::{Context as _, Error, ErrorKind, Result},
    features::Feature,
    inside,
    model::{Attachment, Backend, Datapath as DatapathKind, Kind, MacvlanMode, Mode, SavedParent},
    naming,
    netlink::{LinkChange, Rtnl, macvlan_mode},
    netns::Netns,
    node::Node,
    parse::{self, de},
    sys,
};

// Everything `attach add macvlan` takes (its help is the subcommand's, in cli.rs).
#[derive(Clone, Debug, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MacvlanRequest {
    /// The container's network namespace: a name under /run/netns, a path, or a pid.
    #[arg(long, value_name = "NETNS")]
    pub netns: String,
    /// Interface name inside the container.
    #[arg(long, default_value = "eth0")]
    #[serde(default = "de::eth0")]
    pub ifname: String,
    /// macvlan mode.
    #[arg(long, value_enum, default_value_t = MacvlanMode::Bridge)]
    #[serde(default)]
    pub mode: MacvlanMode,
    /// Parent device in the node's namespace (the NIC).
    #[arg(long, value_name = "IF")]
    pub parent: String,
    /// MAC address of the interface (random if not given; passthru: the parent's).
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
    /// MTU (default and maximum: the parent's).
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
    /// ebpf: a veth switched by our programs; native: the kernel's macvlan.
    #[arg(long, value_enum, default_value_t = Backend::Ebpf)]
    #[serde(default)]
    pub backend: Backend,
    /// Receive path of the parent (ebpf backend): tc, or xdp for unicast.
    /// Default: tc.
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "de::rx_path")]
    pub datapath: Option<DatapathKind>,
    /// Let the node's own stack on the parent reach this endpoint and back
    /// (native macvlan cannot). ebpf backend only.
    #[arg(long)]
    #[serde(default)]
    pub host_access: bool,
    /// Drop frames the container sends with a source MAC not its own
    /// (ebpf backend; default on).
    #[arg(long, value_parser = parse::on_off())]
    #[serde(default, deserialize_with = "de::on_off")]
    pub spoofchk: Option<bool>,
    /// Attach without first checking that no other host on the wire
    /// answers for --ip (an ARP probe, DAD for IPv6; 60 ms).
    #[arg(long)]
    #[serde(default)]
    pub no_probe: bool,
    /// Take the IPv4 address, gateway, DNS and MTU from a DHCP server on
    /// the wire (instead of --ip); `attach agent` renews the lease.
    #[arg(long)]
    #[serde(default)]
    pub dhcp: bool,
}

impl MacvlanRequest {
    /// Checks what can be checked without looking at the system.
    pub fn validate(&self) -> Result<()> {
        check_ifname(&self.ifname)?;
        check_ifname(&self.parent).map_err(|e| e.context("--parent"))?;
        if let Some(m) = &self.mac {
            m.check_unicast("--mac")?;
        }
        super::addressing::check_addressing(&self.ips, self.gateway, self.mtu)?;
        super::addressing::check_dhcp(self.dhcp, &self.ips, self.gateway)?;
        let native = self.backend == Backend::Native;
        if native && self.datapath.is_some() {
            return Err(Error::invalid(
                "--datapath applies to the ebpf backend only (native macvlan is the kernel driver)",
            ));
        }
        if native && self.host_access {
            return Err(Error::invalid(
                "--host-access needs the ebpf backend: native macvlan cannot reach the node",
            ));
        }
        if native && self.spoofchk == Some(true) {
            return Err(Error::invalid(
                "--spoofchk on needs the ebpf backend: native macvlan has no source check",
            ));
        }
        if self.mode == MacvlanMode::Passthru && self.host_access {
            return Err(Error::invalid(
                "--host-access does not apply to passthru: the endpoint shares the node's MAC on the parent",
            ));
        }
        Ok(())
    }
}

/// Checks the request against the system and the other attachments, and
/// returns the record to create. Nothing is changed yet.
pub async fn plan(
    node: &Node,
    req: &MacvlanRequest,
    ns: &Netns,
    records: &[Attachment],
) -> Result<Attachment> {
    let parent = parent::parent_link(node, &req.parent).await?;
    parent::check_not_uplink(&parent.name, req.backend == Backend::Ebpf, records)?;
    let mtu = parent::mtu_under(&parent, req.mtu)?;
    common::check_ifname_free(ns, &req.netns, &req.ifname).await?;
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
    if req.mode == MacvlanMode::Passthru && !on_parent.is_empty() {
        return Err(Error::conflict(format!(
            "passthru needs parent {} alone, but it carries {} other endpoint(s)",
            parent.name,
            on_parent.len()
        )));
    }
    let mac = match (req.mode, req.mac) {
        (MacvlanMode::Passthru, m) => m.unwrap_or(parent.mac),
        (_, Some(m)) => m,
        (_, None) => Mac::random(),
    };
    if req.mode != MacvlanMode::Passthru {
        if mac == parent.mac {
            return Err(Error::conflict(format!(
                "MAC {mac} is the address of parent {} itself",
                parent.name
            )));
        }
        if let Some(r) = on_parent.iter().find(|r| r.mac == mac) {
            return Err(Error::conflict(format!(
                "MAC {mac} is already used on parent {} by {} in {:?}",
                parent.name, r.ifname, r.netns
            )));
        }
    }
    common::check_addresses_free(node, &parent, &req.ips, &on_parent).await?;
    let ebpf = req.backend == Backend::Ebpf;
    if ebpf {
        parent::check_room(&parent.name, parent.index, records)?;
    }
    let datapath = ebpf.then(|| req.datapath.unwrap_or_default());
    if let Some(dp) = datapath
        && let Some(other) = on_parent
            .iter()
            .find(|r| r.kind == Kind::Macvlan && r.datapath.is_some_and(|d| d != dp))
    {
        return Err(Error::conflict(format!(
            "parent {} uses the {} datapath (for {} in {:?}); its eBPF endpoints share one",
            parent.name,
            other.datapath.map_or("?", |d| d.name()),
            other.ifname,
            other.netns
        )));
    }
    Ok(Attachment {
        mode: Some(req.mode.into()),
        backend: req.backend,
        datapath,
        parent: parent.name.clone(),
        parent_ifindex: parent.index,
        mac,
        ips: req.ips.clone(),
        gateway: req.gateway,
        mtu,
        host_access: req.host_access,
        spoofchk: ebpf && req.spoofchk.unwrap_or(true),
        ..Attachment::new(Kind::Macvlan, &req.ifname).in_netns(&req.netns, ns)
    })
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
        Backend::Ebpf => create_ebpf(node, rec, ns, records).await,
        Backend::Native => create_native(node, rec, ns).await,
    }
}

async fn create_native(node: &Node, rec: &mut Attachment, ns: &Netns) -> Result<()> {
    let tmp = naming::temp_ifname();
    let passthru = rec.is_mode(Mode::Passthru);
    // A passthru macvlan inherits the parent's MAC at creation; a requested
    // one is set afterwards (which sets the parent's, as the kernel does).
    let create_mac = (!passthru).then_some(rec.mac);
    node
        .rtnl
        .add_macvlan(&tmp, rec.parent_ifindex, macvlan_mode(rec.mode_name()), ns, create_mac, rec.mtu)
        .await
        .map_err(|e| match e.kind {
            ErrorKind::Conflict => e.context(format!(
                "creating a macvlan on {} (the parent may already serve another driver, or the MAC {} is taken)",
                rec.parent, rec.mac
            )),
            _ => e.context(format!("creating a macvlan on {}", rec.parent)),
        })?;
    let c = Rtnl::in_netns(ns)?;
    let link = c
        .link_by_name(&tmp)
        .await?
        .ok_or_else(|| Error::system(format!("the new macvlan {tmp} vanished")))?;
    rec.ifindex = Some(link.index);
    if passthru && link.mac != rec.mac {
        c.set_link(
            link.index,
            &LinkChange {
                mac: Some(rec.mac),
                ..Default::default()
            },
        )
        .await
        .context("setting the passthru MAC")?;
    }
    inside::configure(&c, link.index, rec).await?;
    inside::announce(ns, rec);
    Ok(())
}

/// The addresses of an attachment, without prefixes.
fn addrs(rec: &Attachment) -> Vec<IpAddr> {
    rec.ips.iter().map(|n| n.addr).collect()
}

async fn create_ebpf(
    node: &Node,
    rec: &mut Attachment,
    ns: &Netns,
    records: &[Attachment],
) -> Result<()> {
    endpoint::create_veth(node, rec, ns).await?;

    let mut dp = node.datapath_for(rec)?;
    rec.endpoint_id = Some(common::free_endpoint_id(records)?);
    let ep = parent::macvlan_endpoint_of(rec).expect("ids are set");
    dp.zero_stats(ep.id)?;
    dp.put_endpoint_ips(ep.host_ifindex, &addrs(rec))?;
    dp.put_endpoint(&ep)?;
    // On an idle node: the port's and the parent's programs verified at
    // once, not one after another.
    let needs_host = rec.host_access || parent::parent_needs_host(records, rec.parent_ifindex);
    let host = needs_host.then_some(PROG_HOST);
    let progs: Vec<&str> = [PROG_TX, PROG_RX].into_iter().chain(host).collect();
    dp.preload_classifiers(&progs)?;
    dp.hook_new_port(PROG_TX, ep.host_ifindex)
        .context("attaching the transmit program")?;

    if rec.is_mode(Mode::Passthru) {
        take_parent_for_passthru(node, rec).await?;
    } else {
        // Into the parent's unicast filter, as a macvlan's address would be.
        node.rtnl
            .fdb_self_add(rec.parent_ifindex, rec.mac)
            .await
            .with_context(|| {
                format!("adding {} to the unicast filter of {}", rec.mac, rec.parent)
            })?;
    }
    // The node's records and this one, not copied.
    let with_this = records.iter().chain(std::iter::once(&*rec));
    rec.xdp_mode = parent::setup_parent(node, &mut dp, rec, with_this).await?;
    if needs_endpoint_xdp(rec) {
        attach_endpoint_xdp(node, ns, rec)?;
    }

    endpoint::host_up(node, rec).await?;
    if rec.datapath == Some(DatapathKind::Xdp) {
        xdp_receive_offloads(ns, rec)?;
    }
    inside::announce(ns, rec);
    Ok(())
}

/// The container side of an XDP endpoint. GRO on: XDP frames redirected
/// into a veth are dropped unless it runs NAPI, which GRO turns on. UDP
/// fraglist GRO (`rx-gro-list`) on: that NAPI pass then chains the
/// datagrams of a flow, which go through the container's IP layer once per
/// batch and are split again before their socket (one without UDP_GRO; TCP
/// to a local socket is coalesced as usual). A kernel macvlan has no NAPI
/// pass of its own to do that in. Without the feature the endpoint works
/// all the same: a warning, not an error.
fn xdp_receive_offloads(ns: &Netns, rec: &Attachment) -> Result<()> {
    let ifname = rec.ifname.clone();
    let gro_list = ns.run(move || {
        sys::set_gro(&ifname, true)?;
        Ok::<_, Error>(sys::set_feature(&ifname, GRO_LIST, true))
    })??;
    if let Err(e) = gro_list {
        tracing::warn!("{e}: UDP datagrams into {} go one by one", rec.ifname);
    }
    Ok(())
}

/// Whether the container side needs an XDP program of its own: before
/// Linux 5.13 a veth runs NAPI (and receives what XDP redirects into it)
/// only with one, GRO does not turn it on.
fn needs_endpoint_xdp(rec: &Attachment) -> bool {
    rec.datapath == Some(DatapathKind::Xdp) && !Feature::VethGroNapi.present()
}

/// Attaches `attach_ep_xdp` (passes all) to the container side.
fn attach_endpoint_xdp(node: &Node, ns: &Netns, rec: &Attachment) -> Result<()> {
    let (Some(host), Some(inside)) = (rec.host_ifindex, rec.ifindex) else {
        return Err(Error::system("the record has no interface indexes"));
    };
    node.datapath_for(rec)?
        .attach_xdp_in(ns, PROG_EP_XDP, inside, &datapath::port_xdp_link(host))
        .map_err(|e| e.context(format!("the container side's NAPI (XDP) in {}", rec.netns)))
}

/// Fraglist GRO's feature name (`ethtool -k`).
const GRO_LIST: &str = "rx-gro-list";

/// Brings an XDP endpoint's container side to this build's settings (see
/// [`xdp_receive_offloads`]; an endpoint attached by an older build lacks
/// fraglist GRO). True if anything was off and is now on. A kernel without
/// fraglist GRO leaves nothing to do.
pub fn upgrade_container_offloads(rec: &Attachment) -> Result<bool> {
    if rec.datapath != Some(DatapathKind::Xdp) {
        return Ok(false);
    }
    let ns = rec.open_netns()?;
    let ifname = rec.ifname.clone();
    let current = ns.run(move || {
        Ok::<_, Error>(sys::gro(&ifname)? && sys::feature(&ifname, GRO_LIST).unwrap_or(true))
    })??;
    if current {
        return Ok(false);
    }
    xdp_receive_offloads(&ns, rec)?;
    Ok(true)
}

/// GRO on an XDP endpoint's container side (see [`xdp_receive_offloads`]).
fn check_xdp_gro(rec: &Attachment) -> Result<()> {
    let ns = rec.open_netns()?;
    let ifname = rec.ifname.clone();
    if !ns.run(move || sys::gro(&ifname))?? {
        return Err(Error::system(format!(
            "GRO is off on {} in {:?}: the XDP frames redirected into it are dropped",
            rec.ifname, rec.netns
        )));
    }
    Ok(())
}

/// Passthru takes the parent over: its MAC (set to the requested one if
/// any) and promiscuous mode, both put back on detach.
async fn take_parent_for_passthru(node: &Node, rec: &mut Attachment) -> Result<()> {
    let parent = node
        .rtnl
        .link_by_index(rec.parent_ifindex)
        .await?
        .ok_or_else(|| Error::not_found(format!("parent {} vanished", rec.parent)))?;
    rec.saved_parent = Some(SavedParent {
        mac: parent.mac,
        promisc: parent.promisc,
    });
    node.rtnl
        .set_link(
            parent.index,
            &LinkChange {
                mac: (parent.mac != rec.mac).then_some(rec.mac),
                promisc: Some(true),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("taking over parent {} for passthru", rec.parent))
}

/// Removes whatever of `rec` exists, continuing past failures; returns them.
/// `remaining` are the node's other attachments. Used by `del` and to roll
/// back a failed `add`.
pub async fn teardown(node: &Node, rec: &Attachment, remaining: &[Attachment]) -> Vec<Error> {
    let mut errors = Vec::new();
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            errors.push(e);
        }
    };
    match rec.backend {
        Backend::Native => {
            if let Some(index) = rec.ifindex {
                note(common::del_in_netns(rec, index).await);
            }
        }
        Backend::Ebpf => {
            // The veth first: its tcx link goes with the device, while
            // unpinning a live link would wait for a grace period of its own.
            // A frame still redirected to the gone device is dropped.
            note(endpoint::delete_veth(node, rec).await);
            if rec.host_ifindex.is_some() || rec.endpoint_id.is_some() {
                note(teardown_datapath(node, rec, remaining).await);
            }
            if !rec.is_mode(Mode::Passthru) && rec.host_ifname.is_some() {
                note(node.rtnl.fdb_self_del(rec.parent_ifindex, rec.mac).await);
            }
            if let Some(saved) = &rec.saved_parent {
                note(
                    node.rtnl
                        .set_link(
                            rec.parent_ifindex,
                            &LinkChange {
                                mac: Some(saved.mac),
                                promisc: Some(saved.promisc),
                                ..Default::default()
                            },
                        )
                        .await
                        .map_err(|e| e.context(format!("restoring parent {}", rec.parent))),
                );
            }
        }
    }
    errors
}

async fn teardown_datapath(node: &Node, rec: &Attachment, remaining: &[Attachment]) -> Result<()> {
    let mut dp = node.datapath_for(rec)?;
    if let Some(h) = rec.host_ifindex {
        dp.remove_endpoint(rec.parent_ifindex, rec.mac.0, h)?;
        dp.remove_endpoint_ips(h, &addrs(rec))?;
        dp.unpin(&datapath::port_link(h))?;
        dp.unpin(&datapath::port_xdp_link(h))?;
    }
    parent::release_parent(&mut dp, rec, remaining)
}

/// The container side, then for eBPF: the host-side veth, the map entries
/// and every program the endpoint relies on.
pub async fn check(node: &Node, rec: &Attachment) -> Result<()> {
    common::check_container_side(rec).await?;
    if rec.backend == Backend::Native {
        return Ok(());
    }
    let link = endpoint::check_host_link(node, rec).await?;
    let (host_index, host_name) = (link.index, &link.name);
    let mut dp = node.datapath_for(rec)?;
    let want = parent::macvlan_endpoint_of(rec)
        .ok_or_else(|| Error::system("the record has no endpoint id"))?;
    if dp.port(host_index)? != Some(want) {
        return Err(Error::system(format!(
            "the port entry of {host_name} is missing or stale"
        )));
    }
    if !dp.has_dev(host_index)? {
        return Err(Error::system(format!(
            "the XDP redirect entry of {host_name} is missing from the device map"
        )));
    }
    if rec.spoofchk && !dp.has_endpoint_ips(host_index, &addrs(rec))? {
        return Err(Error::system(format!(
            "the source addresses of {host_name} are missing from the anti-spoofing table"
        )));
    }
    common::check_rx_entry(&mut dp, rec, |e| e.host_ifindex == host_index)?;
    if dp.parent(rec.parent_ifindex)?.is_none() {
        return Err(Error::system(format!(
            "parent {} is missing from the datapath",
            rec.parent
        )));
    }
    parent::check_parent_tc(&mut dp, rec)?;
    dp.check_tcx(
        PROG_TX,
        &datapath::port_link(host_index),
        host_index,
        TcAttachType::Ingress,
        "transmit",
    )?;
    let [_, _, xdp] = datapath::parent_links(rec.parent_ifindex);
    if needs_endpoint_xdp(rec) {
        let pin = datapath::port_xdp_link(host_index);
        if !dp.has_link(&pin) || !dp.pin_runs_current(PROG_EP_XDP, &pin)? {
            return Err(Error::system(format!(
                "the XDP program of {} in {} is missing or not this build's (its link {pin}): \
                 this kernel drops what the parent redirects into it",
                rec.ifname, rec.netns
            )));
        }
    }
    if rec.datapath == Some(DatapathKind::Xdp) {
        check_xdp_gro(rec)?;
        if !dp.has_link(&xdp) {
            return Err(Error::system(format!(
                "the XDP program of {} is not attached (its link {xdp} is gone): frames take the tc path",
                rec.parent
            )));
        }
        let attached = node
            .rtnl
            .link_by_index(rec.parent_ifindex)
            .await?
            .map(|l| l.xdp_progs)
            .unwrap_or_default();
        if !dp.xdp_alive(&xdp, &attached) {
            return Err(Error::system(format!(
                "the XDP program of {} is not attached (its link {xdp} was detached): frames take the tc path",
                rec.parent
            )));
        }
        if !dp.pin_runs_current(datapath::PROG_RX_XDP, &xdp)? {
            return Err(Error::system(format!(
                "the XDP program of {} is not this build's",
                rec.parent
            )));
        }
    }
    Ok(())
}

/// Puts the datapath state of an eBPF endpoint back as the record says:
/// map entries, flood row, parent config, programs (re-attached, or updated
/// to this build), unicast filter entry, host side up. Idempotent.
pub async fn repair(node: &Node, rec: &Attachment, others: &[Attachment]) -> Result<()> {
    if rec.backend == Backend::Native {
        return Err(Error::system("a native macvlan has no datapath to repair"));
    }
    let mut dp = node.datapath_for(rec)?;
    let ep = parent::macvlan_endpoint_of(rec)
        .ok_or_else(|| Error::system("the record has no endpoint id"))?;
    dp.put_endpoint_ips(ep.host_ifindex, &addrs(rec))?;
    dp.put_endpoint(&ep)?;
    dp.attach_tc(
        PROG_TX,
        ep.host_ifindex,
        TcAttachType::Ingress,
        &datapath::port_link(ep.host_ifindex),
    )?;
    let mut all = others.to_vec();
    all.push(rec.clone());
    parent::setup_parent(node, &mut dp, rec, &all).await?;
    if !rec.is_mode(Mode::Passthru) {
        node.rtnl.fdb_self_add(rec.parent_ifindex, rec.mac).await?;
    }
    if rec.datapath == Some(DatapathKind::Xdp) {
        let ns = rec.open_netns()?;
        xdp_receive_offloads(&ns, rec)?;
        if needs_endpoint_xdp(rec) {
            attach_endpoint_xdp(node, &ns, rec)?;
        }
    }
    endpoint::host_up(node, rec).await
}

/// See [`super::links`].
pub fn links(rec: &Attachment) -> Vec<(&'static str, String)> {
    if !rec.is_ebpf() {
        return Vec::new();
    }
    let mut out = parent::parent_hooks(rec);
    if let Some(h) = rec.host_ifindex {
        out.push((PROG_TX, datapath::port_link(h)));
        if needs_endpoint_xdp(rec) {
            out.push((PROG_EP_XDP, datapath::port_xdp_link(h)));
        }
    }
    out
}
