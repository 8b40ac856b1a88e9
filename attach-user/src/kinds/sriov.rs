//! `sriov` attachments: a VF (or any physical netdev) of the node is moved
//! into the container's namespace.
//!
//! When the device is a VF (its PCI function has a `physfn`), its MAC, VLAN
//! and priority, spoof check, trust and maximum rate are set through its PF
//! (RTM_SETLINK with IFLA_VFINFO_LIST, [`crate::netlink::vf_set_message`]),
//! after reading the current values (RTM_GETLINK with RTEXT_FILTER_VF) to
//! put them back on detach. For every device the engine remembers its name,
//! MTU, MAC and up state in the node, moves it in under a temporary name
//! (IFLA_NET_NS_FD), names, addresses and routes it like the other kinds,
//! and on detach moves it back (from inside the container, with the node's
//! namespace fd) under its own name and restores what it changed.
//!
//! Devices and PCI functions are found with netlink (IFLA_PARENT_DEV_NAME,
//! valid in any namespace) and /sys/bus/pci (global), never
//! /sys/class/net: that shows the namespace that mounted /sys, which need
//! not be the node.
//!
//! If the container's namespace goes away first, the kernel destroys a
//! virtual device with it and returns a physical one (a NIC, a VF) to the
//! machine's *initial* namespace, not necessarily the node; `del` then says
//! so and leaves that namespace alone.
//!
//! Tested without SR-IOV hardware: the move/configure/restore path runs
//! against a veth stand-in; the PF requests are checked byte for byte in
//! unit tests, never against a real PF.

use std::{net::IpAddr, path::Path};

use super::common;

mod device;
mod vf;

use crate::{
    addr::{IpNet, Mac, check_ifname},
    error::{Context as _, Error, Result},
    inside,
    model::{Attachment, Backend, Kind, SavedDevice, SriovInfo, VfRef},
    naming::{self, HOST_IF_PREFIX},
    netlink::{Link, LinkChange, Rtnl},
    netns::Netns,
    node::Node,
    parse::{self, de},
};
use device::{PCI_DEVICES, find_in_node, normalize_pci, pci_of, vf_of};
use vf::{vf_restore, vf_wanted};

// Everything `attach add sriov` takes (its help is the subcommand's, in cli.rs).
#[derive(Clone, Debug, Default, clap::Args, serde::Serialize, serde::Deserialize)]
#[command(group(clap::ArgGroup::new("dev").required(true).args(["device", "pci"])))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SriovRequest {
    /// The container's network namespace: a name under /run/netns, a path, or a pid.
    #[arg(long, value_name = "NETNS")]
    pub netns: String,
    /// Interface name inside the container.
    #[arg(long, default_value = "eth0")]
    #[serde(default = "de::eth0")]
    pub ifname: String,
    /// The netdev in the node to hand over (a VF, or any physical device).
    #[arg(long, value_name = "IF")]
    #[serde(default)]
    pub device: Option<String>,
    /// The device by PCI address (DOMAIN:BUS:DEV.FN), e.g. a VF's.
    #[arg(long, value_name = "ADDR")]
    #[serde(default)]
    pub pci: Option<String>,
    /// VF only: VLAN ID (1-4094) the VF's traffic is tagged with.
    #[arg(long, value_name = "N")]
    #[serde(default)]
    pub vlan: Option<u32>,
    /// VF only: 802.1p priority (0-7) of the VLAN tag; needs --vlan.
    #[arg(long, value_name = "N")]
    #[serde(default)]
    pub qos: Option<u32>,
    /// MAC of the interface (a VF's is set through its PF too).
    #[arg(long, value_parser = parse::mac)]
    #[serde(default)]
    pub mac: Option<Mac>,
    /// VF only: drop frames the VF sends with another source MAC.
    #[arg(long, value_parser = parse::on_off())]
    #[serde(default, deserialize_with = "de::on_off")]
    pub spoofchk: Option<bool>,
    /// VF only: let the VF change its MAC and use promiscuous modes.
    #[arg(long, value_parser = parse::on_off())]
    #[serde(default, deserialize_with = "de::on_off")]
    pub trust: Option<bool>,
    /// VF only: maximum transmit rate, Mbit/s.
    #[arg(long, value_name = "MBPS")]
    #[serde(default)]
    pub max_rate: Option<u32>,
    /// Address with prefix length, IPv4 or IPv6; repeat for several.
    #[arg(long = "ip", value_name = "CIDR", value_parser = parse::cidr)]
    #[serde(rename = "ip", default, deserialize_with = "de::list")]
    pub ips: Vec<IpNet>,
    /// Default gateway (needs an address of its family).
    #[arg(long, value_name = "IP")]
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// MTU (default: the device's).
    #[arg(long)]
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Attach without first checking that no other host on the wire
    /// answers for --ip (an ARP probe, DAD for IPv6; 60 ms).
    #[arg(long)]
    #[serde(default)]
    pub no_probe: bool,
}

