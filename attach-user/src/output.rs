//! Rendering results as text tables or JSON.

use crate::{engine::report::Stats, model::Attachment};

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

/// How to name an attachment in a sentence: its interface and namespace
/// ("eth0 in c1"), a VM's VLAN ("vlan100 of tap tap1"), or its kind for
/// those without an interface ("the host attachment of 4321").
pub fn what(a: &Attachment) -> String {
    match &a.tap {
        Some(tap) if !a.has_netns() => format!("{} of tap {tap}", a.ifname),
        _ if a.kind.has_interface() => format!("{} in {}", a.ifname, a.netns),
        _ => format!("the {} attachment of {}", a.kind.name(), a.netns),
    }
}

/// Where it hangs off: the parent, the device handed over, the namespace
/// joined, or the counted cgroup.
fn parent_col(a: &Attachment) -> String {
    if let Some(s) = &a.sriov {
        return if a.parent.is_empty() {
            s.device.clone()
        } else {
            format!(
                "{} (VF {} of {})",
                s.device,
                s.vf.as_ref().map_or(0, |v| v.index),
                a.parent
            )
        };
    }
    if let Some(j) = &a.join {
        return format!("join {}", j.other);
    }
    if let Some(h) = &a.host {
        return h
            .cgroup
            .as_ref()
            .map_or("-".into(), |c| format!("cgroup {}", c.display()));
    }
    if a.parent.is_empty() {
        "-".into()
    } else {
        a.parent.clone()
    }
}

pub fn attachments(list: &[Attachment]) -> String {
    let pod = |a: &Attachment| a.cni.as_ref().and_then(|c| c.pod());
    // Kubernetes pods (from the CNI plugin's CNI_ARGS): a last column, only
    // when there are any.
    let pods = list.iter().any(|a| pod(a).is_some());
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            let mut row = vec![
                netns_column(a),
                a.ifname.clone(),
                a.kind.name().into(),
                a.mode_name().into(),
                format!("{:?}", a.backend).to_lowercase(),
                dash(a.datapath.map(|d| d.name().to_owned())),
                parent_col(a),
                if a.mac.is_zero() {
                    "-".into()
                } else {
                    a.mac.to_string()
                },
                if a.ips.is_empty() {
                    "-".into()
                } else {
                    a.ips
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                },
                if a.mtu == 0 {
                    "-".into()
                } else {
                    a.mtu.to_string()
                },
                dash(a.host_ifname.clone()),
            ];
            if pods {
                row.push(dash(pod(a)));
            }
            row
        })
        .collect();
    let mut header = vec![
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
    ];
    if pods {
        header.push("POD");
    }
    table(&header, &rows) + &leases(list)
}

/// A line per DHCP lease, under the table: its server and expiry.
fn leases(list: &[Attachment]) -> String {
    list.iter()
        .filter_map(|a| {
            let l = a.dhcp.as_ref()?;
            Some(format!(
                "\n{} in {}: lease of {} from {}, expires {}",
                a.ifname,
                netns_column(a),
                l.address,
                l.server,
                crate::dhcp::lease::utc(l.expires_at)
            ))
        })
        .collect()
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
    out.push_str(&format!(
        "\n\nevents lost (event buffer full): {}",
        s.events_lost
    ));
    out
}

/// `attach features` as text: the kernel, its features, what works here.
pub fn features(r: &crate::capabilities::Report) -> String {
    use crate::features::TcHooks;
    let hooks = match r.tc_hooks {
        TcHooks::Tcx => "tcx links",
        TcHooks::Clsact => "clsact filters",
    };
    let mut out = format!(
        "kernel {}; tc programs hooked with {hooks}; node id {}\n\n",
        r.kernel,
        r.node_id.as_deref().unwrap_or("-")
    );
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let rows: Vec<Vec<String>> = r
        .features
        .iter()
        .map(|f| {
            vec![
                f.what.to_owned(),
                f.since.to_owned(),
                yes_no(f.present),
                if f.present {
                    f.used_for.to_owned()
                } else {
                    format!("without it: {}", f.without)
                },
            ]
        })
        .collect();
    out.push_str(&table(
        &["kernel feature", "since", "here", "what for"],
        &rows,
    ));
    out.push_str("\n\n");
    let rows: Vec<Vec<String>> = r
        .capabilities
        .iter()
        .map(|c| vec![c.name.to_owned(), yes_no(c.available), c.note.clone()])
        .collect();
    out.push_str(&table(&["attach", "works", "how / why not"], &rows));
    out.push_str("\n\n");
    let refused: Vec<_> = r.programs.iter().filter(|p| p.refused.is_some()).collect();
    match (&r.programs_error, refused.is_empty()) {
        (Some(e), _) => out.push_str(&format!("programs: could not be tried: {e}")),
        (None, true) => out.push_str(&format!(
            "programs: this kernel's verifier accepts all {} of this build's",
            r.programs.len()
        )),
        (None, false) => {
            out.push_str(&format!(
                "programs: this kernel's verifier refuses {} of {}:",
                refused.len(),
                r.programs.len()
            ));
            for p in refused {
                out.push_str(&format!(
                    "\n  {}: {}",
                    p.program,
                    p.refused.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    out
}
