//! ipvlan attachments: eBPF (the default, and the only one where the
//! kernel has no ipvlan driver) or the kernel's driver (`--backend native`,
//! see `ipvlan_native.rs`).
//!
//! Every eBPF endpoint gets a veth whose container side carries the parent's
//! MAC; `attach_ipvl_rx` on the parent demuxes by destination IP and
//! `attach_ipvl_tx` on the host side applies the port's transmit rules
//! (see `attach-ebpf/src/ipvlan.rs`). Mode and flag belong to the parent's
//! port, as in the kernel: every ipvlan endpoint of a parent shares them.
//!
//! How the node serves l3/l3s endpoints (the kernel leaves it to an
//! upstream router, which must route the containers' addresses to the
//! node): `attach_ipvl_rx` answers ARP requests and neighbour solicitations
//! from other hosts for an endpoint's address with the parent's MAC. That
//! is an eBPF responder rather than kernel proxy ARP/NDP because the
//! kernel's proxies answer only on a forwarding interface with a route out
//! of another one: they would need the node to forward on the parent,
//! which changes what the node does with every other packet it receives
//! there. The answers are given to other hosts only: the node's own
//! requests (the parent's source MAC) get none, so, as with the kernel's
//! ipvlan, the node does not reach its l3 endpoints.
//!
//! Per endpoint the node also gets, on the host-side veth: a host route per
//! address in [`IPVL_ROUTE_TABLE`] (the programs' "is it up" test, see
//! there) with `ignore_routes_with_linkdown`, and forwarding (which
//! `bpf_fib_lookup` needs on the device a lookup is made for, and which l3s
//! needs to route through it). l3s also puts the host side in NOARP with
//! the parent's MAC (it carries routed packets to and from a NOARP
//! endpoint) and one `ip rule` per node: `fwmark DATAPATH_MARK lookup
//! IPVL_ROUTE_TABLE`, which routes the ingress `attach_ipvl_rx` hands to
//! the node's stack to the endpoint.

use std::net::IpAddr;

use attach_common::{
    DATAPATH_MARK, EP_F_DOWN, Endpoint, IPVL_F_PRIVATE, IPVL_F_VEPA, IPVL_MODE_L2, IPVL_MODE_L3,
    IPVL_MODE_L3S, IPVL_ROUTE_TABLE, IPVL_RULE_PRIORITY, IpvlanParent,
};
use aya::programs::TcAttachType;

use super::{common, parent};
use crate::{
    addr::{IpNet, Mac, check_ifname},
    datapath::{self, Datapath, PROG_IPVL_RX, PROG_IPVL_TX},
    endpoint,
    error::{Context as _, Error, Result},
    features::Feature,
    inside,
    kinds::ipvlan_native,
    model::{Attachment, Backend, Datapath as DatapathKind, IpvlanFlag, IpvlanMode, Kind, Mode},
    netlink::LinkChange,
    netns::Netns,
    node::Node,
    parse::{self, de},
    sys,
};

// Everything `attach add ipvlan` takes (its help is the subcommand's, in cli.rs).
#[derive(Clone, Debug, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IpvlanRequest {
    /// The container's network namespace: a name under /run/netns, a path, or a pid.
    #[arg(long, value_name = "NETNS")]
    pub netns: String,
    /// Interface name inside the container.
    #[arg(long, default_value = "eth0")]
    #[serde(default = "de::eth0")]
    pub ifname: String,
    /// Parent device in the node's namespace (the NIC).
    #[arg(long, value_name = "IF")]
    pub parent: String,
    /// ipvlan mode of the parent's port.
    #[arg(long, value_enum, default_value_t = IpvlanMode::L2)]
    #[serde(default)]
    pub mode: IpvlanMode,
    /// Flag of the parent's port (default bridge; private and vepa exclude
    /// each other).
    #[arg(long = "flag", value_enum, value_name = "FLAG")]
    #[serde(rename = "flag", default, deserialize_with = "de::list")]
    pub flags: Vec<IpvlanFlag>,
    /// Address with prefix length, IPv4 or IPv6; at least one, repeat for several.
    #[arg(long = "ip", value_name = "CIDR", value_parser = parse::cidr)]
    #[serde(rename = "ip", default, deserialize_with = "de::list")]
    pub ips: Vec<IpNet>,
    /// Default gateway (needs an address of its family). l3/l3s without
    /// one: a default route through the interface.
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
    /// ebpf: our programs; native: the kernel's ipvlan driver (where the
    /// kernel has it: see `attach features`).
    #[arg(long, value_enum, default_value_t = Backend::Ebpf)]
    #[serde(default)]
    pub backend: Backend,
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

