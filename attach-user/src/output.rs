//! Rendering results as text tables or JSON.

use crate::{engine::Stats, model::Attachment};

/// A plain text table with aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// The container's namespace, or for the host side of a nested
/// attachment (none on this node) the VM's tap.
fn netns_column(a: &Attachment) -> String {
    match &a.tap {
        Some(tap) if a.netns.is_empty() => format!("tap:{tap}"),
        _ => a.netns.clone(),
    }
}

fn dash(s: Option<String>) -> String {
    s.unwrap_or_else(|| "-".into())
}

pub fn attachments(list: &[Attachment]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            vec![
                netns_column(a),
                a.ifname.clone(),
                a.kind.name().into(),
                a.mode_name().into(),
                format!("{:?}", a.backend).to_lowercase(),
                dash(a.datapath.map(|d| d.name().to_owned())),
                a.parent.clone(),
                a.mac.to_string(),
                if a.ips.is_empty() {
                    "-".into()
                } else {
                    a.ips
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                },
                a.mtu.to_string(),
                dash(a.host_ifname.clone()),
            ]
        })
        .collect();
    table(
        &[
            "NETNS",
            "IFNAME",
            "KIND",
            "MODE",
            "BACKEND",
            "DATAPATH",
            "PARENT",
            "MAC",
            "IPS",
            "MTU",
            "HOST_IFNAME",
        ],
        &rows,
    )
}

pub fn stats(s: &Stats) -> String {
    let rows: Vec<Vec<String>> = s
        .attachments
        .iter()
        .filter_map(|a| {
            let c = a.counters.as_ref()?;
            Some(vec![
                netns_column(&a.attachment),
                a.attachment.ifname.clone(),
                c.rx_packets.to_string(),
                c.rx_bytes.to_string(),
                c.tx_packets.to_string(),
                c.tx_bytes.to_string(),
                format!("{}/{}", c.rx_broadcast, c.rx_multicast),
                c.flood_copies.to_string(),
                format!("{}/{}", c.rx_dropped, c.tx_dropped),
            ])
        })
        .collect();
    let mut out = table(
        &[
            "NETNS",
            "IFNAME",
            "RX_PKTS",
            "RX_BYTES",
            "TX_PKTS",
            "TX_BYTES",
            "RX_BC/MC",
            "FLOOD",
            "DROP_RX/TX",
        ],
        &rows,
    );
    let verdicts: Vec<Vec<String>> = s
        .verdicts
        .iter()
        .map(|v| vec![v.direction.into(), v.verdict.into(), v.packets.to_string()])
        .collect();
    out.push_str("\n\n");
    out.push_str(&table(&["DIRECTION", "VERDICT", "PACKETS"], &verdicts));
    out
}
