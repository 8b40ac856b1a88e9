//! What both backends know of a bridge's ports: its other members, and a
//! port's addresses.

use std::net::IpAddr;

use crate::model::{Attachment, Kind};

/// The other ports of the bridge/switch `rec` is (or will be) a port of.
pub(super) fn members<'a>(records: &'a [Attachment], rec: &Attachment) -> Vec<&'a Attachment> {
    records
        .iter()
        .filter(|r| {
            r.kind == Kind::Bridge
                && r.backend == rec.backend
                && r.parent == rec.parent
                && !(r.netns_inode == rec.netns_inode && r.ifname == rec.ifname)
        })
        .collect()
}

pub(super) fn addrs(rec: &Attachment) -> Vec<IpAddr> {
    rec.ips.iter().map(|n| n.addr).collect()
}
