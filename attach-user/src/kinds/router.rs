//! router attachments: a veth per endpoint and a host route per address,
//! the CNI "ptp" shape.
//!
//! The container gets its addresses and default routes through gateways it
//! can always reach on its link: `169.254.1.1` (IPv4, on-link) and
//! `fe80::1` (IPv6). The node gets a host route (/32, /128) and a
//! permanent neighbour entry (the container's MAC) per address through the
//! host-side veth, so it never has to resolve its endpoints.
//!
//! `--datapath ebpf` (the default): the host-side veth has no address.
//! `attach_rt_tx` on it answers the container's ARP/ND for its gateway (and
//! anything else it takes for on-link) with the veth's MAC, and forwards
//! its packets with `bpf_fib_lookup` in the node's tables: into another
//! router endpoint (`bpf_redirect_peer`, MACs and TTL rewritten) or out of
//! the routed device (`bpf_redirect_neigh`, TTL decremented).
//! `attach_rt_in` on the uplink (`--uplink`, by default the device of the
//! node's default route) pushes what the node routes to an endpoint
//! straight into it. Neither path passes the node's forwarding (its
//! FORWARD hook); the node's own traffic to and from the container, and
//! whatever the fast path leaves (TTL expiring, no route, too big), goes
//! through the stack.
//!
//! `--datapath kernel`: no programs. The host-side veth carries the
//! gateway addresses (`169.254.1.1/32`, `fe80::1/64`) and the node's stack
//! answers and forwards: the slow path, for comparison.
//!
//! Either way the node must forward: the engine turns `net.ipv4.ip_forward`
//! / `net.ipv6.conf.all.forwarding` on in the node when they are off, says
//! so, records it (`forwarding_enabled`) and never turns them off again
//! (other routing may rely on them by then).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use attach_common::{EP_F_IPCHK, EP_F_SPOOFCHK, Endpoint, ROUTER_GW4, ROUTER_GW6, RouterPort};
use aya::programs::TcAttachType;

use super::common;
use crate::{
    addr::{IpNet, Mac, check_ifname},
    datapath::{self, PROG_RT_IN, PROG_RT_TX},
    endpoint,
    error::{Context as _, Error, Result},
    model::{Attachment, Backend, Datapath as DatapathKind, Kind, Mode},
    netlink::{Link, Rtnl},
    netns::Netns,
    node::Node,
    parse::{self, de},
    sys,
};

pub const GW4: Ipv4Addr = Ipv4Addr::new(ROUTER_GW4[0], ROUTER_GW4[1], ROUTER_GW4[2], ROUTER_GW4[3]);
pub const GW6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const _: () = assert!(GW6.octets()[15] == ROUTER_GW6[15] && GW6.octets()[0] == ROUTER_GW6[0]);

// Everything `attach add router` takes (its help is the subcommand's, in cli.rs).
#[derive(Clone, Debug, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RouterRequest {
    /// The container's network namespace: a name under /run/netns, a path, or a pid.
    #[arg(long, value_name = "NETNS")]
    pub netns: String,
    /// Interface name inside the container.
    #[arg(long, default_value = "eth0")]
    #[serde(default = "de::eth0")]
    pub ifname: String,
    /// Address of the endpoint (routed to it as a host route); repeat for
    /// several, IPv4 and/or IPv6.
    #[arg(long = "ip", value_name = "CIDR", value_parser = parse::cidr)]
    #[serde(rename = "ip", default, deserialize_with = "de::list")]
    pub ips: Vec<IpNet>,
    /// MAC address of the interface (random if not given).
    #[arg(long, value_parser = parse::mac)]
    #[serde(default)]
    pub mac: Option<Mac>,
    /// MTU (default: the uplink's, or 1500).
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
    /// Who forwards: our eBPF programs or the node's stack.
    #[arg(long, default_value = "ebpf", value_parser = parse::forwarder())]
    #[serde(default = "de::ebpf", deserialize_with = "de::forwarder")]
    pub datapath: DatapathKind,
    /// The device traffic for the endpoints arrives on (ebpf; default: the
    /// device of the node's default route).
    #[arg(long, value_name = "IF")]
    #[serde(default)]
    pub uplink: Option<String>,
    /// Drop packets the container sends with a source MAC or address not
    /// its own (ebpf; default on).
    #[arg(long, value_parser = parse::on_off())]
    #[serde(default, deserialize_with = "de::on_off")]
    pub spoofchk: Option<bool>,
}

