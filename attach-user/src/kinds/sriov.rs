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
use crate::{
    addr::{IpNet, Mac, check_ifname},
    error::{Context as _, Error, Result},
    inside,
    model::{Attachment, Backend, Kind, SavedDevice, SriovInfo, VfRef},
    naming::{self, HOST_IF_PREFIX},
    netlink::{Link, LinkChange, Rtnl, VfConfig, VfSet},
    netns::Netns,
    node::Node,
};

/// Where PCI functions are, whatever the namespace.
pub const PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// Everything `attach add sriov` takes.
#[derive(Clone, Debug, Default)]
pub struct SriovRequest {
    pub netns: String,
    pub ifname: String,
    /// The netdev in the node (`--device`)…
    pub device: Option<String>,
    /// …or its PCI address (`--pci`).
    pub pci: Option<String>,
    pub vlan: Option<u32>,
    pub qos: Option<u32>,
    pub mac: Option<Mac>,
    pub spoofchk: Option<bool>,
    pub trust: Option<bool>,
    /// Mbit/s.
    pub max_rate: Option<u32>,
    pub ips: Vec<IpNet>,
    pub gateway: Option<IpAddr>,
    pub mtu: Option<u32>,
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
        super::check_addressing(&self.ips, self.gateway, self.mtu)
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

/// `0000:03:00.1` (or `03:00.1`, domain 0), lower case, checked.
pub fn normalize_pci(s: &str) -> Result<String> {
    let bad = || {
        Error::invalid(format!(
            "invalid PCI address {s:?}: expected DOMAIN:BUS:DEVICE.FUNCTION, like 0000:03:00.1"
        ))
    };
    let full = if s.matches(':').count() == 1 {
        format!("0000:{s}")
    } else {
        s.to_owned()
    };
    let (dom_bus_dev, func) = full.rsplit_once('.').ok_or_else(bad)?;
    let parts: Vec<&str> = dom_bus_dev.split(':').collect();
    let ok = parts.len() == 3
        && parts[0].len() == 4
        && parts[1].len() == 2
        && parts[2].len() == 2
        && func.len() == 1
        && parts
            .iter()
            .chain(std::iter::once(&func))
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
        && u8::from_str_radix(parts[2], 16).is_ok_and(|d| d < 32)
        && u8::from_str_radix(func, 16).is_ok_and(|f| f < 8);
    if !ok {
        return Err(bad());
    }
    Ok(full.to_ascii_lowercase())
}

/// If PCI function `addr` is a VF: its PF's address and its index there
/// (`physfn`, and the PF's `virtfnN` pointing back at it).
pub fn vf_of(pci_root: &Path, addr: &str) -> Option<(String, u32)> {
    let physfn = std::fs::read_link(pci_root.join(addr).join("physfn")).ok()?;
    let pf = physfn.file_name()?.to_str()?.to_owned();
    let entries = std::fs::read_dir(pci_root.join(&pf)).ok()?;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(n) = name.to_str().and_then(|n| n.strip_prefix("virtfn")) else {
            continue;
        };
        let Ok(index) = n.parse::<u32>() else {
            continue;
        };
        if std::fs::read_link(e.path())
            .ok()
            .and_then(|t| t.file_name().map(|f| f == addr))
            == Some(true)
        {
            return Some((pf, index));
        }
    }
    None
}

