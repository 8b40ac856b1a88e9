//! A parent's switch (its config and flood row) against the records: an
//! add killed after writing them, its journal lost, leaves a switch that
//! counts a port no attachment has; a row can also list the wrong ids for
//! the right count. Found by the node's leftover scan and rewritten from
//! the records.

use attach_common::PARENT_F_SWITCH;

use crate::kinds::parent::{
    RowChange, member_endpoint, set_host_hook, shares_switch, switch_member, write_parent,
};
use crate::{
    addr::Mac,
    datapath::{self, Datapath},
    error::Result,
    model::Attachment,
};

/// A parent whose switch counts other ports than its attachments, or whose
/// flood row lists others.
pub(crate) struct RowDrift {
    pub parent_ifindex: u32,
    pub listed: u32,
    pub members: usize,
    /// With the right count: what the row gets wrong.
    pub row: Option<String>,
    /// With a right row: whether the config says the parent is its
    /// switch's uplink when the records say otherwise (`Some(said)`).
    pub uplink_mark: Option<bool>,
}

impl std::fmt::Display for RowDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(said) = self.uplink_mark {
            return write!(
                f,
                "the config of parent ifindex {} {} it the uplink of an eBPF switch, its records {}",
                self.parent_ifindex,
                if said { "makes" } else { "does not make" },
                if said { "do not" } else { "do" }
            );
        }
        match &self.row {
            Some(what) => write!(
                f,
                "the flood row of parent ifindex {} {what}",
                self.parent_ifindex
            ),
            None => write!(
                f,
                "the switch of parent ifindex {} counts {} port(s), its attachments {}",
                self.parent_ifindex, self.listed, self.members
            ),
        }
    }
}

/// The parents whose switch does not count their attachments, or whose
/// row does not list exactly theirs (each id once, its entry pointing back
/// at its place, for the endpoint the record makes).
pub(crate) fn drifted_parents(dp: &mut Datapath, records: &[Attachment]) -> Result<Vec<RowDrift>> {
    let mut drifted = Vec::new();
    for (ifindex, cfg) in dp.parents()? {
        let members: Vec<_> = records
            .iter()
            .filter(|r| switch_member(r, ifindex))
            .collect();
        let row = if cfg.nports as usize == members.len() {
            let listed = dp.flood_row(cfg.slot, cfg.nports)?;
            row_mismatch(&listed, &members)
        } else {
            None
        };
        let said = cfg.flags & PARENT_F_SWITCH != 0;
        let uplink_mark =
            (row.is_none() && !members.is_empty() && said != shares_switch(records, ifindex))
                .then_some(said);
        if cfg.nports as usize != members.len() || row.is_some() || uplink_mark.is_some() {
            drifted.push(RowDrift {
                parent_ifindex: ifindex,
                listed: cfg.nports,
                members: members.len(),
                row,
                uplink_mark,
            });
        }
    }
    Ok(drifted)
}

/// What row `listed` (ids with their entries) gets wrong against the
/// members' endpoints, if anything. The endpoint's state bits (up, down)
/// move at run time and are not compared.
fn row_mismatch(
    listed: &[(u32, Option<attach_common::FloodEp>)],
    members: &[&Attachment],
) -> Option<String> {
    let wanted: Vec<_> = members.iter().filter_map(|r| member_endpoint(r)).collect();
    for (pos, (id, entry)) in listed.iter().enumerate() {
        let Some(want) = wanted.iter().find(|e| e.id == *id) else {
            return Some(format!("lists endpoint id {id}, which no attachment has"));
        };
        if listed[..pos].iter().any(|(other, _)| other == id) {
            return Some(format!("lists endpoint id {id} twice"));
        }
        match entry {
            None => return Some(format!("has no entry for endpoint id {id}")),
            Some(e) if e.pos as usize != pos => {
                return Some(format!(
                    "places endpoint id {id} at {} but lists it at {pos}",
                    e.pos
                ));
            }
            Some(e)
                if (e.ep.host_ifindex, e.ep.mac, e.ep.mode)
                    != (want.host_ifindex, want.mac, want.mode) =>
            {
                return Some(format!("holds a stale entry for endpoint id {id}"));
            }
            Some(_) => {}
        }
    }
    None
}

/// Rewrites each drifted parent's switch from the records; a parent none
/// of them is on loses its entry and programs. Returns what it found.
pub(crate) fn resync_parents(dp: &mut Datapath, records: &[Attachment]) -> Result<Vec<RowDrift>> {
    let drifted = drifted_parents(dp, records)?;
    for d in &drifted {
        let ifindex = d.parent_ifindex;
        let Some(cfg) = dp.parent(ifindex)? else {
            continue;
        };
        match records.iter().find(|r| switch_member(r, ifindex)) {
            Some(member) => {
                write_parent(
                    dp,
                    ifindex,
                    cfg.slot,
                    (Mac(cfg.mac), cfg.mtu),
                    member.datapath.unwrap_or_default(),
                    records,
                    RowChange::Rebuild,
                )?;
                set_host_hook(dp, member, records)?;
            }
            None => {
                dp.remove_parent(ifindex)?;
                for pin in datapath::parent_links(ifindex) {
                    dp.unpin(&pin)?;
                }
            }
        }
    }
    Ok(drifted)
}