impl IpvlanRequest {
    /// Checks what can be checked without looking at the system.
    pub fn validate(&self) -> Result<()> {
        check_ifname(&self.ifname)?;
        check_ifname(&self.parent).map_err(|e| e.context("--parent"))?;
        self.flag()?;
        if self.dhcp && self.mode != IpvlanMode::L2 {
            return Err(Error::invalid(format!(
                "--dhcp needs ipvlan mode l2, not {}: in l3 modes the parent neither \
                 sends nor takes the broadcasts DHCP relies on",
                Mode::from(self.mode).name()
            )));
        }
        if self.ips.is_empty() && !self.dhcp {
            return Err(Error::invalid(
                "ipvlan needs at least one --ip (or --dhcp): its endpoints share the parent's MAC and are told apart by address",
            ));
        }
        super::addressing::check_addressing(&self.ips, self.gateway, self.mtu)?;
        super::addressing::check_dhcp(self.dhcp, &self.ips, self.gateway)
    }

    /// The one flag the request gives (bridge if none).
    pub fn flag(&self) -> Result<IpvlanFlag> {
        let mut flag: Option<IpvlanFlag> = None;
        for &f in &self.flags {
            match flag {
                Some(g) if g != f => {
                    let both = [g, f];
                    return Err(Error::invalid(
                        if both.contains(&IpvlanFlag::Private) && both.contains(&IpvlanFlag::Vepa) {
                            "--flag private and --flag vepa exclude each other (the kernel refuses both)".to_owned()
                        } else {
                            format!(
                                "--flag {} and --flag {} exclude each other: give one",
                                g.name(),
                                f.name()
                            )
                        },
                    ));
                }
                _ => flag = Some(f),
            }
        }
        Ok(flag.unwrap_or_default())
    }
}

const fn mode_bit(m: Mode) -> u8 {
    match m {
        Mode::L3 => IPVL_MODE_L3,
        Mode::L3s => IPVL_MODE_L3S,
        _ => IPVL_MODE_L2,
    }
}

const fn flag_bits(f: IpvlanFlag) -> u8 {
    match f {
        IpvlanFlag::Bridge => 0,
        IpvlanFlag::Private => IPVL_F_PRIVATE,
        IpvlanFlag::Vepa => IPVL_F_VEPA,
    }
}

fn is_ipvlan_ebpf_on(r: &Attachment, parent_ifindex: u32) -> bool {
    r.kind == Kind::Ipvlan && r.backend == Backend::Ebpf && r.parent_ifindex == parent_ifindex
}