impl SriovRequest {
    pub fn validate(&self) -> Result<()> {
        check_ifname(&self.ifname)?;
        match (&self.device, &self.pci) {
            (Some(d), None) => check_ifname(d).map_err(|e| e.context("--device"))?,
            (None, Some(p)) => {
                normalize_pci(p)?;
            }
            (Some(_), Some(_)) => {
                return Err(Error::invalid("give --device or --pci, not both"));
            }
            (None, None) => return Err(Error::invalid("sriov needs --device IF or --pci ADDR")),
        }
        if let Some(v) = self.vlan
            && !(1..=4094).contains(&v)
        {
            return Err(Error::invalid(format!(
                "VLAN ID {v} is out of range: --vlan takes 1 to 4094"
            )));
        }
        if let Some(q) = self.qos {
            if q > 7 {
                return Err(Error::invalid(format!(
                    "--qos {q} is out of range: the 802.1p priority is 0 to 7"
                )));
            }
            if self.vlan.is_none() {
                return Err(Error::invalid(format!(
                    "--qos {q} needs --vlan: the priority is carried in the VLAN tag"
                )));
            }
        }
        if self.max_rate == Some(0) {
            return Err(Error::invalid(
                "--max-rate 0 is not a rate: give Mbit/s above 0 (leave it out for no limit)",
            ));
        }
        if let Some(m) = &self.mac {
            m.check_unicast("--mac")?;
        }
        super::addressing::check_addressing(&self.ips, self.gateway, self.mtu)
    }

    /// The options only a VF has, as written on the command line.
    fn vf_options(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.vlan.is_some() {
            v.push("--vlan");
        }
        if self.qos.is_some() {
            v.push("--qos");
        }
        if self.spoofchk.is_some() {
            v.push("--spoofchk");
        }
        if self.trust.is_some() {
            v.push("--trust");
        }
        if self.max_rate.is_some() {
            v.push("--max-rate");
        }
        v
    }
}

async fn find_device(node: &Node, req: &SriovRequest) -> Result<Link> {
    if let Some(name) = &req.device {
        return node.rtnl.link_by_name(name).await?.ok_or_else(|| {
            Error::not_found(format!(
                "device {name} is not present in the node's network namespace"
            ))
        });
    }
    let pci = normalize_pci(req.pci.as_deref().unwrap_or_default())?;
    let links = node.rtnl.links().await?;
    if let Some(l) = links
        .into_iter()
        .find(|l| pci_of(l).as_deref() == Some(pci.as_str()))
    {
        return Ok(l);
    }
    if Path::new(PCI_DEVICES).join(&pci).exists() {
        Err(Error::not_found(format!(
            "PCI device {pci} has no network interface in the node's namespace \
             (bound to another driver, or its netdev is in another namespace)"
        )))
    } else {
        Err(Error::not_found(format!(
            "PCI device {pci} is not present ({PCI_DEVICES}/{pci} does not exist)"
        )))
    }
}

