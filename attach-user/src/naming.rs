//! How the engine names what it makes, derived so that `del` and the
//! leftover scans find it without a record: host-side veths, links being
//! born, record files. A leaf: it depends on nothing of the engine.

use crate::addr::Mac;

/// Prefix of every host-side interface the engine creates.
pub const HOST_IF_PREFIX: &str = "atk";

/// The host-side veth of (namespace, ifname): derived, so `del` finds it
/// even without a record.
pub fn host_ifname(netns_inode: u64, ifname: &str) -> String {
    let bytes: Vec<u8> = netns_inode
        .to_le_bytes()
        .iter()
        .chain(ifname.as_bytes())
        .copied()
        .collect();
    format!("{HOST_IF_PREFIX}{:010x}", fnv1a(&bytes) & 0xff_ffff_ffff)
}

/// FNV-1a: stable across releases, unlike std's hasher.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A name for a link being born in a container, before it is renamed:
/// never the final name, so a failed attach cannot clash with it.
pub fn temp_ifname() -> String {
    let r = Mac::random().0;
    format!("attmp{:02x}{:02x}{:02x}{:02x}", r[2], r[3], r[4], r[5])
}

/// The record file of an attachment with an interface in a container.
pub fn record_name(netns_inode: u64, ifname: &str) -> String {
    format!("{netns_inode}-{ifname}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_fit_and_differ() {
        let a = host_ifname(4026532000, "eth0");
        let b = host_ifname(4026532000, "eth1");
        let c = host_ifname(4026532001, "eth0");
        assert!(a.len() <= 15 && a.starts_with(HOST_IF_PREFIX));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, host_ifname(4026532000, "eth0"));
    }

    #[test]
    fn temp_names_fit() {
        assert!(temp_ifname().len() <= 15);
    }
}
