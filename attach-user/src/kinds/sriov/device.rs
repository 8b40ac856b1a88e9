//! Finding a device and its PCI function: PCI addresses, the VF a function
//! is (through /sys/bus/pci, global), the device in the node again after a
//! move back.

use std::path::Path;

use crate::{
    error::{Error, Result},
    model::SriovInfo,
    netlink::Link,
    node::Node,
};

/// Where PCI functions are, whatever the namespace.
pub(super) const PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// `0000:03:00.1` (or `03:00.1`, domain 0), lower case, checked.
pub(super) fn normalize_pci(s: &str) -> Result<String> {
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
pub(super) fn vf_of(pci_root: &Path, addr: &str) -> Option<(String, u32)> {
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
pub(super) fn pci_of(link: &Link) -> Option<String> {
    (link.parent_bus.as_deref() == Some("pci"))
        .then(|| link.parent_dev.clone())
        .flatten()
}

/// The device in the node: by its name and index (or PCI address), or, when
/// the kernel handed it back (the node is the initial namespace), by its
/// PCI address or permanent MAC.
pub(super) async fn find_in_node(node: &Node, s: &SriovInfo) -> Result<Option<Link>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
