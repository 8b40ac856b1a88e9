//! Flood rows: per parent slot, the ids of its endpoints (`attach_flood_id`),
//! each id's endpoint and place in its row in `attach_flood_ep`.
//!
//! An endpoint joins a row by being appended and leaves it by the row's
//! last id taking its place, so neither rewrites the row: both cost the
//! same with 10 endpoints on the parent as with 4000. The count that
//! bounds a flood's walk lives in the parent's config; callers publish it
//! after these writes, so a flood never reads an id not yet written. While
//! one leaves, a flood may see the moved id twice (one extra copy), never
//! the leaving one's place half written.

use attach_common::{Endpoint, FLOOD, FLOOD_EPS, FloodEp, MAP_FLOOD_V1, MAX_PORTS_PER_PARENT};

use super::node::Datapath;
use super::object::check_row_len;
use crate::error::Result;

/// Index of entry `pos` of row `slot` in the flood table.
fn at(slot: u32, pos: u32) -> u32 {
    slot * MAX_PORTS_PER_PARENT + pos
}

impl Datapath {
    /// Writes a parent's whole flood row: its endpoints, then their ids.
    /// Callers then publish the new count in the parent's config.
    pub fn write_flood_row(&mut self, slot: u32, eps: &[Endpoint]) -> Result<()> {
        check_row_len(
            eps.len(),
            MAX_PORTS_PER_PARENT,
            "a parent",
            "eBPF endpoints",
        )?;
        let ids: Vec<u32> = eps.iter().map(|e| e.id).collect();
        let entries: Vec<FloodEp> = eps
            .iter()
            .zip(0..)
            .map(|(ep, pos)| FloodEp { ep: *ep, pos })
            .collect();
        self.write_array_keys(FLOOD_EPS, &ids, &entries)?;
        self.write_array(FLOOD, at(slot, 0), &ids)
    }

    /// The place of endpoint `id` in row `slot` of `nports` ids, if it is
    /// there (its entry's place holds its id).
    pub fn flood_place(&mut self, slot: u32, nports: u32, id: u32) -> Result<Option<u32>> {
        let Ok(entry) = self.array(FLOOD_EPS)?.get(&id, 0) else {
            return Ok(None);
        };
        if entry.ep.id != id || entry.pos >= nports {
            return Ok(None);
        }
        let there = self.array(FLOOD)?.get(&at(slot, entry.pos), 0)?;
        Ok((there == id).then_some(entry.pos))
    }

    /// Row `slot`'s first `nports` ids, each with its entry (none where the
    /// entry is missing or another id's), as a flood walks them.
    pub fn flood_row(&mut self, slot: u32, nports: u32) -> Result<Vec<(u32, Option<FloodEp>)>> {
        let row = self.array(FLOOD)?;
        let ids: Vec<u32> = (0..nports.min(MAX_PORTS_PER_PARENT))
            .map(|pos| row.get(&at(slot, pos), 0))
            .collect::<std::result::Result<_, _>>()?;
        let eps = self.array(FLOOD_EPS)?;
        Ok(ids
            .into_iter()
            .map(|id| (id, eps.get(&id, 0).ok().filter(|e| e.ep.id == id)))
            .collect())
    }

    /// Appends `ep` to row `slot`, which holds `nports` ids; the caller
    /// publishes `nports + 1`.
    pub fn flood_append(&mut self, slot: u32, nports: u32, ep: &Endpoint) -> Result<()> {
        check_row_len(
            nports as usize + 1,
            MAX_PORTS_PER_PARENT,
            "a parent",
            "eBPF endpoints",
        )?;
        let entry = FloodEp {
            ep: *ep,
            pos: nports,
        };
        self.array(FLOOD_EPS)?.set(ep.id, &entry, 0)?;
        self.array(FLOOD)?.set(at(slot, nports), &ep.id, 0)?;
        Ok(())
    }

    /// Takes endpoint `id` out of row `slot`, which holds `nports` ids: the
    /// last id moves into its place; the caller publishes `nports - 1`.
    /// `false` (nothing written) if the row does not hold it where its
    /// entry says.
    pub fn flood_remove(&mut self, slot: u32, nports: u32, id: u32) -> Result<bool> {
        let Some(pos) = self.flood_place(slot, nports, id)? else {
            return Ok(false);
        };
        let last = nports - 1;
        if pos != last {
            let moved = self.array(FLOOD)?.get(&at(slot, last), 0)?;
            let mut entry = self.array(FLOOD_EPS)?.get(&moved, 0)?;
            entry.pos = pos;
            self.array(FLOOD_EPS)?.set(moved, &entry, 0)?;
            self.array(FLOOD)?.set(at(slot, pos), &moved, 0)?;
        }
        Ok(true)
    }
}

impl Datapath {
    /// Whether the node still has the flood table of builds before rows of
    /// ids (its rows are not in this build's table until written anew).
    pub fn has_v1_flood(&self) -> bool {
        self.dir().join(MAP_FLOOD_V1).exists()
    }

    /// Removes the pin of that table (programs still using it keep it
    /// until their links are updated).
    pub fn remove_v1_flood(&self) -> Result<()> {
        match std::fs::remove_file(self.dir().join(MAP_FLOOD_V1)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(crate::error::Error::system(
                format!("removing the pin of {MAP_FLOOD_V1}: {e}"),
            )),
            _ => Ok(()),
        }
    }
}