/// Checks the request against the system and the other attachments, and
/// returns the record to create. Nothing is changed yet.
pub async fn plan(
    node: &Node,
    req: &IpvlanRequest,
    ns: &Netns,
    records: &[Attachment],
) -> Result<Attachment> {
    let flag = req.flag()?;
    let mode: Mode = req.mode.into();
    let parent = parent::parent_link(node, &req.parent).await?;
    parent::check_not_uplink(&parent.name, false, records)?;
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
    // The kernel's ipvlan takes the parent's receive handler: it shares the
    // parent with no other driver and no eBPF endpoint.
    let native = req.backend == Backend::Native;
    if let Some(o) = on_parent.iter().find(|r| {
        let native_ipvlan = r.kind == Kind::Ipvlan && r.backend == Backend::Native;
        native != native_ipvlan
    }) {
        return Err(Error::conflict(format!(
            "parent {} serves {} {} endpoint {} in {:?}: a kernel ipvlan port shares its parent \
             with no other backend or kind",
            parent.name,
            o.backend.name(),
            o.kind.name(),
            o.ifname,
            o.netns
        )));
    }
    if let Some(o) = on_parent
        .iter()
        .find(|r| r.kind == Kind::Ipvlan && (r.mode != Some(mode) || r.flag != Some(flag)))
    {
        return Err(Error::conflict(format!(
            "parent {} is an ipvlan {} port with flag {} (for {} in {:?}), not {} {}: mode and flag belong to the parent",
            parent.name,
            o.mode_name(),
            o.flag.map_or("?", IpvlanFlag::name),
            o.ifname,
            o.netns,
            mode.name(),
            flag.name()
        )));
    }
    if !native {
        let members = on_parent
            .iter()
            .filter(|r| is_ipvlan_ebpf_on(r, parent.index))
            .count();
        parent::check_row_room(&format!("the ipvlan port of {}", parent.name), members)?;
    }
    common::check_addresses_free(node, &parent, &req.ips, &on_parent).await?;
    Ok(Attachment {
        mode: Some(mode),
        flag: Some(flag),
        backend: req.backend,
        datapath: (!native).then_some(DatapathKind::Tc),
        parent: parent.name.clone(),
        parent_ifindex: parent.index,
        mac: parent.mac,
        ips: req.ips.clone(),
        gateway: req.gateway,
        mtu,
        ..Attachment::new(Kind::Ipvlan, &req.ifname).in_netns(&req.netns, ns)
    })
}

/// The datapath's view of an attachment.
fn endpoint_of(rec: &Attachment) -> Option<Endpoint> {
    Some(Endpoint {
        host_ifindex: rec.host_ifindex?,
        parent_ifindex: rec.parent_ifindex,
        id: rec.endpoint_id?,
        mac: rec.mac.0,
        mode: mode_bit(rec.mode?),
        // The port's flag (private, vepa) lives in its `IpvlanParent`;
        // an endpoint's flags are `EP_F_*` bits, which the `IPVL_F_*`
        // values would alias (private as down, vepa as router).
        flags: 0,
    })
}

/// The endpoint as the datapath should have it now: down (`EP_F_DOWN`)
/// while its host side has no carrier, i.e. its container side is down.
/// Kernels whose `bpf_fib_lookup` cannot name a table (before 6.8) read
/// this flag where newer ones ask the FIB (see `is_up` in the programs);
/// the agent's link watch and `reconcile` keep it.
async fn live_endpoint(node: &Node, rec: &Attachment) -> Result<Endpoint> {
    let mut ep = endpoint_of(rec).ok_or_else(|| Error::system("the record has no endpoint id"))?;
    let carrier = node
        .rtnl
        .link_by_index(ep.host_ifindex)
        .await?
        .is_none_or(|l| l.carrier);
    if !carrier {
        ep.flags |= EP_F_DOWN;
    }
    Ok(ep)
}

