//! What no attachment owns: the pieces of an `add` killed half-way (its
//! journal, see [`crate::journal`]), host-side veths and link pins no record
//! names, and endpoint-map entries no record owns. `check --all` names them;
//! `reconcile` (and `reset`, `del`, the next `add`) remove them.

use attach_common::MAP_ENDPOINTS;

use super::{Engine, report::Repair};
use crate::{
    datapath::{Owned, Unowned},
    error::Result,
    journal::{self, Pending},
    kinds,
    model::{Attachment, Backend, Kind, Mode, SavedParent},
    naming,
    netlink::Link,
    output,
};

fn orphan(what: String, action: &str) -> Repair {
    Repair {
        netns: "-".into(),
        ifname: what,
        drift: "owned by no attachment".into(),
        action: action.into(),
    }
}

impl Engine {
    /// The journal of an add about to make `rec`: the planned record, with
    /// what a rollback must restore that the add only learns as it goes (a
    /// passthru endpoint's parent settings).
    pub(super) async fn begin_journal(&self, rec: &Attachment) -> Result<journal::Journal> {
        let mut intent = rec.clone();
        if rec.kind == Kind::Macvlan
            && rec.backend == Backend::Ebpf
            && rec.is_mode(Mode::Passthru)
            && let Some(p) = self.node.rtnl.link_by_index(rec.parent_ifindex).await?
        {
            intent.saved_parent = Some(SavedParent {
                mac: p.mac,
                promisc: p.promisc,
            });
        }
        journal::Journal::begin(self.state.dir(), &intent)
    }

    /// What an add killed before writing its record may have made of
    /// `planned`: the names are derived, the indexes looked up.
    async fn interrupted(&self, mut rec: Attachment, records: &[Attachment]) -> Result<Attachment> {
        if rec.kind.has_interface() && rec.has_netns() && rec.host_ifname.is_none() {
            let host = naming::host_ifname(rec.netns_inode, &rec.ifname);
            match self.node.rtnl.link_by_name(&host).await? {
                Some(l) if l.kind.as_deref() == Some("veth") => {
                    rec.host_ifname = Some(host);
                    rec.host_ifindex = Some(l.index);
                }
                // Its MAC may be in the parent's unicast filter all the
                // same (removing an absent one is no error).
                _ if rec.kind == Kind::Macvlan && rec.backend == Backend::Ebpf => {
                    rec.host_ifname = Some(host)
                }
                _ => {}
            }
        }
        if rec.kind == Kind::Macvlan && rec.backend == Backend::Native && rec.ifindex.is_none() {
            // Made in the container under a temporary name, then renamed:
            // known by its kind and its MAC, which the plan chose.
            rec.ifindex = self.native_macvlan_in(&rec).await;
        }
        if rec.kind == Kind::Macvlan && rec.backend == Backend::Ebpf && rec.endpoint_id.is_none() {
            // The id the add took: the first free one, as no record has
            // been added since (the add held the lock until it died).
            rec.endpoint_id = kinds::free_endpoint_id(records).ok();
        }
        Ok(rec)
    }

    /// Deletes a veth under the host-side name `rec` is made with, once
    /// `rec`'s own is torn down: what a killed recreation of it made (its
    /// map entries, now owned by no record, go in the leftover sweep).
    pub(super) async fn remove_stale_host_side(&self, rec: &Attachment) -> Result<()> {
        if !(rec.kind.has_interface() && rec.has_netns()) {
            return Ok(());
        }
        let host = naming::host_ifname(rec.netns_inode, &rec.ifname);
        if let Some(l) = self.node.rtnl.link_by_name(&host).await?
            && l.kind.as_deref() == Some("veth")
        {
            tracing::warn!("deleting {host}, left by an interrupted recreation");
            self.node.rtnl.del_link(l.index).await?;
        }
        Ok(())
    }

