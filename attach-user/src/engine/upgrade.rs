//! `upgrade`: the node's pinned program links switched to this build's
//! programs in place, and the container side of XDP endpoints brought to
//! this build's settings.

use super::{Engine, report::Upgraded};
use crate::{datapath::Datapath, error::Result, kinds, model::Attachment};

impl Engine {
    /// Writes the flood rows of a build whose flood table held whole
    /// endpoints (`attach_flood`) into this build's rows of ids, from the
    /// records, then removes that table's pin (the older programs still
    /// using it keep it until their links are updated). Run by `upgrade`
    /// and before `add` and `del` change a row, so that a row is never
    /// appended to before it holds the endpoints made by the older build.
    pub(super) fn migrate_flood_rows(dp: &mut Datapath, records: &[Attachment]) -> Result<()> {
        if !dp.has_v1_flood() {
            return Ok(());
        }
        kinds::rewrite_flood_rows(dp, records)?;
        dp.remove_v1_flood()
    }

    /// [`Self::migrate_flood_rows`] where the node has eBPF endpoints and
    /// the older table's pin (one `stat` otherwise).
    pub(super) fn migrate_flood_rows_if_needed(&self, records: &[Attachment]) -> Result<()> {
        let old = self.node.pin_dir().join(attach_common::MAP_FLOOD_V1);
        if !old.exists() || !records.iter().any(Attachment::is_ebpf) {
            return Ok(());
        }
        Self::migrate_flood_rows(&mut self.datapath()?, records)
    }

    /// Switches every pinned link to this build's programs in place
    /// (`bpf_link_update`), so an upgrade never leaves a hook without a
    /// program; `force` updates links that already run this build too. Then
    /// brings the container side of XDP endpoints to this build's settings.
    pub fn upgrade(&self, force: bool) -> Result<Upgraded> {
        use crate::datapath::Attached;
        let _lock = self.state.lock()?;
        let records = self.state.all()?;
        if !records.iter().any(Attachment::is_ebpf) {
            return Ok(Upgraded::default());
        }
        // Cached programs of other builds go; `force` loads this build's
        // afresh too.
        Datapath::clear_program_cache(self.node.pin_dir(), !force);
        let mut dp = self.datapath()?;
        // Endpoints made by a build without the endpoint cache enter it
        // before this build's programs, which read it, take the hooks.
        let ep_cache = dp.sync_ep_cache()?;
        // Flood rows made by a build with the table of whole endpoints are
        // written into this build's before its programs read them.
        Self::migrate_flood_rows(&mut dp, &records)?;
        let mut out = Vec::new();
        // A host attachment's cgroup programs carry its counter slot: each is
        // updated from an instance loaded with it.
        for rec in &records {
            let Some(id) = rec.host.as_ref().and_then(|h| h.counter_id) else {
                continue;
            };
            let mut counting = Datapath::open_counting(self.node.pin_dir(), id)?;
            for (prog, pin) in kinds::links(rec) {
                let what = match counting.update_cgroup_link(prog, &pin, force)? {
                    Attached::Kept => "kept",
                    _ => "updated",
                };
                out.push((pin, what));
            }
        }
        let mut links: Vec<(&str, String)> = Vec::new();
        for link in records
            .iter()
            .filter(|r| r.kind != crate::model::Kind::Host)
            .flat_map(kinds::links)
        {
            if !links.contains(&link) {
                links.push(link);
            }
        }
        for (prog, pin) in links {
            let what = match dp.update_link(prog, &pin, force)? {
                Attached::Kept => "kept",
                _ => "updated",
            };
            out.push((pin, what));
        }
        let mut containers = Vec::new();
        for rec in &records {
            // A container that cannot be entered is drift, `reconcile`'s
            // business; the programs are upgraded all the same.
            match kinds::upgrade_container(rec) {
                Ok(true) => containers.push((rec.netns.clone(), rec.ifname.clone())),
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    "{} in {:?}: container settings left as they are: {e}",
                    rec.ifname,
                    rec.netns
                ),
            }
        }
        Ok(Upgraded {
            links: out,
            containers,
            ep_cache,
        })
    }
}
