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

use super::common;

mod linux;
mod ports;
mod switch;

use crate::{
    addr::{IpNet, Mac, check_ifname},
    datapath::{self, PROG_BR_GUARD, PROG_SW},
    endpoint,
    error::{Error, Result},
    model::{Attachment, Backend, Datapath as DatapathKind, Kind},
    netns::Netns,
    node::Node,
    parse::{self, de},
};
pub(crate) use switch::sweep;

/// Largest MTU a veth takes.
const VETH_MAX_MTU: u32 = 65535;
/// MTU of a switch port without an uplink, unless given.
const DEFAULT_MTU: u32 = 1500;

// Everything `attach add bridge` takes (its help is the subcommand's, in cli.rs).
#[derive(Clone, Debug, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BridgeRequest {
    /// The container's network namespace: a name under /run/netns, a path, or a pid.
    #[arg(long, value_name = "NETNS")]
    pub netns: String,
    /// Interface name inside the container.
    #[arg(long, default_value = "eth0")]
    #[serde(default = "de::eth0")]
    pub ifname: String,
    /// native: an existing Linux bridge in the node; ebpf: the switch's name.
    #[arg(long, value_name = "BR")]
    pub bridge: String,
    /// MAC address of the interface (random if not given).
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
    /// MTU (default: the bridge's, or the uplink's; 1500 for a switch
    /// without one).
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
    /// Access VLAN, 1 to 4094: the port carries it untagged, and reaches
    /// ports of the same VLAN only.
    #[arg(long, value_name = "N", value_parser = parse::vlan)]
    #[serde(default)]
    pub vlan: Option<u16>,
    /// native: a port of a Linux bridge; ebpf: a port of our eBPF switch.
    #[arg(long, value_enum, default_value_t = Backend::Ebpf)]
    #[serde(default)]
    pub backend: Backend,
    /// An isolated port: it reaches non-isolated ports only (and the uplink).
    #[arg(long)]
    #[serde(default)]
    pub isolated: bool,
    /// Drop frames the container sends with a source MAC or address not its
    /// own (default: on for ebpf, off for native).
    #[arg(long, value_parser = parse::on_off())]
    #[serde(default, deserialize_with = "de::on_off")]
    pub spoofchk: Option<bool>,
    /// ebpf: connect the switch to this node device, an 802.1Q trunk
    /// (untagged: ports without a VLAN; tagged N: VLAN N). Given with the
    /// switch's first port.
    #[arg(long, value_name = "IF")]
    #[serde(default)]
    pub uplink: Option<String>,
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
        super::addressing::check_addressing(&self.ips, self.gateway, self.mtu)?;
        super::addressing::check_dhcp(self.dhcp, &self.ips, self.gateway)
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
    let others = ports::members(records, &rec);
    // The device frames leave the node by: the bridge, or the uplink.
    let device = if ebpf {
        switch::plan_switch(node, &req.uplink, &mut rec, &others, records).await?
    } else {
        Some(linux::native_bridge(node, &req.bridge, req.vlan).await?)
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
    // eBPF macvlan endpoints on the switch's uplink share its LAN: the same
    // MAC or address there would be two hosts' (their add checks ports).
    let on_uplink: Vec<&Attachment> = match (&device, ebpf) {
        (Some(d), true) => records
            .iter()
            .filter(|r| r.kind == Kind::Macvlan && r.parent_ifindex == d.index)
            .collect(),
        _ => Vec::new(),
    };
    if let Some(o) = on_uplink.iter().find(|o| o.mac == rec.mac) {
        return Err(Error::conflict(format!(
            "MAC {} is already used on uplink {} by macvlan {} in {:?}",
            rec.mac, o.parent, o.ifname, o.netns
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
            .chain(on_uplink.iter())
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

/// Makes the attachment. On error, `rec` says what was made so far, for
/// `teardown` to undo.
pub async fn create(
    node: &Node,
    rec: &mut Attachment,
    ns: &Netns,
    records: &[Attachment],
) -> Result<()> {
    match rec.backend {
        Backend::Native => linux::create_native(node, rec, ns, records).await,
        Backend::Ebpf => switch::create_switch_port(node, rec, ns, records).await,
    }
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
            Backend::Native => linux::teardown_guard(node, rec),
            Backend::Ebpf => switch::teardown_switch_port(node, rec, remaining).await,
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

/// The container side, the host-side veth, and: (native) its bridge port
/// settings and guard; (ebpf) the port, switch, flood row, static FDB
/// entry, uplink and programs.
pub async fn check(node: &Node, rec: &Attachment) -> Result<()> {
    common::check_container_side(rec).await?;
    let link = endpoint::check_host_link(node, rec).await?;
    match rec.backend {
        Backend::Native => linux::check_native(node, rec, &link).await,
        Backend::Ebpf => switch::check_switch_port(node, rec),
    }
}

/// Puts the port back as the record says without recreating it: (native)
/// its bridge, flags, VLAN and guard; (ebpf) its entries, static FDB entry,
/// programs, the switch and its uplink. Idempotent.
pub async fn repair(node: &Node, rec: &Attachment, others: &[Attachment]) -> Result<()> {
    match rec.backend {
        Backend::Native => linux::repair(node, rec).await?,
        Backend::Ebpf => switch::repair(node, rec, others).await?,
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
            ingress_rate: None,
            ingress_burst: None,
            egress_rate: None,
            egress_burst: None,
            vlan: None,
            backend,
            isolated: false,
            spoofchk: None,
            uplink: None,
            no_probe: false,
            dhcp: false,
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
