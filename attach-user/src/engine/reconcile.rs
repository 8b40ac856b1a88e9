//! `reconcile`: every record checked against the node and its drift
//! repaired, recreated or detached; then what no record owns removed (see
//! `leftovers`). Also `check --all`'s look at what no attachment owns.

use super::{Engine, report::Repair};
use crate::{
    error::{Error, Result},
    kinds,
    model::Attachment,
    netns::Netns,
};

impl Engine {
    /// Checks what no attachment owns: the endpoint cache must hold nothing
    /// the receive table does not (see [`crate::ep_cache`]).
    pub fn check_node(&self, records: &[Attachment]) -> Result<()> {
        if !records.iter().any(Attachment::is_ebpf) {
            return Ok(());
        }
        let mut dp = self.datapath()?;
        let table = dp.rx_entries()?;
        let stale = dp.ep_cache()?.stale(&table);
        match stale.first() {
            None => Ok(()),
            Some((slot, ep)) => Err(Error::system(format!(
                "the endpoint cache holds {} slot(s) the receive table does not (slot {slot}: {})",
                stale.len(),
                match ep {
                    Some(ep) => format!(
                        "{} on parent ifindex {}",
                        crate::addr::Mac(ep.mac),
                        ep.parent_ifindex
                    ),
                    None => "left half written".to_owned(),
                }
            ))),
        }
    }

    /// The endpoints that follow parent `ifindex` take its state now (the
    /// agent, on the parent's link event); nothing else is checked, so a
    /// parent going away is left to `reconcile`. How many followed.
    pub async fn follow_parent(&self, ifindex: u32) -> Result<usize> {
        let _lock = self.state.lock()?;
        let records = self.state.all()?;
        kinds::follow_parent(&self.node, ifindex, &records).await
    }

    /// Re-adopts every record and pin and repairs drift: a datapath piece
    /// missing (map entry, program) is put back; an interface deleted behind
    /// the engine's back is recreated; an attachment whose namespace is gone
    /// is detached; host-side interfaces and link pins no record owns are
    /// removed. Returns what it did.
    pub async fn reconcile(&self) -> Result<Vec<Repair>> {
        let _lock = self.state.lock()?;
        let mut records = self.state.all()?;
        // Before the records are checked: an interrupted add may have
        // rewritten what its parent's other endpoints rely on.
        let mut repairs = self.roll_back_interrupted(&records).await?;
        // Leases past T1: renewed before anything is checked (an expired
        // one is no drift to repair: `check` names it).
        repairs.extend(self.renew_leases(&mut records).await?);
        let mut i = 0;
        while i < records.len() {
            let rec = records[i].clone();
            let Err(drift) = kinds::check(&self.node, &rec).await else {
                i += 1;
                continue;
            };
            let others: Vec<Attachment> = records.iter().filter(|r| **r != rec).cloned().collect();
            let note = |action: String| Repair {
                netns: rec.netns.clone(),
                ifname: rec.ifname.clone(),
                drift: drift.message.clone(),
                action,
            };
            let ns_alive =
                !rec.has_netns() || rec.open_netns().is_ok_and(|ns| ns.inode == rec.netns_inode);
            let parent = if ns_alive {
                kinds::parent_now(&self.node, &rec).await?
            } else {
                kinds::ParentNow::Same
            };
            // Nothing to repair on: as the kernel does with the macvlans of
            // a deleted device, the attachment goes.
            let gone = match (ns_alive, &parent) {
                (false, _) => Some("its network namespace"),
                (_, kinds::ParentNow::Gone) => Some("its parent"),
                _ => None,
            };
            if let Some(gone) = gone {
                let errors = kinds::teardown(&self.node, &rec, &others).await;
                self.state.remove(&rec)?;
                records.remove(i);
                repairs.push(note(match errors.first() {
                    None => format!("detached: {gone} is gone"),
                    Some(e) => format!("detached ({gone} is gone), with errors: {e}"),
                }));
                continue;
            }
            if let kinds::ParentNow::UplinkGone(uplink) = &parent {
                repairs.push(note(format!(
                    "kept: uplink {uplink} is gone (taken again when a device of that name appears)"
                )));
                i += 1;
                continue;
            }
            // A parent made again under its name: the attachment moves to it
            // (made anew: nothing of it can be repaired in place).
            let new_parent = match parent {
                kinds::ParentNow::Remade(index) => Some(index),
                _ => None,
            };
            if new_parent.is_none() {
                // A MAC the container set is taken on (as a kernel macvlan
                // does), then the record checked again.
                match kinds::adopt_mac(&self.node, &rec, &others).await {
                    Ok(Some(adopted)) => {
                        self.state.save(&adopted)?;
                        repairs.push(note(format!("took on the MAC {}", adopted.mac)));
                        records[i] = adopted;
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(
                        "{} in {:?}: its new MAC is not taken on: {e}",
                        rec.ifname,
                        rec.netns
                    ),
                }
                let repaired = kinds::repair(&self.node, &rec, &others).await;
                if repaired.is_ok() && kinds::check(&self.node, &rec).await.is_ok() {
                    repairs.push(note("repaired".into()));
                    i += 1;
                    continue;
                }
                if !kinds::recreatable(&rec) {
                    let why = match repaired {
                        Err(e) => e.message,
                        Ok(()) => "still drifting after the repair".into(),
                    };
                    repairs.push(note(format!("failed: {why}; kept")));
                    i += 1;
                    continue;
                }
            }
            for e in kinds::teardown(&self.node, &rec, &others).await {
                tracing::warn!("tearing down {} before recreating it: {e}", rec.ifname);
            }
            // A recreation killed half-way left its own veth under the
            // name this one takes.
            self.remove_stale_host_side(&rec).await?;
            let ns = if rec.has_netns() {
                rec.open_netns()?
            } else {
                Netns::current()?
            };
            let mut fresh = rec.fresh();
            if let Some(index) = new_parent {
                fresh.parent_ifindex = index;
            }
            match kinds::create(&self.node, &mut fresh, &ns, &others).await {
                Ok(()) => {
                    self.state.save(&fresh)?;
                    records[i] = fresh;
                    repairs.push(note(match new_parent {
                        Some(index) => {
                            format!("recreated on the new {} (ifindex {index})", rec.parent)
                        }
                        None => "recreated".into(),
                    }));
                    i += 1;
                }
                Err(e) => {
                    for t in kinds::teardown(&self.node, &fresh, &others).await {
                        tracing::warn!("rolling back the recreation of {}: {t}", rec.ifname);
                    }
                    self.state.remove(&rec)?;
                    records.remove(i);
                    repairs.push(note(format!("failed: {}; detached", e.message)));
                }
            }
        }
        repairs.extend(self.remove_orphans(&records).await?);
        if records.iter().any(Attachment::is_ebpf) {
            let synced = self.datapath()?.sync_ep_cache()?;
            if synced.stale > 0 {
                repairs.push(Repair {
                    netns: "-".into(),
                    ifname: "endpoint cache".into(),
                    drift: format!(
                        "{} slot(s) held what the receive table does not",
                        synced.stale
                    ),
                    action: "emptied".into(),
                });
            }
        }
        match kinds::sweep_switches(&self.node, &records) {
            Ok(0) => {}
            Ok(n) => tracing::info!("swept {n} aged or stale switch FDB entries"),
            Err(e) => tracing::warn!("sweeping the switch FDB: {e}"),
        }
        self.remove_node_pins_if_idle(&records);
        self.state.remove_if_empty()?;
        Ok(repairs)
    }
}