pub async fn plan(
    node: &Node,
    req: &SriovRequest,
    ns: &Netns,
    records: &[Attachment],
) -> Result<Attachment> {
    let by_pci = req
        .pci
        .as_deref()
        .map(normalize_pci)
        .transpose()?
        .map(|p| format!(" ({p})"))
        .unwrap_or_default();
    if let Some(r) = records.iter().find(|r| {
        r.sriov.as_ref().is_some_and(|s| {
            req.device.as_ref() == Some(&s.device)
                || (req.pci.is_some()
                    && s.pci.as_deref()
                        == req
                            .pci
                            .as_deref()
                            .and_then(|p| normalize_pci(p).ok())
                            .as_deref())
        })
    }) {
        let s = r.sriov.as_ref().expect("filtered");
        return Err(Error::conflict(format!(
            "device {}{by_pci} is already in use: attached as {} in {:?}",
            s.device, r.ifname, r.netns
        )));
    }
    let dev = find_device(node, req).await?;
    if ns.same_as(&Netns::current()?) {
        return Err(Error::invalid(format!(
            "network namespace {:?} is the node's own: {} is there already",
            req.netns, dev.name
        )));
    }
    if dev.name.starts_with(HOST_IF_PREFIX) {
        return Err(Error::invalid(format!(
            "{} is an endpoint's host-side interface, not a device to hand over",
            dev.name
        )));
    }
    if !dev.ether {
        return Err(Error::invalid(format!(
            "device {} is not an Ethernet device",
            dev.name
        )));
    }
    if dev.has_controller {
        return Err(Error::conflict(format!(
            "device {} is in use: it is a port of a bridge or bond",
            dev.name
        )));
    }
    if let Some(r) = records
        .iter()
        .find(|r| !r.parent.is_empty() && r.parent_ifindex == dev.index && r.kind != Kind::Sriov)
    {
        return Err(Error::conflict(format!(
            "device {} is in use: it is the parent of {} in {:?}",
            dev.name, r.ifname, r.netns
        )));
    }
    let own = node.rtnl.addresses(dev.index).await?;
    let own: Vec<String> = own
        .iter()
        .filter(|a| !matches!(a, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
        .map(ToString::to_string)
        .collect();
    if !own.is_empty() {
        return Err(Error::conflict(format!(
            "device {} is in use: it carries the node's address(es) {}",
            dev.name,
            own.join(", ")
        )));
    }
    let c = Rtnl::in_netns(ns)?;
    if c.link_by_name(&req.ifname).await?.is_some() {
        return Err(Error::conflict(format!(
            "interface {} already exists in network namespace {:?}",
            req.ifname, req.netns
        )));
    }
    let pci = pci_of(&dev);
    let vf_pci = pci
        .as_deref()
        .and_then(|p| vf_of(Path::new(PCI_DEVICES), p));
    let asked = req.vf_options();
    let vf = match &vf_pci {
        None => {
            if let Some(opt) = asked.first() {
                return Err(Error::invalid(format!(
                    "{opt} needs a VF: {} is not a virtual function",
                    dev.name
                )));
            }
            None
        }
        Some((pf_pci, index)) => {
            let links = node.rtnl.links().await?;
            match links
                .iter()
                .find(|l| pci_of(l).as_deref() == Some(pf_pci.as_str()))
            {
                Some(pf) => Some(VfRef {
                    pf: pf.name.clone(),
                    pf_ifindex: pf.index,
                    index: *index,
                }),
                None if asked.is_empty() && req.mac.is_none() => None,
                None => {
                    return Err(Error::not_found(format!(
                        "the PF {pf_pci} of VF {} has no interface in the node's namespace: \
                         {} cannot be set through it",
                        dev.name,
                        asked.first().copied().unwrap_or("--mac")
                    )));
                }
            }
        }
    };
    let mut warnings = Vec::new();
    if vf_pci.is_some() && vf.is_none() {
        warnings.push(format!(
            "{} is a VF whose PF is not in the node's namespace: its VF settings are left alone",
            dev.name
        ));
    }
    let mut rec = Attachment::new(Kind::Sriov, &req.ifname).in_netns(&req.netns, ns);
    rec.backend = Backend::Native;
    if let Some(v) = &vf {
        rec.parent = v.pf.clone();
        rec.parent_ifindex = v.pf_ifindex;
    }
    rec.mac = req.mac.unwrap_or(dev.mac);
    rec.ips = req.ips.clone();
    rec.gateway = req.gateway;
    rec.mtu = req.mtu.unwrap_or(dev.mtu);
    rec.spoofchk = req.spoofchk.unwrap_or(false);
    rec.warnings = warnings;
    rec.sriov = Some(SriovInfo {
        device: dev.name.clone(),
        device_ifindex: dev.index,
        pci,
        vf,
        vlan: req.vlan.map(|v| v as u16),
        qos: req.qos.map(|q| q as u8),
        spoofchk: req.spoofchk,
        trust: req.trust,
        max_rate: req.max_rate,
        saved: SavedDevice {
            mtu: dev.mtu,
            mac: dev.mac,
            up: dev.up,
        },
        saved_vf: None,
        moved: false,
    });
    Ok(rec)
}

fn info_mut(rec: &mut Attachment) -> Result<&mut SriovInfo> {
    rec.sriov
        .as_mut()
        .ok_or_else(|| Error::system("an sriov record without its sriov part"))
}

pub async fn create(node: &Node, rec: &mut Attachment, ns: &Netns) -> Result<()> {
    let s = info_mut(rec)?.clone();
    // The device must still be the one planned.
    let dev = node
        .rtnl
        .link_by_index(s.device_ifindex)
        .await?
        .filter(|l| l.name == s.device)
        .ok_or_else(|| Error::not_found(format!("device {} vanished", s.device)))?;
    if let Some(vf) = &s.vf {
        let saved = node
            .rtnl
            .vf_config(vf.pf_ifindex, vf.index)
            .await
            .with_context(|| format!("reading VF {} of {}", vf.index, vf.pf))?
            .ok_or_else(|| {
                Error::not_found(format!("{} does not report a VF {}", vf.pf, vf.index))
            })?;
        rec.spoofchk = s.spoofchk.unwrap_or(saved.spoofchk);
        info_mut(rec)?.saved_vf = Some(saved.clone());
        let set = vf_wanted(&s, rec.mac, &saved);
        node.rtnl
            .set_vf(vf.pf_ifindex, vf.index, &set)
            .await
            .with_context(|| format!("setting VF {} of {}", vf.index, vf.pf))?;
    }
    let tmp = naming::temp_ifname();
    // The kernel keeps the index when it is free in the container: a
    // guess, for teardown, until the device is found there.
    rec.ifindex = Some(dev.index);
    node.rtnl
        .move_link(dev.index, ns, &tmp)
        .await
        .with_context(|| format!("moving {} into {:?}", s.device, rec.netns))?;
    info_mut(rec)?.moved = true;
    let c = Rtnl::in_netns(ns)?;
    let link = c
        .link_by_name(&tmp)
        .await?
        .ok_or_else(|| Error::system(format!("{} vanished after the move", s.device)))?;
    rec.ifindex = Some(link.index);
    let change = LinkChange {
        mac: (link.mac != rec.mac).then_some(rec.mac),
        mtu: (link.mtu != rec.mtu).then_some(rec.mtu),
        ..Default::default()
    };
    if change.mac.is_some() || change.mtu.is_some() {
        c.set_link(link.index, &change).await.with_context(|| {
            format!(
                "setting MAC {} and MTU {} on {}",
                rec.mac, rec.mtu, s.device
            )
        })?;
    }
    inside::configure(&c, link.index, rec).await?;
    inside::announce(ns, rec);
    Ok(())
}

/// Moves the device back into the node under its own name, restores its
/// MTU, MAC and state, and the VF's settings. Continues past failures.
pub async fn teardown(node: &Node, rec: &Attachment) -> Vec<Error> {
    let mut errors = Vec::new();
    let Some(s) = &rec.sriov else {
        return errors;
    };
    let mut in_node: Option<Link> = None;
    if s.moved {
        match move_back(node, rec, s).await {
            Ok(l) => in_node = l,
            Err(e) => errors.push(e),
        }
    }
    if in_node.is_none() && errors.is_empty() {
        // Never moved, or the container's namespace is gone.
        in_node = find_in_node(node, s).await.unwrap_or_else(|e| {
            errors.push(e);
            None
        });
        if in_node.is_none() && s.moved && errors.is_empty() {
            node.notice(format!(
                "{} (attached as {} in {:?}) is not in the node, nor in the container's namespace: \
                 when that namespace goes away, the kernel destroys a virtual device with it and \
                 returns a physical one (NIC, VF) to the machine's initial network namespace, which \
                 need not be the node's; attach does not touch other namespaces: look for it there \
                 (as {} or devN)",
                s.device, rec.ifname, rec.netns, rec.ifname
            ));
        }
    }
    // The VF first: an untrusted VF may not change its own MAC while the PF
    // has set one.
    if let (Some(vf), Some(saved)) = (&s.vf, &s.saved_vf) {
        let set = vf_restore(&vf_wanted(s, rec.mac, saved), saved);
        errors.extend(
            node.rtnl
                .set_vf(vf.pf_ifindex, vf.index, &set)
                .await
                .with_context(|| format!("restoring VF {} of {}", vf.index, vf.pf))
                .err(),
        );
    }
    if let Some(l) = &in_node {
        let change = LinkChange {
            mtu: (l.mtu != s.saved.mtu).then_some(s.saved.mtu),
            mac: (l.mac != s.saved.mac).then_some(s.saved.mac),
            up: (s.saved.up && !l.up).then_some(true),
            ..Default::default()
        };
        if change.mtu.is_some() || change.mac.is_some() || change.up.is_some() {
            errors.extend(
                node.rtnl
                    .set_link(l.index, &change)
                    .await
                    .with_context(|| format!("restoring {}", s.device))
                    .err(),
            );
        }
    }
    errors
}

/// From inside the container: moves the device back to the node under its
/// own name. `None` when the container's namespace (or the device in it) is
/// gone.
async fn move_back(node: &Node, rec: &Attachment, s: &SriovInfo) -> Result<Option<Link>> {
    let Ok(ns) = rec.open_netns() else {
        return Ok(None);
    };
    if ns.inode != rec.netns_inode {
        return Ok(None);
    }
    let c = Rtnl::in_netns(&ns)?;
    let Some(index) = rec.ifindex else {
        // Moved, but not found in the container yet: look by name.
        return Ok(None);
    };
    let Some(link) = c.link_by_index(index).await? else {
        return Ok(None);
    };
    if link.name != rec.ifname && !link.name.starts_with("attmp") {
        return Ok(None);
    }
    if let Some(other) = node.rtnl.link_by_name(&s.device).await? {
        return Err(Error::conflict(format!(
            "cannot move {} back: the node has another device named {} now (index {}); \
             it stays in {:?} as {}",
            s.device, s.device, other.index, rec.netns, link.name
        )));
    }
    let node_ns = Netns::current()?;
    c.move_link(link.index, &node_ns, &s.device)
        .await
        .with_context(|| format!("moving {} back to the node", s.device))?;
    node.rtnl.link_by_name(&s.device).await
}

/// The container side as recorded, and the VF's settings as asked.
pub async fn check(node: &Node, rec: &Attachment) -> Result<()> {
    common::check_container_side(rec).await?;
    let Some(s) = &rec.sriov else {
        return Err(Error::system("an sriov record without its sriov part"));
    };
    if let (Some(vf), Some(saved)) = (&s.vf, &s.saved_vf) {
        let now = node
            .rtnl
            .vf_config(vf.pf_ifindex, vf.index)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!("{} no longer reports VF {}", vf.pf, vf.index))
            })?;
        let want = vf_wanted(s, rec.mac, saved);
        let drift = |what: &str| {
            Err(Error::system(format!(
                "VF {} of {}: its {what} changed",
                vf.index, vf.pf
            )))
        };
        if want.mac.is_some_and(|m| m != now.mac) {
            return drift("MAC");
        }
        if want
            .vlan
            .is_some_and(|(v, q)| (v, q) != (now.vlan, now.qos))
        {
            return drift("VLAN");
        }
        if want.spoofchk.is_some_and(|x| x != now.spoofchk) {
            return drift("spoof check");
        }
        if want.trust.is_some_and(|x| x != now.trust) {
            return drift("trust");
        }
        if want.rate.is_some_and(|(_, max)| max != now.max_rate) {
            return drift("rate");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> SriovRequest {
        SriovRequest {
            netns: "c1".into(),
            ifname: "eth0".into(),
            device: Some("sr0".into()),
            ..Default::default()
        }
    }

    #[test]
    fn bad_values_are_named() {
        let cases: Vec<(SriovRequest, &str)> = vec![
            (
                SriovRequest {
                    vlan: Some(4095),
                    ..req()
                },
                "4095",
            ),
            (
                SriovRequest {
                    vlan: Some(0),
                    ..req()
                },
                "VLAN ID 0",
            ),
            (
                SriovRequest {
                    vlan: Some(10),
                    qos: Some(8),
                    ..req()
                },
                "--qos 8",
            ),
            (
                SriovRequest {
                    qos: Some(3),
                    ..req()
                },
                "needs --vlan",
            ),
            (
                SriovRequest {
                    max_rate: Some(0),
                    ..req()
                },
                "--max-rate 0",
            ),
            (
                SriovRequest {
                    device: None,
                    pci: Some("03:00".into()),
                    ..req()
                },
                "\"03:00\"",
            ),
            (
                SriovRequest {
                    pci: Some("0000:03:00.1".into()),
                    ..req()
                },
                "not both",
            ),
            (
                SriovRequest {
                    device: None,
                    ..req()
                },
                "--device",
            ),
        ];
        for (r, want) in cases {
            let e = r.validate().unwrap_err();
            assert!(e.message.contains(want), "{want}: {e}");
        }
        req().validate().unwrap();
    }
}