    /// The ifindex of the macvlan with `rec`'s MAC in `rec`'s namespace.
    async fn native_macvlan_in(&self, rec: &Attachment) -> Option<u32> {
        let ns = rec
            .open_netns()
            .ok()
            .filter(|ns| ns.inode == rec.netns_inode)?;
        let links = crate::netlink::Rtnl::in_netns(&ns)
            .ok()?
            .links()
            .await
            .ok()?;
        links
            .iter()
            .find(|l| l.kind.as_deref() == Some("macvlan") && l.mac == rec.mac)
            .map(|l| l.index)
    }

    /// Whether `p` is the journal of an add that finished (its record is
    /// saved) but died before removing it.
    fn completed(p: &Pending, records: &[Attachment]) -> bool {
        p.record.as_ref().is_some_and(|planned| {
            records
                .iter()
                .any(|r| r.record_name() == planned.record_name())
        })
    }

    fn describe(p: &Pending, records: &[Attachment]) -> String {
        let who = p
            .pid
            .map_or_else(String::new, |pid| format!(" (process {pid} is gone)"));
        let Some(rec) = &p.record else {
            return format!(
                "an interrupted add left its journal {} half written",
                p.name
            );
        };
        if Self::completed(p, records) {
            return format!(
                "the add of {} finished but left its journal",
                output::what(rec)
            );
        }
        let mut made = Vec::new();
        if rec.kind.has_interface() && rec.has_netns() {
            made.push(match rec.backend {
                Backend::Ebpf => format!(
                    "host-side veth {}",
                    naming::host_ifname(rec.netns_inode, &rec.ifname)
                ),
                Backend::Native => format!("its {} in the container", rec.kind.name()),
            });
        }
        if rec.kind == Kind::Macvlan && !rec.is_mode(Mode::Passthru) {
            made.push(format!("MAC {} on {}", rec.mac, rec.parent));
        }
        if rec.backend == Backend::Ebpf {
            made.push("its map entries".into());
        }
        format!(
            "the add of {} was interrupted{who}: what it made is left ({})",
            output::what(rec),
            made.join(", ")
        )
    }

    /// Rolls back every add whose process died before it finished. Under
    /// the node's lock; `records` are the node's.
    pub(super) async fn roll_back_interrupted(
        &self,
        records: &[Attachment],
    ) -> Result<Vec<Repair>> {
        let mut repairs = Vec::new();
        for p in journal::dead(self.state.dir())? {
            let drift = Self::describe(&p, records);
            let Some(planned) = p.record.clone() else {
                p.remove()?;
                repairs.push(orphan(format!("journal {}", p.name), "removed"));
                continue;
            };
            let note = |action: String| Repair {
                netns: planned.netns.clone(),
                ifname: planned.ifname.clone(),
                drift: drift.clone(),
                action,
            };
            if Self::completed(&p, records) {
                p.remove()?;
                repairs.push(note("journal removed".into()));
                continue;
            }
            let rec = self.interrupted(planned.clone(), records).await?;
            let errors = kinds::teardown(&self.node, &rec, records).await;
            self.node.take_notices();
            match errors.first() {
                None => {
                    // Its record, if the add died writing it.
                    let tmp = format!(".{}.tmp", planned.record_name());
                    for path in self.state.half_written() {
                        if path.file_name().is_some_and(|n| *n == *tmp) {
                            let _ = std::fs::remove_file(path);
                        }
                    }
                    p.remove()?;
                    repairs.push(note("rolled back".into()));
                }
                Some(e) => repairs.push(note(format!("failed: {}; kept", e.message))),
            }
        }
        if !repairs.is_empty() {
            self.remove_node_pins_if_idle(records);
        }
        Ok(repairs)
    }

    /// [`Self::roll_back_interrupted`] where it is not the command's own
    /// business (an `add`, a `del`): logged, never failing the command.
    pub(super) async fn roll_back_quietly(&self, records: &[Attachment]) {
        match self.roll_back_interrupted(records).await {
            Ok(done) => {
                for r in done {
                    tracing::warn!("{}: {}", r.drift, r.action);
                }
            }
            Err(e) => tracing::warn!("rolling back interrupted adds: {e}"),
        }
    }