/// The PCI address a link sits on, if any.
fn pci_of(link: &Link) -> Option<String> {
    (link.parent_bus.as_deref() == Some("pci"))
        .then(|| link.parent_dev.clone())
        .flatten()
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

/// What the attach sets on the VF, from the request in the record: the MAC
/// only when one was asked (`mac`, the record's, differs from the device's
/// own) and the VF does not have it already.
fn vf_wanted(s: &SriovInfo, mac: Mac, saved: &VfConfig) -> VfSet {
    VfSet {
        mac: (mac != s.saved.mac && mac != saved.mac).then_some(mac),
        vlan: s
            .vlan
            .map(|v| (u32::from(v), u32::from(s.qos.unwrap_or(0)))),
        spoofchk: s.spoofchk,
        trust: s.trust,
        rate: s.max_rate.map(|max| (saved.min_rate, max)),
    }
}

/// What puts the VF back: the saved value of every setting `set` changes.
fn vf_restore(set: &VfSet, saved: &VfConfig) -> VfSet {
    VfSet {
        mac: set.mac.map(|_| saved.mac),
        vlan: set.vlan.map(|_| (saved.vlan, saved.qos)),
        spoofchk: set.spoofchk.map(|_| saved.spoofchk),
        trust: set.trust.map(|_| saved.trust),
        rate: set.rate.map(|_| (saved.min_rate, saved.max_rate)),
    }
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

/// The device in the node: by its name and index (or PCI address), or, when
/// the kernel handed it back (the node is the initial namespace), by its
/// PCI address or permanent MAC.
async fn find_in_node(node: &Node, s: &SriovInfo) -> Result<Option<Link>> {
    let links = node.rtnl.links().await?;
    let same_pci = |l: &Link| s.pci.is_some() && pci_of(l) == s.pci;
    if let Some(l) = links
        .iter()
        .find(|l| l.name == s.device && (l.index == s.device_ifindex || same_pci(l)))
    {
        return Ok(Some(l.clone()));
    }
    Ok(links.iter().find(|l| same_pci(l)).cloned())
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

    #[test]
    fn pci_addresses() {
        assert_eq!(normalize_pci("0000:3B:00.1").unwrap(), "0000:3b:00.1");
        assert_eq!(normalize_pci("03:10.7").unwrap(), "0000:03:10.7");
        for bad in [
            "",
            "3:00.1",
            "0000:03:00.8",
            "0000:03:20.0",
            "0000:03:00",
            "zz:00.0",
        ] {
            assert!(normalize_pci(bad).is_err(), "{bad}");
        }
    }

    /// A fake /sys/bus/pci/devices: a PF with two VFs, and a plain NIC.
    #[test]
    fn vfs_are_found_through_physfn_and_virtfn() {
        use std::os::unix::fs::symlink;
        let root = std::env::temp_dir().join(format!("attach-pci-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let pf = "0000:03:00.0";
        let vfs = ["0000:03:10.0", "0000:03:10.2"];
        for d in [pf, vfs[0], vfs[1], "0000:04:00.0"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for (i, vf) in vfs.iter().enumerate() {
            symlink(format!("../{vf}"), root.join(pf).join(format!("virtfn{i}"))).unwrap();
            symlink(format!("../{pf}"), root.join(vf).join("physfn")).unwrap();
        }
        let got = (
            vf_of(&root, vfs[1]),
            vf_of(&root, vfs[0]),
            vf_of(&root, pf),
            vf_of(&root, "0000:04:00.0"),
        );
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(got.0, Some((pf.to_owned(), 1)));
        assert_eq!(got.1, Some((pf.to_owned(), 0)));
        assert_eq!(got.2, None);
        assert_eq!(got.3, None);
    }

    #[test]
    fn only_what_was_asked_is_set_and_restored() {
        let saved = VfConfig {
            mac: "02:00:00:00:00:01".parse().unwrap(),
            vlan: 0,
            qos: 0,
            spoofchk: true,
            trust: false,
            min_rate: 10,
            max_rate: 0,
        };
        let s = SriovInfo {
            vlan: Some(100),
            qos: Some(5),
            trust: Some(true),
            max_rate: Some(1000),
            ..Default::default()
        };
        let mac: Mac = "02:11:22:33:44:55".parse().unwrap();
        let set = vf_wanted(&s, mac, &saved);
        assert_eq!(
            set,
            VfSet {
                mac: Some(mac),
                vlan: Some((100, 5)),
                spoofchk: None,
                trust: Some(true),
                rate: Some((10, 1000)),
            }
        );
        assert_eq!(
            vf_restore(&set, &saved),
            VfSet {
                mac: Some(saved.mac),
                vlan: Some((0, 0)),
                spoofchk: None,
                trust: Some(false),
                rate: Some((10, 0)),
            }
        );
        // The VF's own MAC kept: not set.
        assert_eq!(
            vf_wanted(&SriovInfo::default(), saved.mac, &saved),
            VfSet::default()
        );
    }
}
