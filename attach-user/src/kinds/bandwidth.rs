//! An endpoint's rate limits in the datapath, the same for every kind our
//! programs switch: its entry of `attach_bw` (by endpoint id) written when
//! it is made or repaired, checked, and cleared when it goes.

use crate::{
    error::{Error, Result},
    model::Attachment,
    node::Node,
};

/// Writes `rec`'s limits (none: a cleared entry, as the id may have had
/// another endpoint's) with full buckets.
pub(super) fn put(node: &Node, rec: &Attachment) -> Result<()> {
    let Some(id) = rec.endpoint_id else {
        return Ok(());
    };
    node.datapath()?
        .put_bandwidth(id, rec.bandwidth.as_ref())
        .map_err(|e| e.context("writing the endpoint's rate limits"))
}

/// The datapath's entry for `rec` has its limits.
pub(super) fn check(node: &Node, rec: &Attachment) -> Result<()> {
    let Some(id) = rec.endpoint_id else {
        return Ok(());
    };
    if rec.bandwidth.is_none() && !limits_pinned(node) {
        return Ok(());
    }
    if node.datapath()?.has_bandwidth(id, rec.bandwidth.as_ref())? {
        return Ok(());
    }
    Err(Error::system(format!(
        "the rate limits of endpoint {id} in the datapath are not the recorded {}",
        match &rec.bandwidth {
            Some(b) => serde_json::to_string(b).unwrap_or_default(),
            None => "none".into(),
        }
    )))
}

/// Clears `rec`'s entry, if it had limits and the node's maps are still
/// pinned.
pub(super) fn clear(node: &Node, rec: &Attachment) -> Result<()> {
    match rec.endpoint_id {
        Some(id) if rec.bandwidth.is_some() && limits_pinned(node) => {
            node.datapath()?.put_bandwidth(id, None)
        }
        _ => Ok(()),
    }
}

fn limits_pinned(node: &Node) -> bool {
    node.pin_dir().join(attach_common::MAP_BW).exists()
}
