//! What the engine's operations return: `stats`' counters, `reconcile`'s
//! repairs, `upgrade`'s account. Serialized as the CLI's and the agent's
//! JSON: field names are a stable contract.

use attach_common::EndpointStats;
use serde::Serialize;

use crate::model::Attachment;

/// What `upgrade` did.
#[derive(Debug, Default)]
pub struct Upgraded {
    /// (pin, "updated" | "kept") for each program link.
    pub links: Vec<(String, &'static str)>,
    /// (netns, interface) of XDP endpoints whose container side got this
    /// build's settings (fraglist GRO).
    pub containers: Vec<(String, String)>,
    /// What making the endpoint cache agree with the receive table changed
    /// (a build before it, or with another slot layout).
    pub ep_cache: crate::ep_cache::SyncReport,
}

/// Counters of one attachment (eBPF backend).
#[derive(Serialize)]
pub struct AttachmentStats {
    #[serde(flatten)]
    pub attachment: Attachment,
    pub counters: Option<Counters>,
}

#[derive(Serialize, Default)]
pub struct Counters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_broadcast: u64,
    pub rx_multicast: u64,
    pub tx_broadcast: u64,
    pub tx_multicast: u64,
    pub flood_copies: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

impl From<attach_common::CgroupStats> for Counters {
    fn from(s: attach_common::CgroupStats) -> Self {
        Self {
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            ..Default::default()
        }
    }
}

impl From<EndpointStats> for Counters {
    fn from(s: EndpointStats) -> Self {
        Self {
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            rx_broadcast: s.rx_broadcast,
            rx_multicast: s.rx_multicast,
            tx_broadcast: s.tx_broadcast,
            tx_multicast: s.tx_multicast,
            flood_copies: s.flood_copies,
            rx_dropped: s.rx_dropped,
            tx_dropped: s.tx_dropped,
        }
    }
}

/// One thing `reconcile` found wrong and what it did about it.
#[derive(Serialize, Debug, Clone)]
pub struct Repair {
    pub netns: String,
    pub ifname: String,
    /// What `check` reported.
    pub drift: String,
    /// "repaired", "recreated[ on the new …]", "detached…", "kept: …" or
    /// "failed: …".
    pub action: String,
}

impl Repair {
    /// Whether the node was changed (not only found drifting, as an
    /// attachment kept while its uplink is gone is at every pass).
    pub fn changed(&self) -> bool {
        !self.action.starts_with("kept") && !self.action.ends_with("; kept")
    }
}

#[derive(Serialize)]
pub struct VerdictCount {
    pub direction: &'static str,
    pub verdict: &'static str,
    pub drop: bool,
    pub packets: u64,
}

#[derive(Serialize)]
pub struct Stats {
    pub attachments: Vec<AttachmentStats>,
    pub verdicts: Vec<VerdictCount>,
    /// Events (drops, and decisions while tracing) the ring buffer had no
    /// room for, so no `attach monitor` saw them; the frames themselves
    /// were counted in `verdicts` all the same.
    pub events_lost: u64,
}

#[cfg(test)]
mod tests {
    use super::Repair;

    #[test]
    fn only_changes_count_as_repairs() {
        let r = |action: &str| Repair {
            netns: "c1".into(),
            ifname: "eth0".into(),
            drift: "d".into(),
            action: action.into(),
        };
        for changed in [
            "repaired",
            "recreated",
            "recreated on the new eth1 (ifindex 9)",
            "detached: its parent is gone",
            "failed: no such device; detached",
            "unpinned",
        ] {
            assert!(r(changed).changed(), "{changed}");
        }
        for kept in ["kept: uplink up0 is gone (…)", "failed: busy; kept"] {
            assert!(!r(kept).changed(), "{kept}");
        }
    }
}