impl RouterRequest {
    /// Checks what can be checked without looking at the system.
    pub fn validate(&self) -> Result<()> {
        check_ifname(&self.ifname)?;
        if let Some(u) = &self.uplink {
            check_ifname(u).map_err(|e| e.context("--uplink"))?;
            if u == "lo" {
                return Err(Error::invalid(
                    "--uplink lo is the loopback device: name the device routed traffic arrives on",
                ));
            }
        }
        if let Some(m) = &self.mac {
            m.check_unicast("--mac")?;
        }
        if self.ips.is_empty() {
            return Err(Error::invalid(
                "router needs at least one --ip: the node routes to the endpoint's addresses",
            ));
        }
        for ip in &self.ips {
            let a = ip.addr;
            let bad = a.is_unspecified()
                || a.is_multicast()
                || a.is_loopback()
                || match a {
                    IpAddr::V4(v4) => v4.is_link_local() || v4.is_broadcast(),
                    IpAddr::V6(v6) => v6.is_unicast_link_local(),
                };
            if bad {
                return Err(Error::invalid(format!(
                    "address {a} cannot be routed to an endpoint (link-local, multicast, loopback or unspecified)"
                )));
            }
        }
        super::addressing::check_addressing(&self.ips, None, self.mtu)?;
        let kernel = self.datapath == DatapathKind::Kernel;
        if kernel && self.uplink.is_some() {
            return Err(Error::invalid(
                "--uplink applies to --datapath ebpf (the kernel datapath routes on every device)",
            ));
        }
        if kernel && self.spoofchk == Some(true) {
            return Err(Error::invalid(
                "--spoofchk on needs --datapath ebpf: the kernel datapath has no source check",
            ));
        }
        if !matches!(self.datapath, DatapathKind::Ebpf | DatapathKind::Kernel) {
            return Err(Error::invalid(format!(
                "--datapath {}: router takes ebpf or kernel",
                self.datapath.name()
            )));
        }
        Ok(())
    }
}

/// The uplink: the one named, else the device of the node's default route.
async fn uplink(node: &Node, name: Option<&str>) -> Result<Link> {
    let link = match name {
        Some(n) => node.rtnl.link_by_name(n).await?.ok_or_else(|| {
            Error::not_found(format!(
                "uplink interface {n:?} not found in the node's network namespace"
            ))
        })?,
        None => {
            let index = node.rtnl.default_route_device().await?.ok_or_else(|| {
                Error::invalid(
                    "the node has no default route to take the uplink from: name the device \
                     routed traffic arrives on with --uplink",
                )
            })?;
            node.rtnl
                .link_by_index(index)
                .await?
                .ok_or_else(|| Error::not_found("the default route's device vanished"))?
        }
    };
    // The loopback device is always ifindex 1 in its namespace.
    if link.index == 1 {
        return Err(Error::invalid(format!(
            "uplink {} is the loopback device: name the device routed traffic arrives on",
            link.name
        )));
    }
    if link.name.starts_with(crate::naming::HOST_IF_PREFIX) {
        return Err(Error::invalid(format!(
            "{} is an endpoint's host-side interface, not an uplink",
            link.name
        )));
    }
    Ok(link)
}

/// Refuses addresses the node or any attachment of it has: a routed
/// address has one owner in the node.
pub(crate) async fn check_addresses_unused(
    node: &Node,
    ips: &[IpNet],
    records: &[Attachment],
) -> Result<()> {
    let mut own = Vec::new();
    for l in node.rtnl.links().await? {
        own.extend(
            node.rtnl
                .addresses(l.index)
                .await?
                .into_iter()
                .map(|a| (a, l.name.clone())),
        );
    }
    for ip in ips {
        if let Some((_, dev)) = own.iter().find(|(a, _)| *a == ip.addr) {
            return Err(Error::conflict(format!(
                "address {} is the node's own (on {dev})",
                ip.addr
            )));
        }
        if let Some(r) = records
            .iter()
            .find(|r| r.ips.iter().any(|o| o.addr == ip.addr))
        {
            return Err(Error::conflict(format!(
                "address {} is already used by {} in {:?} ({})",
                ip.addr,
                r.ifname,
                r.netns,
                r.kind.name()
            )));
        }
    }
    Ok(())
}

