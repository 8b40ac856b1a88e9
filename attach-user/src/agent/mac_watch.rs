//! Takes on a MAC a container sets on its macvlan endpoint within a
//! moment: a link watch in each such container's namespace reconciles as
//! soon as the endpoint's address changes (the periodic pass would find
//! it, up to its interval later). Until then an eBPF endpoint's frames are
//! dropped by its source check; a kernel macvlan would have taken the new
//! MAC on at once.
//!
//! A watch holds its namespace while it runs (as any socket in it does):
//! it stops once no record names the namespace any more.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::StreamExt;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{MulticastGroup, new_multicast_connection};
use tokio::task::JoinHandle;

use super::shared::{Shared, reconcile_once};
use crate::{
    model::{Attachment, Kind},
    netlink::Link,
};

/// How often the set of watched namespaces follows the records.
const REFRESH: Duration = Duration::from_millis(500);

fn watched(r: &Attachment) -> bool {
    r.kind == Kind::Macvlan && r.has_netns()
}

pub async fn watch(shared: Arc<Shared>) {
    let mut watches: HashMap<u64, JoinHandle<()>> = HashMap::new();
    let mut tick = tokio::time::interval(REFRESH);
    loop {
        tick.tick().await;
        let records = match shared.engine.list() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("MAC watch: cannot read the records: {e}");
                continue;
            }
        };
        let want: HashMap<u64, &Attachment> = records
            .iter()
            .filter(|r| watched(r))
            .map(|r| (r.netns_inode, r))
            .collect();
        watches.retain(|inode, task| {
            let keep = want.contains_key(inode) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for (inode, rec) in want {
            if !watches.contains_key(&inode)
                && let Some(task) = spawn_watch(shared.clone(), rec)
            {
                watches.insert(inode, task);
            }
        }
    }
}

/// A link watch in `rec`'s namespace, if it is still the recorded one.
fn spawn_watch(shared: Arc<Shared>, rec: &Attachment) -> Option<JoinHandle<()>> {
    let ns = rec
        .open_netns()
        .ok()
        .filter(|ns| ns.inode == rec.netns_inode)?;
    let inode = ns.inode;
    let runtime = tokio::runtime::Handle::current();
    // The socket is made inside the namespace, and stays bound to it.
    let made = ns.run(|| {
        let _in_runtime = runtime.enter();
        new_multicast_connection(&[MulticastGroup::Link])
    });
    let (conn, _handle, mut events) = match made {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::warn!("cannot watch the links of {:?}: {e}", rec.netns);
            return None;
        }
        Err(e) => {
            tracing::warn!("cannot watch the links of {:?}: {e}", rec.netns);
            return None;
        }
    };
    drop(ns);
    tracing::info!("watching the links of {} for MAC changes", rec.netns);
    Some(tokio::spawn(async move {
        let changes = async {
            while let Some((msg, _)) = events.next().await {
                let netlink_packet_core::NetlinkPayload::InnerMessage(change) = msg.payload else {
                    continue;
                };
                if let Some(why) = mac_changed(&shared, inode, &change) {
                    tracing::info!("{why}: reconciling");
                    reconcile_once(&shared).await;
                }
            }
        };
        tokio::select! {
            _ = conn => {}
            _ = changes => {}
        }
    }))
}

/// Why `change` in namespace `inode` calls for a reconcile, if it does: an
/// endpoint's interface there took another MAC than its record's.
fn mac_changed(shared: &Shared, inode: u64, change: &RouteNetlinkMessage) -> Option<String> {
    let RouteNetlinkMessage::NewLink(m) = change else {
        return None;
    };
    let link = Link::from_message(m);
    let records = shared.engine.list().ok()?;
    changed(&records, inode, &link)
}

fn changed(records: &[Attachment], inode: u64, link: &Link) -> Option<String> {
    records
        .iter()
        .find(|r| {
            watched(r)
                && r.netns_inode == inode
                && r.ifname == link.name
                && r.ifindex.is_none_or(|i| i == link.index)
                && !link.mac.is_zero()
                && link.mac != r.mac
        })
        .map(|r| {
            format!(
                "{} in {} changed its MAC to {} (attached with {})",
                r.ifname, r.netns, link.mac, r.mac
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Mac;

    fn link(index: u32, name: &str, mac: &str) -> Link {
        let mut m = netlink_packet_route::link::LinkMessage::default();
        m.header.index = index;
        m.attributes
            .push(netlink_packet_route::link::LinkAttribute::IfName(
                name.into(),
            ));
        let mac: Mac = mac.parse().unwrap();
        m.attributes
            .push(netlink_packet_route::link::LinkAttribute::Address(
                mac.0.to_vec(),
            ));
        Link::from_message(&m)
    }

    #[test]
    fn only_the_endpoints_own_mac_change_concerns_us() {
        let mut rec = crate::model::sample(1, "02:00:00:00:00:01");
        rec.ifindex = Some(7);
        let recs = [rec];
        let why = changed(&recs, 1, &link(7, "eth0", "02:00:00:00:00:09")).unwrap();
        assert_eq!(
            why,
            "eth0 in c1 changed its MAC to 02:00:00:00:00:09 (attached with 02:00:00:00:00:01)"
        );
        // Its own MAC (up, MTU), another interface, another namespace.
        assert_eq!(
            changed(&recs, 1, &link(7, "eth0", "02:00:00:00:00:01")),
            None
        );
        assert_eq!(
            changed(&recs, 1, &link(8, "eth1", "02:00:00:00:00:09")),
            None
        );
        assert_eq!(
            changed(&recs, 2, &link(7, "eth0", "02:00:00:00:00:09")),
            None
        );
    }
}