/// Makes the attachment. On error, `rec` says what was made so far, for
/// `teardown` to undo.
pub async fn create(
    node: &Node,
    rec: &mut Attachment,
    ns: &Netns,
    records: &[Attachment],
) -> Result<()> {
    if rec.backend == Backend::Native {
        return ipvlan_native::create(node, rec, ns).await;
    }
    let c = endpoint::create_veth(node, rec, ns).await?;
    let l3 = !rec.is_mode(Mode::L2);
    let l3s = rec.is_mode(Mode::L3s);
    let index = rec.ifindex.expect("set by create_veth");
    if l3 {
        // Every l3 slave is NOARP: its neighbours are the link itself.
        c.set_link(
            index,
            &LinkChange {
                arp: Some(false),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("turning ARP off on {}", rec.ifname))?;
        if rec.gateway.is_none() {
            for v6 in [false, true] {
                if rec.ips.iter().any(|n| n.addr.is_ipv6() == v6) {
                    c.add_default_dev_route(index, v6)
                        .await
                        .with_context(|| format!("adding a default route via {}", rec.ifname))?;
                }
            }
        }
    }
    let host = rec.host_ifname.clone().expect("set by create_veth");
    let host_index = rec.host_ifindex.expect("set by create_veth");
    prepare_host_side(node, &host, host_index, rec.mac, l3s).await?;
    if l3s && !Feature::ForceForwarding.present() {
        // The node routes l3s IPv6 through the host side: without
        // force_forwarding only the node's own forwarding lets it.
        let v6: Vec<IpNet> = rec
            .ips
            .iter()
            .filter(|n| n.addr.is_ipv6())
            .copied()
            .collect();
        rec.forwarding_enabled = common::enable_forwarding(&v6, "ipvlan l3s endpoints")?;
    }

    let mut dp = node.datapath_for(rec)?;
    rec.endpoint_id = Some(common::free_endpoint_id(records)?);
    let ep = endpoint_of(rec).expect("ids are set");
    dp.zero_stats(ep.id)?;
    dp.put_port(&ep)?;
    dp.attach_tc(
        PROG_IPVL_TX,
        host_index,
        TcAttachType::Ingress,
        &datapath::port_link(host_index),
    )
    .context("attaching the ipvlan transmit program")?;

    let mut all: Vec<Attachment> = records.to_vec();
    all.push(rec.clone());
    let slot = match dp.ipvlan_parent(rec.parent_ifindex)? {
        Some(p) => p.slot,
        None => dp.free_flood_slot()?,
    };
    write_port(&mut dp, rec, slot, &all, Some(true))?;
    // Before the macvlan program: this one passes on what is not its own.
    dp.attach_tc_first(
        PROG_IPVL_RX,
        rec.parent_ifindex,
        TcAttachType::Ingress,
        &datapath::ipvlan_parent_link(rec.parent_ifindex),
    )
    .with_context(|| format!("attaching the ipvlan receive program to {}", rec.parent))?;

    endpoint::host_up(node, rec).await?;
    sync_host_routes(node, rec).await?;
    if l3s {
        for v6 in [false, true] {
            node.rtnl
                .add_fwmark_rule(v6, DATAPATH_MARK, IPVL_ROUTE_TABLE, IPVL_RULE_PRIORITY)
                .await
                .context("adding the l3s routing rule")?;
        }
    }
    // Last: the addresses make the endpoint reachable.
    for ip in &rec.ips {
        dp.put_ip(ip.addr, &ep)?;
    }
    if !l3 {
        inside::announce(ns, rec);
    }
    Ok(())
}

/// The host-side veth as the ipvlan programs need it (see the module doc).
async fn prepare_host_side(
    node: &Node,
    host: &str,
    index: u32,
    parent_mac: Mac,
    l3s: bool,
) -> Result<()> {
    for (key, value) in [
        ("ipv4.conf.{}.forwarding", "1"),
        ("ipv4.conf.{}.ignore_routes_with_linkdown", "1"),
        ("ipv4.conf.{}.rp_filter", "0"),
        // No link-local address (and so nothing it would send) once on.
        ("ipv6.conf.{}.addr_gen_mode", "1"),
        ("ipv6.conf.{}.accept_ra", "0"),
        ("ipv6.conf.{}.forwarding", "1"),
        ("ipv6.conf.{}.ignore_routes_with_linkdown", "1"),
        ("ipv6.conf.{}.disable_ipv6", "0"),
    ] {
        sys::sysctl_set(&format!("net.{}", key.replace("{}", host)), value)?;
    }
    // IPv6 forwarding from this device alone (6.17); before it, l3s needs
    // the node's (see `create`).
    if Feature::ForceForwarding.present() {
        sys::sysctl_set(&format!("net.ipv6.conf.{host}.force_forwarding"), "1")?;
    }
    if l3s {
        node.rtnl
            .set_link(
                index,
                &LinkChange {
                    mac: Some(parent_mac),
                    arp: Some(false),
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("preparing {host} for l3s"))?;
    }
    Ok(())
}

/// Writes the parent's ipvlan flood row, then its port (which publishes the
/// row), from the ipvlan endpoints of the parent in `all`.
/// Writes every ipvlan port's flood row whole from `records`, and
/// publishes its count (rows a build with another flood table made).
pub(crate) fn rewrite_rows(dp: &mut Datapath, records: &[Attachment]) -> Result<()> {
    let mut done: Vec<u32> = Vec::new();
    for rec in records
        .iter()
        .filter(|r| is_ipvlan_ebpf_on(r, r.parent_ifindex))
    {
        if !done.contains(&rec.parent_ifindex) {
            done.push(rec.parent_ifindex);
            if let Some(port) = dp.ipvlan_parent(rec.parent_ifindex)? {
                write_port(dp, rec, port.slot, records, None)?;
            }
        }
    }
    Ok(())
}

/// `joined`: `rec` joined the port (`Some(false)`: left it; `None`: the
/// row is written whole). A join or leave is one write to a row that holds
/// the other endpoints (see [`parent::write_row`]).
fn write_port(
    dp: &mut Datapath,
    rec: &Attachment,
    slot: u32,
    all: &[Attachment],
    joined: Option<bool>,
) -> Result<()> {
    let eps: Vec<Endpoint> = all
        .iter()
        .filter(|r| is_ipvlan_ebpf_on(r, rec.parent_ifindex))
        .filter_map(endpoint_of)
        .collect();
    let now = dp.ipvlan_parent(rec.parent_ifindex)?;
    let now = now.map(|p| (p.slot, p.nports));
    let change = parent::RowChange::of(endpoint_of(rec), joined);
    parent::write_row(dp, now, slot, &eps, change)?;
    dp.put_ipvlan_parent(
        rec.parent_ifindex,
        &IpvlanParent {
            slot,
            nports: eps.len() as u32,
            mac: rec.mac.0,
            mode: mode_bit(rec.mode.unwrap_or(Mode::L2)),
            flags: flag_bits(rec.flag.unwrap_or_default()),
        },
    )
}

/// Removes whatever of `rec` exists, continuing past failures; returns them.
pub async fn teardown(node: &Node, rec: &Attachment, remaining: &[Attachment]) -> Vec<Error> {
    if rec.backend == Backend::Native {
        return ipvlan_native::teardown(rec).await;
    }
    let mut errors = Vec::new();
    if (rec.host_ifindex.is_some() || rec.endpoint_id.is_some())
        && let Err(e) = teardown_datapath(node, rec, remaining)
    {
        errors.push(e);
    }
    if rec.is_mode(Mode::L3s)
        && !remaining
            .iter()
            .any(|r| r.kind == Kind::Ipvlan && r.is_mode(Mode::L3s))
    {
        for v6 in [false, true] {
            if let Err(e) = node.rtnl.del_fwmark_rule(v6, IPVL_RULE_PRIORITY).await {
                errors.push(e.context("removing the l3s routing rule"));
            }
        }
    }
    // The routes go with the veth.
    if let Err(e) = endpoint::delete_veth(node, rec).await {
        errors.push(e);
    }
    errors
}

fn teardown_datapath(node: &Node, rec: &Attachment, remaining: &[Attachment]) -> Result<()> {
    let mut dp = node.datapath_for(rec)?;
    if let Some(h) = rec.host_ifindex {
        for ip in &rec.ips {
            dp.remove_ip(rec.parent_ifindex, ip.addr, h)?;
        }
        dp.remove_port(h)?;
        dp.unpin(&datapath::port_link(h))?;
    }
    let ifindex = rec.parent_ifindex;
    let others = remaining.iter().any(|r| is_ipvlan_ebpf_on(r, ifindex));
    match dp.ipvlan_parent(ifindex)? {
        Some(port) if others => write_port(&mut dp, rec, port.slot, remaining, Some(false)),
        _ => {
            dp.remove_ipvlan_parent(ifindex)?;
            dp.unpin(&datapath::ipvlan_parent_link(ifindex))
        }
    }
}

/// The container side, the host-side veth, the port and address entries,
/// the parent's ipvlan port, and both programs (attached, this build).
pub async fn check(node: &Node, rec: &Attachment) -> Result<()> {
    common::check_container_side(rec).await?;
    if rec.backend == Backend::Native {
        return Ok(());
    }
    let link = endpoint::check_host_link(node, rec).await?;
    let (host_index, host_name) = (link.index, &link.name);
    if link.up {
        let routes = node
            .rtnl
            .routes_via_in(host_index, IPVL_ROUTE_TABLE)
            .await?;
        if let Some(ip) = rec
            .ips
            .iter()
            .find(|ip| !routes.iter().any(|r| r.0 == ip.addr))
        {
            return Err(Error::system(format!(
                "the host route of {} via {host_name} (table {IPVL_ROUTE_TABLE}) is missing",
                ip.addr
            )));
        }
    }
    let want = live_endpoint(node, rec).await?;
    let mut dp = node.datapath_for(rec)?;
    if dp.port(host_index)? != Some(want) {
        return Err(Error::system(format!(
            "the port entry of {host_name} is missing or stale (or its up/down state)"
        )));
    }
    for ip in &rec.ips {
        if dp
            .ip_owner(rec.parent_ifindex, ip.addr)?
            .map(|e| e.host_ifindex)
            != Some(host_index)
        {
            return Err(Error::system(format!(
                "address {} is missing from the ipvlan table of {}",
                ip.addr, rec.parent
            )));
        }
    }
    if dp.ipvlan_parent(rec.parent_ifindex)?.is_none() {
        return Err(Error::system(format!(
            "the ipvlan port of {} is missing",
            rec.parent
        )));
    }
    for (prog, pin, ifindex, what) in [
        (
            PROG_IPVL_TX,
            datapath::port_link(host_index),
            host_index,
            "transmit",
        ),
        (
            PROG_IPVL_RX,
            datapath::ipvlan_parent_link(rec.parent_ifindex),
            rec.parent_ifindex,
            "receive",
        ),
    ] {
        dp.check_tcx(
            prog,
            &pin,
            ifindex,
            TcAttachType::Ingress,
            &format!("ipvlan {what}"),
        )?;
    }
    Ok(())
}

/// Puts the datapath state back as the record says (entries, port,
/// programs); the interface and routes are left as they are.
pub async fn repair(node: &Node, rec: &Attachment, others: &[Attachment]) -> Result<()> {
    if rec.backend == Backend::Native {
        return Err(Error::system("a kernel ipvlan has no datapath to repair"));
    }
    // Up first (or down, following the parent): the entries then say
    // what the carrier says.
    endpoint::host_up(node, rec).await?;
    sync_host_routes(node, rec).await?;
    let ep = live_endpoint(node, rec).await?;
    let mut dp = node.datapath_for(rec)?;
    dp.put_port(&ep)?;
    dp.attach_tc(
        PROG_IPVL_TX,
        ep.host_ifindex,
        TcAttachType::Ingress,
        &datapath::port_link(ep.host_ifindex),
    )?;
    let mut all = others.to_vec();
    all.push(rec.clone());
    let slot = match dp.ipvlan_parent(rec.parent_ifindex)? {
        Some(p) => p.slot,
        None => dp.free_flood_slot()?,
    };
    write_port(&mut dp, rec, slot, &all, Some(true))?;
    dp.attach_tc_first(
        PROG_IPVL_RX,
        rec.parent_ifindex,
        TcAttachType::Ingress,
        &datapath::ipvlan_parent_link(rec.parent_ifindex),
    )?;
    for ip in &rec.ips {
        dp.put_ip(ip.addr, &ep)?;
    }
    Ok(())
}

/// The host routes of the endpoint's addresses in [`IPVL_ROUTE_TABLE`]
/// (the programs' "is it up" test), while its host side is up: a device
/// set down loses its routes (the endpoint following its parent), so they
/// are put back when it comes up.
async fn sync_host_routes(node: &Node, rec: &Attachment) -> Result<()> {
    let (Some(index), Some(host)) = (rec.host_ifindex, &rec.host_ifname) else {
        return Err(Error::system("the record has no host-side interface"));
    };
    if !node.rtnl.link_by_index(index).await?.is_some_and(|l| l.up) {
        return Ok(());
    }
    for ip in &rec.ips {
        node.rtnl
            .add_host_route(index, ip.addr, IPVL_ROUTE_TABLE)
            .await
            .with_context(|| format!("adding the route to {} via {host}", ip.addr))?;
    }
    Ok(())
}

/// See [`super::links`].
pub fn links(rec: &Attachment) -> Vec<(&'static str, String)> {
    if rec.backend == Backend::Native {
        return Vec::new();
    }
    let mut out = vec![(
        PROG_IPVL_RX,
        datapath::ipvlan_parent_link(rec.parent_ifindex),
    )];
    if let Some(h) = rec.host_ifindex {
        out.push((PROG_IPVL_TX, datapath::port_link(h)));
    }
    out
}