/// Checks the request against the system and the other attachments, and
/// returns the record to create. Nothing is changed yet.
pub async fn plan(
    node: &Node,
    req: &RouterRequest,
    ns: &Netns,
    records: &[Attachment],
) -> Result<Attachment> {
    let ebpf = req.datapath == DatapathKind::Ebpf;
    let up = if ebpf {
        Some(uplink(node, req.uplink.as_deref()).await?)
    } else {
        None
    };
    if let Some(u) = &up
        && let Some(p) = records
            .iter()
            .find(|r| r.parent_ifindex == u.index && r.is_mode(Mode::Passthru))
    {
        return Err(Error::conflict(format!(
            "uplink {} is taken by a passthru endpoint ({} in {:?}): it gets the node's traffic",
            u.name, p.ifname, p.netns
        )));
    }
    common::check_ifname_free(ns, &req.netns, &req.ifname).await?;
    check_addresses_unused(node, &req.ips, records).await?;
    let mtu = req.mtu.unwrap_or(up.as_ref().map_or(1500, |u| u.mtu));
    let has_v4 = req.ips.iter().any(|n| n.addr.is_ipv4());
    Ok(Attachment {
        backend: if ebpf { Backend::Ebpf } else { Backend::Native },
        datapath: Some(req.datapath),
        parent: up.as_ref().map(|u| u.name.clone()).unwrap_or_default(),
        parent_ifindex: up.as_ref().map_or(0, |u| u.index),
        mac: req.mac.unwrap_or_else(Mac::random),
        ips: req.ips.clone(),
        gateway: Some(if has_v4 {
            IpAddr::V4(GW4)
        } else {
            IpAddr::V6(GW6)
        }),
        mtu,
        spoofchk: ebpf && req.spoofchk.unwrap_or(true),
        ..Attachment::new(Kind::Router, &req.ifname).in_netns(&req.netns, ns)
    })
}

fn is_ebpf_router(r: &Attachment) -> bool {
    r.kind == Kind::Router && r.is_ebpf()
}

fn addrs(rec: &Attachment) -> Vec<IpAddr> {
    rec.ips.iter().map(|n| n.addr).collect()
}

