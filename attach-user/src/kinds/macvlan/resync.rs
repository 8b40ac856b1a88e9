//! A parent's switch (its config and flood row) against the records: an
//! add killed after writing them, its journal lost, leaves a switch that
//! counts a port no attachment has. Found by the node's leftover scan and
//! rewritten from the records.

use crate::kinds::parent::{RowChange, set_host_hook, switch_member, write_parent};
use crate::{
    addr::Mac,
    datapath::{self, Datapath},
    error::Result,
    model::Attachment,
};

/// A parent whose switch counts other ports than its attachments.
pub(crate) struct RowDrift {
    pub parent_ifindex: u32,
    pub listed: u32,
    pub members: usize,
}

impl std::fmt::Display for RowDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the switch of parent ifindex {} counts {} port(s), its attachments {}",
            self.parent_ifindex, self.listed, self.members
        )
    }
}

/// The parents whose switch does not count their attachments.
pub(crate) fn drifted_parents(dp: &mut Datapath, records: &[Attachment]) -> Result<Vec<RowDrift>> {
    Ok(dp
        .parents()?
        .into_iter()
        .map(|(ifindex, cfg)| RowDrift {
            parent_ifindex: ifindex,
            listed: cfg.nports,
            members: records.iter().filter(|r| switch_member(r, ifindex)).count(),
        })
        .filter(|d| d.listed as usize != d.members)
        .collect())
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