    async fn orphan_veths(&self, records: &[Attachment]) -> Result<Vec<Link>> {
        Ok(self
            .node
            .rtnl
            .links()
            .await?
            .into_iter()
            .filter(|l| {
                l.name.starts_with(naming::HOST_IF_PREFIX)
                    && l.kind.as_deref() == Some("veth")
                    && !records
                        .iter()
                        .any(|r| r.host_ifname.as_deref() == Some(l.name.as_str()))
            })
            .collect())
    }

    fn orphan_pins(&self, records: &[Attachment]) -> Vec<(String, std::path::PathBuf)> {
        let Ok(entries) = std::fs::read_dir(self.node.pin_dir().join("links")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .filter(|(name, _)| {
                !records
                    .iter()
                    .any(|r| kinds::links(r).iter().any(|(_, pin)| pin == name))
            })
            .collect()
    }

    /// The endpoint-map entries no record owns (none without the maps).
    fn unowned_entries(&self, records: &[Attachment]) -> Result<Vec<Unowned>> {
        if !self.node.pin_dir().join(MAP_ENDPOINTS).exists() {
            return Ok(Vec::new());
        }
        self.datapath()?.unowned(&Owned::of(records))
    }

    /// Host-side interfaces, link pins and endpoint-map entries that no
    /// record owns, removed.
    pub(super) async fn remove_orphans(&self, records: &[Attachment]) -> Result<Vec<Repair>> {
        let mut repairs = Vec::new();
        for link in self.orphan_veths(records).await? {
            self.node.rtnl.del_link(link.index).await?;
            repairs.push(orphan(link.name, "deleted"));
        }
        for (name, path) in self.orphan_pins(records) {
            let _ = std::fs::remove_file(path);
            repairs.push(orphan(format!("pin {name}"), "unpinned"));
        }
        for path in self.state.half_written() {
            let _ = std::fs::remove_file(&path);
            repairs.push(Repair {
                netns: "-".into(),
                ifname: format!("record {}", path.display()),
                drift: "left half written".into(),
                action: "removed".into(),
            });
        }
        let unowned = self.unowned_entries(records)?;
        if !unowned.is_empty() {
            self.datapath()?.remove_unowned(&unowned)?;
            repairs.extend(unowned.iter().map(|u| orphan(u.to_string(), "removed")));
        }
        if self.node.pin_dir().join(MAP_ENDPOINTS).exists() {
            let mut dp = self.datapath()?;
            for d in kinds::resync_parents(&mut dp, records)? {
                repairs.push(Repair {
                    netns: "-".into(),
                    ifname: format!("parent ifindex {}", d.parent_ifindex),
                    drift: d.to_string(),
                    action: if d.members == 0 {
                        "removed"
                    } else {
                        "rewritten"
                    }
                    .into(),
                });
            }
        }
        Ok(repairs)
    }

    /// What `check --all` names besides drifted attachments: interrupted
    /// adds, and whatever no record owns. Taken under the node's lock, so
    /// an add under way is waited for rather than taken for a leftover.
    pub async fn leftovers(&self) -> Result<Vec<String>> {
        let _lock = if self.state.dir().exists() {
            Some(self.state.lock()?)
        } else {
            None
        };
        let records = self.state.all()?;
        let mut out: Vec<String> = journal::dead(self.state.dir())?
            .iter()
            .map(|p| Self::describe(p, &records))
            .collect();
        for l in self.orphan_veths(&records).await? {
            out.push(format!(
                "host-side veth {} is owned by no attachment",
                l.name
            ));
        }
        for (name, _) in self.orphan_pins(&records) {
            out.push(format!("link pin {name} is owned by no attachment"));
        }
        for path in self.state.half_written() {
            out.push(format!("record {} was left half written", path.display()));
        }
        for u in self.unowned_entries(&records)? {
            out.push(format!("{u}, owned by no attachment"));
        }
        if self.node.pin_dir().join(MAP_ENDPOINTS).exists() {
            let mut dp = self.datapath()?;
            for d in kinds::drifted_parents(&mut dp, &records)? {
                out.push(d.to_string());
            }
        }
        if _lock.is_some() {
            // Taking the lock may have made the directory anew.
            self.state.remove_if_empty()?;
        }
        Ok(out)
    }
}
