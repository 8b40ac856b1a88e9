//! Reconciles as soon as a link an attachment stands on changes: its
//! parent deleted, or made again under its name (a NIC reset, a VF made
//! anew: a new ifindex), or its host-side veth deleted behind the engine's
//! back; and at once when a parent that endpoints follow changes state
//! (down, up, carrier). The periodic pass finds the same, up to its
//! interval later.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::StreamExt;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{MulticastGroup, new_multicast_connection};

use super::shared::{Shared, reconcile_once};
use crate::{
    endpoint,
    model::{Attachment, Kind},
    netlink::Link,
};

/// A reset is a burst of events (delete, make, rename, up); one pass
/// after it. A parent still gone then is detached, as the kernel does with
/// a deleted device's macvlans: the wait gives a device made anew (a VF
/// re-created, then renamed by udev) the time to appear.
const SETTLE: Duration = Duration::from_secs(1);

pub async fn watch(shared: Arc<Shared>) {
    let (conn, _handle, mut events) = match new_multicast_connection(&[MulticastGroup::Link]) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("cannot watch the node's links (periodic reconcile only): {e}");
            return;
        }
    };
    tokio::spawn(conn);
    let mut parents = ParentStates::default();
    while let Some((msg, _)) = events.next().await {
        let change = match msg.payload {
            netlink_packet_core::NetlinkPayload::InnerMessage(m) => m,
            _ => continue,
        };
        // A parent's carrier or admin state: its endpoints follow at once
        // (nothing to settle, and a container should see it within a
        // second, as with the kernel's macvlan).
        if let Some((index, why)) = parents.changed(&shared, &change) {
            let _busy = shared.busy.lock().await;
            match shared.engine.follow_parent(index).await {
                Ok(n) => tracing::info!("{why}: {n} endpoint(s) follow"),
                Err(e) => tracing::warn!("{why}: following it failed: {e}"),
            }
            continue;
        }
        if concerns_now(&shared, &change).is_none() {
            continue;
        }
        // Asked again once settled: the engine's own `del` and repairs
        // delete host sides too, and their records are gone or updated
        // by then.
        tokio::time::sleep(SETTLE).await;
        if let Some(why) = concerns_now(&shared, &change) {
            tracing::info!("{why}: reconciling");
            reconcile_once(&shared).await;
        }
    }
}

fn concerns_now(shared: &Shared, change: &RouteNetlinkMessage) -> Option<String> {
    match shared.engine.list() {
        Ok(records) => concerns(change, &records),
        Err(e) => {
            tracing::warn!("link event: cannot read the records: {e}");
            None
        }
    }
}

/// The last seen "up with carrier" of each parent whose endpoints follow
/// it ([`endpoint::follows_parent`]).
#[derive(Default)]
struct ParentStates(HashMap<u32, bool>);

impl ParentStates {
    /// Why `change` makes endpoints follow their parent, if it does: a
    /// parent of such endpoints went down or up (or lost or got carrier).
    fn changed(&mut self, shared: &Shared, change: &RouteNetlinkMessage) -> Option<(u32, String)> {
        let RouteNetlinkMessage::NewLink(m) = change else {
            return None;
        };
        let link = Link::from_message(m);
        let records = shared.engine.list().ok()?;
        let r = records
            .iter()
            .find(|r| r.parent_ifindex == link.index && endpoint::follows_parent(r))?;
        let now = link.up && link.carrier;
        (self.0.insert(link.index, now) != Some(now)).then(|| {
            let state = if now {
                "is up with carrier"
            } else {
                "is down or has no carrier"
            };
            (link.index, format!("parent {} {state}", r.parent))
        })
    }
}

/// A macvlan or ipvlan endpoint: its parent's loss is the endpoint's (the
/// uplinks of routers, switches and VMs are left to the periodic pass).
fn stands_on_parent(r: &Attachment) -> bool {
    matches!(r.kind, Kind::Macvlan | Kind::Ipvlan)
}

/// Why `change` calls for a reconcile, if it does.
fn concerns(change: &RouteNetlinkMessage, records: &[Attachment]) -> Option<String> {
    match change {
        RouteNetlinkMessage::DelLink(m) => {
            let index = m.header.index;
            records.iter().find_map(|r| {
                if r.parent_ifindex == index && stands_on_parent(r) {
                    Some(format!("parent {} (ifindex {index}) deleted", r.parent))
                } else if r.host_ifindex == Some(index) {
                    Some(format!("host side of {} in {} deleted", r.ifname, r.netns))
                } else {
                    None
                }
            })
        }
        RouteNetlinkMessage::NewLink(m) => {
            let link = Link::from_message(m);
            records
                .iter()
                .find(|r| {
                    stands_on_parent(r) && r.parent == link.name && r.parent_ifindex != link.index
                })
                .map(|r| {
                    format!(
                        "a new {} (ifindex {}) where the parent was",
                        r.parent, link.index
                    )
                })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::link::{LinkAttribute, LinkMessage};

    use super::*;

    fn link(index: u32, name: &str) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m
    }

    fn endpoint() -> Attachment {
        crate::model::sample(1, "02:00:00:00:00:01")
    }

    #[test]
    fn a_parent_or_host_side_deleted_concerns_us() {
        let recs = [endpoint()];
        assert_eq!(recs[0].kind, Kind::Macvlan);
        let del = |i| concerns(&RouteNetlinkMessage::DelLink(link(i, "x")), &recs);
        assert_eq!(del(3).unwrap(), "parent par0 (ifindex 3) deleted");
        assert_eq!(del(4).unwrap(), "host side of eth0 in c1 deleted");
        assert_eq!(del(5), None);
        let mut router = endpoint();
        router.kind = Kind::Router;
        let recs = [router];
        assert_eq!(
            concerns(&RouteNetlinkMessage::DelLink(link(3, "x")), &recs),
            None
        );
    }

    #[test]
    fn a_new_link_concerns_us_only_as_a_remade_parent() {
        let recs = [endpoint()];
        let new = |i, n| concerns(&RouteNetlinkMessage::NewLink(link(i, n)), &recs);
        assert_eq!(
            new(12, "par0").unwrap(),
            "a new par0 (ifindex 12) where the parent was"
        );
        // The parent itself changing (up, MTU, promisc), and other links.
        assert_eq!(new(3, "par0"), None);
        assert_eq!(new(13, "atk0123456789"), None);
    }
}