/// The datapath's view of an attachment.
fn port_of(rec: &Attachment, gw_mac: Mac) -> Option<RouterPort> {
    let mut flags = 0;
    if rec.spoofchk {
        flags |= EP_F_SPOOFCHK | EP_F_IPCHK;
    }
    Some(RouterPort {
        ep: Endpoint {
            host_ifindex: rec.host_ifindex?,
            parent_ifindex: rec.parent_ifindex,
            id: rec.endpoint_id?,
            mac: rec.mac.0,
            mode: 0,
            flags,
        },
        gw_mac: gw_mac.0,
        _pad: [0; 2],
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
    // The container's routes go through link-local gateways: added below,
    // not by the generic configuration (which needs an on-subnet gateway).
    let gateway = rec.gateway.take();
    let made = endpoint::create_veth(node, rec, ns).await;
    rec.gateway = gateway;
    let c = made?;
    let index = rec.ifindex.expect("set by create_veth");
    add_container_routes(&c, rec, index).await?;
    let host = rec.host_ifname.clone().expect("set by create_veth");
    let host_index = rec.host_ifindex.expect("set by create_veth");
    prepare_host_side(&host)?;

    if rec.backend == Backend::Ebpf {
        let mut dp = node.datapath_for(rec)?;
        rec.endpoint_id = Some(common::free_endpoint_id(records)?);
        let gw_mac = host_mac(node, host_index).await?;
        let port = port_of(rec, gw_mac).expect("ids are set");
        dp.zero_stats(port.ep.id)?;
        if rec.spoofchk {
            dp.put_endpoint_ips(host_index, &addrs(rec))?;
        }
        dp.put_router_port(&port)?;
        dp.attach_tc(
            PROG_RT_TX,
            host_index,
            TcAttachType::Ingress,
            &datapath::port_link(host_index),
        )
        .context("attaching the router transmit program")?;
        dp.attach_tc(
            PROG_RT_IN,
            rec.parent_ifindex,
            TcAttachType::Ingress,
            &datapath::router_uplink_link(rec.parent_ifindex),
        )
        .with_context(|| format!("attaching the router program to uplink {}", rec.parent))?;
    } else {
        add_gateway_addresses(node, rec, host_index).await?;
    }
    endpoint::host_up(node, rec).await?;
    add_node_routes(node, rec, host_index).await?;
    // Last, so that a failed add leaves the node's forwarding as it was.
    rec.forwarding_enabled = common::enable_forwarding(&rec.ips, "router endpoints")?;
    Ok(())
}

/// `default via 169.254.1.1 dev IF onlink`, `default via fe80::1 dev IF`,
/// and no route to the addresses' prefixes on the link: as with CNI's ptp,
/// every destination, on-link or not, goes through the gateway (the node
/// routes between endpoints; kernel datapath included, which answers only
/// for its gateway addresses).
async fn add_container_routes(c: &Rtnl, rec: &Attachment, index: u32) -> Result<()> {
    for ip in &rec.ips {
        if ip.prefix < IpNet::max_prefix(&ip.addr) {
            c.del_prefix_route(index, ip)
                .await
                .with_context(|| format!("removing the on-link route of {ip} in the container"))?;
        }
    }
    for (v6, gw) in [(false, IpAddr::V4(GW4)), (true, IpAddr::V6(GW6))] {
        if rec.ips.iter().any(|n| n.addr.is_ipv6() == v6) {
            c.add_default_route_onlink(index, gw)
                .await
                .with_context(|| format!("adding the default route via {gw} in the container"))?;
        }
    }
    Ok(())
}

/// The host side routes: IPv6 on (without a link-local address of its
/// own), forwarding on, no router advertisements taken.
fn prepare_host_side(host: &str) -> Result<()> {
    for (key, value) in [
        ("ipv4.conf.{}.forwarding", "1"),
        ("ipv6.conf.{}.addr_gen_mode", "1"),
        ("ipv6.conf.{}.accept_ra", "0"),
        ("ipv6.conf.{}.forwarding", "1"),
        ("ipv6.conf.{}.disable_ipv6", "0"),
    ] {
        sys::sysctl_set(&format!("net.{}", key.replace("{}", host)), value)?;
    }
    Ok(())
}

async fn host_mac(node: &Node, index: u32) -> Result<Mac> {
    Ok(node
        .rtnl
        .link_by_index(index)
        .await?
        .ok_or_else(|| Error::system("the new host-side veth vanished"))?
        .mac)
}

/// Kernel datapath: the gateways are the host side's own addresses.
async fn add_gateway_addresses(node: &Node, rec: &Attachment, host_index: u32) -> Result<()> {
    for (v6, net) in [
        (
            false,
            IpNet {
                addr: IpAddr::V4(GW4),
                prefix: 32,
            },
        ),
        (
            true,
            IpNet {
                addr: IpAddr::V6(GW6),
                prefix: 64,
            },
        ),
    ] {
        if rec.ips.iter().any(|n| n.addr.is_ipv6() == v6)
            && !node.rtnl.addresses(host_index).await?.contains(&net.addr)
        {
            node.rtnl
                .add_addr(host_index, &net)
                .await
                .with_context(|| format!("adding the gateway address {net} to the host side"))?;
        }
    }
    Ok(())
}

/// A host route and a permanent neighbour per address, through the host
/// side (replacing what is there: also the repair).
async fn add_node_routes(node: &Node, rec: &Attachment, host_index: u32) -> Result<()> {
    for ip in &rec.ips {
        node.rtnl
            .replace_host_route(host_index, ip.addr)
            .await
            .with_context(|| format!("adding the node's route to {}", ip.addr))?;
        node.rtnl
            .add_permanent_neigh(host_index, ip.addr, rec.mac)
            .await
            .with_context(|| format!("adding the node's neighbour entry for {}", ip.addr))?;
    }
    Ok(())
}

/// Removes whatever of `rec` exists, continuing past failures; returns them.
pub async fn teardown(node: &Node, rec: &Attachment, remaining: &[Attachment]) -> Vec<Error> {
    let mut errors = Vec::new();
    if rec.backend == Backend::Ebpf
        && (rec.host_ifindex.is_some() || rec.endpoint_id.is_some())
        && let Err(e) = teardown_datapath(node, rec, remaining)
    {
        errors.push(e);
    }
    // Routes, neighbours and gateway addresses go with the veth.
    if let Err(e) = endpoint::delete_veth(node, rec).await {
        errors.push(e);
    }
    errors
}

fn teardown_datapath(node: &Node, rec: &Attachment, remaining: &[Attachment]) -> Result<()> {
    let mut dp = node.datapath_for(rec)?;
    if let Some(h) = rec.host_ifindex {
        dp.remove_router_port(h)?;
        dp.remove_endpoint_ips(h, &addrs(rec))?;
        dp.unpin(&datapath::port_link(h))?;
    }
    let uplink = rec.parent_ifindex;
    if !remaining
        .iter()
        .any(|r| is_ebpf_router(r) && r.parent_ifindex == uplink)
    {
        dp.unpin(&datapath::router_uplink_link(uplink))?;
    }
    Ok(())
}

/// The container side, the host side (up, routes), and for eBPF the port
/// entry and both programs (attached, this build).
pub async fn check(node: &Node, rec: &Attachment) -> Result<()> {
    common::check_container_side(rec).await?;
    let link = endpoint::check_host_link(node, rec).await?;
    let (host_index, host_name) = (link.index, &link.name);
    let routes = node.rtnl.routes_via(host_index).await?;
    for ip in &rec.ips {
        let plen = if ip.addr.is_ipv4() { 32 } else { 128 };
        if !routes.contains(&(ip.addr, plen)) {
            return Err(Error::system(format!(
                "the node's route to {} via {host_name} is missing",
                ip.addr
            )));
        }
    }
    if rec.backend != Backend::Ebpf {
        return Ok(());
    }
    let mut dp = node.datapath_for(rec)?;
    let gw_mac = host_mac(node, host_index).await?;
    let want =
        port_of(rec, gw_mac).ok_or_else(|| Error::system("the record has no endpoint id"))?;
    if dp.router_port(host_index)? != Some(want) {
        return Err(Error::system(format!(
            "the router port entry of {host_name} is missing or stale"
        )));
    }
    if rec.spoofchk && !dp.has_endpoint_ips(host_index, &addrs(rec))? {
        return Err(Error::system(format!(
            "the source addresses of {host_name} are missing from the anti-spoofing table"
        )));
    }
    for (prog, pin, ifindex, what) in [
        (
            PROG_RT_TX,
            datapath::port_link(host_index),
            host_index,
            "transmit",
        ),
        (
            PROG_RT_IN,
            datapath::router_uplink_link(rec.parent_ifindex),
            rec.parent_ifindex,
            "uplink",
        ),
    ] {
        dp.check_tcx(
            prog,
            &pin,
            ifindex,
            TcAttachType::Ingress,
            &format!("router {what}"),
        )?;
    }
    Ok(())
}

/// Puts the datapath state back as the record says (entries, programs,
/// the node's routes and neighbours, the host side up); the interfaces are
/// left as they are.
pub async fn repair(node: &Node, rec: &Attachment, _others: &[Attachment]) -> Result<()> {
    let host_index = rec
        .host_ifindex
        .ok_or_else(|| Error::system("the record has no host-side interface"))?;
    if rec.backend == Backend::Ebpf {
        let mut dp = node.datapath_for(rec)?;
        let gw_mac = host_mac(node, host_index).await?;
        let port =
            port_of(rec, gw_mac).ok_or_else(|| Error::system("the record has no endpoint id"))?;
        if rec.spoofchk {
            dp.put_endpoint_ips(host_index, &addrs(rec))?;
        }
        dp.put_router_port(&port)?;
        dp.attach_tc(
            PROG_RT_TX,
            host_index,
            TcAttachType::Ingress,
            &datapath::port_link(host_index),
        )?;
        dp.attach_tc(
            PROG_RT_IN,
            rec.parent_ifindex,
            TcAttachType::Ingress,
            &datapath::router_uplink_link(rec.parent_ifindex),
        )?;
    } else {
        add_gateway_addresses(node, rec, host_index).await?;
    }
    endpoint::host_up(node, rec).await?;
    add_node_routes(node, rec, host_index).await
}

/// See [`super::links`].
pub fn links(rec: &Attachment) -> Vec<(&'static str, String)> {
    if !rec.is_ebpf() {
        return Vec::new();
    }
    let mut out = vec![(PROG_RT_IN, datapath::router_uplink_link(rec.parent_ifindex))];
    if let Some(h) = rec.host_ifindex {
        out.push((PROG_RT_TX, datapath::port_link(h)));
    }
    out
}
