//! Entries of the endpoint maps no attachment owns: what an engine killed
//! half-way through an `add` left (or a journal could not account for).
//! Ownership is judged conservatively: an entry is kept when any record
//! names its interface index or endpoint id, so a live entry is never taken
//! for a leftover.

use std::collections::HashSet;

use attach_common::{EP_IPS, Endpoint, EndpointKey, EpIpKey, MAP_DEVS, NESTED_IP_OWNER, PORTS};

use super::node::Datapath;
use crate::{addr::Mac, error::Result, model::Attachment};

/// What the records own: every interface index and endpoint id they name.
#[derive(Default)]
pub struct Owned {
    ifindexes: HashSet<u32>,
    ids: HashSet<u32>,
}

impl Owned {
    pub fn of(records: &[Attachment]) -> Self {
        let mut o = Owned::default();
        for r in records {
            o.ifindexes.extend(
                [
                    r.host_ifindex,
                    r.ifindex,
                    r.tap_ifindex,
                    Some(r.parent_ifindex),
                    r.sriov.as_ref().map(|s| s.device_ifindex),
                ]
                .into_iter()
                .flatten(),
            );
            o.ids.extend(r.endpoint_id);
        }
        o
    }

    fn ip_owner(&self, owner: u32) -> bool {
        if owner & NESTED_IP_OWNER != 0 {
            self.ids.contains(&(owner & !NESTED_IP_OWNER))
        } else {
            self.ifindexes.contains(&owner)
        }
    }
}

/// One entry no record owns.
#[derive(Debug, Clone)]
pub enum Unowned {
    /// The receive table (and its cache slot).
    Rx(EndpointKey, Endpoint),
    Port(u32),
    Dev(u32),
    Ip(EpIpKey),
}

impl std::fmt::Display for Unowned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unowned::Rx(k, e) => write!(
                f,
                "the receive table holds {} on parent ifindex {} (port ifindex {})",
                Mac(k.mac),
                k.parent_ifindex,
                e.host_ifindex
            ),
            Unowned::Port(i) => write!(f, "the port table holds port ifindex {i}"),
            Unowned::Dev(i) => write!(f, "the device map holds ifindex {i}"),
            Unowned::Ip(k) => {
                let ip: std::net::IpAddr = if k.family == 4 {
                    std::net::Ipv4Addr::new(k.addr[0], k.addr[1], k.addr[2], k.addr[3]).into()
                } else {
                    std::net::Ipv6Addr::from(k.addr).into()
                };
                write!(
                    f,
                    "the anti-spoofing table holds {ip} for port ifindex {}",
                    k.host_ifindex
                )
            }
        }
    }
}

impl Datapath {
    /// The endpoint-map entries none of `owned` names.
    pub fn unowned(&mut self, owned: &Owned) -> Result<Vec<Unowned>> {
        let mut out: Vec<Unowned> = self
            .rx_entries()?
            .into_iter()
            .filter(|(_, e)| {
                !owned.ifindexes.contains(&e.host_ifindex) && !owned.ids.contains(&e.id)
            })
            .map(|(k, e)| Unowned::Rx(k, e))
            .collect();
        out.extend(
            self.table(PORTS)?
                .keys()
                .filter(|k| !owned.ifindexes.contains(k))
                .map(Unowned::Port),
        );
        let devs = super::devmap::keys(self.map_mut(MAP_DEVS)?)?;
        out.extend(
            devs.into_iter()
                .filter(|k| !owned.ifindexes.contains(k))
                .map(Unowned::Dev),
        );
        out.extend(
            self.table(EP_IPS)?
                .keys()
                .filter(|k| !owned.ip_owner(k.host_ifindex))
                .map(Unowned::Ip),
        );
        Ok(out)
    }

    /// Removes what [`Datapath::unowned`] found (a receive entry out of its
    /// cache slot first).
    pub fn remove_unowned(&mut self, entries: &[Unowned]) -> Result<()> {
        for u in entries {
            match u {
                Unowned::Rx(k, e) => {
                    let host = e.host_ifindex;
                    self.remove_rx_entry(k, |now| now.host_ifindex == host)?
                }
                Unowned::Port(i) => {
                    self.table(PORTS)?.remove(i)?;
                }
                Unowned::Dev(i) => {
                    super::devmap::remove(self.map_mut(MAP_DEVS)?, *i)?;
                }
                Unowned::Ip(k) => {
                    self.table(EP_IPS)?.remove(k)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_own_the_indexes_and_ids_they_name() {
        let mut tap = crate::model::sample(7, "02:00:00:00:00:07");
        tap.kind = crate::model::Kind::Nested;
        tap.host_ifindex = None;
        tap.tap_ifindex = Some(40);
        let o = Owned::of(&[crate::model::sample(1, "02:00:00:00:00:01"), tap]);
        // The endpoint's host side, container side and parent; the tap.
        for i in [4, 2, 3, 40] {
            assert!(o.ifindexes.contains(&i) && o.ip_owner(i), "{i}");
        }
        assert!(!o.ip_owner(5));
        // A nested endpoint's addresses are owned by its id.
        assert!(o.ip_owner(NESTED_IP_OWNER | 7));
        assert!(!o.ip_owner(NESTED_IP_OWNER | 8));
        assert!(o.ids.contains(&1) && o.ids.contains(&7) && !o.ids.contains(&2));
    }
}
