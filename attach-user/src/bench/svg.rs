//! A chart of a run, as a hand-written SVG (no dependencies): one panel of
//! grouped bars per kind of number, medians as bars, min–max as whiskers.

use std::fmt::Write as _;

use super::{
    metrics::fmt_value,
    report::Doc,
    stats::{Better, Series},
};

const W: f64 = 980.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const PLOT_H: f64 = 220.0;

fn color(who: &str) -> &'static str {
    match who {
        "host" => "#4d4d4d",
        "native" => "#1f77b4",
        "redirect-peer" => "#9467bd",
        "ours-tc" | "ours" => "#2ca02c",
        "ours-xdp" => "#17becf",
        "bridge" => "#ff7f0e",
        "cni" => "#d62728",
        "ours-cni" => "#98df8a",
        "ours-probed" => "#bcbd22",
        "parent-drop" => "#aaaaaa",
        "1 ep" => "#9ecae1",
        "100 ep" => "#4292c6",
        "1000 ep" => "#08519c",
        _ => "#777777",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

struct Bar {
    key: String,
    value: f64,
    lo: f64,
    hi: f64,
    label: String,
}

struct Group {
    name: String,
    bars: Vec<Bar>,
}

/// Draws one panel at `top`; returns its height.
fn panel(
    o: &mut String,
    top: f64,
    title: &str,
    unit: &str,
    groups: &[Group],
    reference: Option<(f64, &str)>,
) -> f64 {
    let groups: Vec<&Group> = groups.iter().filter(|g| !g.bars.is_empty()).collect();
    if groups.is_empty() {
        return 0.0;
    }
    let mut ymax = groups
        .iter()
        .flat_map(|g| g.bars.iter().map(|b| b.hi.max(b.value)))
        .fold(0.0f64, f64::max);
    if let Some((r, _)) = reference {
        ymax = ymax.max(r);
    }
    let step = nice_step(if ymax > 0.0 { ymax * 1.1 } else { 1.0 } / 4.0);
    let ticks = ((ymax * 1.1) / step).ceil().max(1.0) as u32;
    let ymax = step * f64::from(ticks);
    let x0 = LEFT;
    let plot_w = W - LEFT - RIGHT;
    let y_top = top + 30.0;
    let y_base = y_top + PLOT_H;
    let y = |v: f64| y_base - (v / ymax).clamp(0.0, 1.0) * PLOT_H;
    let _ = writeln!(
        o,
        r#"<text x="{x0}" y="{}" font-size="15" font-weight="bold">{}</text>"#,
        top + 18.0,
        esc(title)
    );
    // Axis and grid.
    for i in 0..=ticks {
        let v = step * f64::from(i);
        let yy = y(v);
        let _ = writeln!(
            o,
            r##"<line x1="{x0}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            x0 + plot_w,
            x0 - 4.0,
            yy + 3.0,
            fmt_value(v)
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="14" y="{:.1}" font-size="11" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
        y_top + PLOT_H / 2.0,
        y_top + PLOT_H / 2.0,
        esc(unit)
    );
    let gw = plot_w / groups.len() as f64;
    for (gi, g) in groups.iter().enumerate() {
        let gx = x0 + gw * gi as f64;
        let n = g.bars.len() as f64;
        let bw = ((gw - 16.0) / n).min(42.0);
        let start = gx + (gw - bw * n) / 2.0;
        for (bi, b) in g.bars.iter().enumerate() {
            let bx = start + bw * bi as f64;
            let by = y(b.value);
            let _ = writeln!(
                o,
                r#"<rect x="{bx:.1}" y="{by:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                bw - 2.0,
                (y_base - by).max(0.0),
                color(&b.key),
                esc(&b.key),
                esc(&b.label)
            );
            let cx = bx + (bw - 2.0) / 2.0;
            if b.hi > b.lo {
                let _ = writeln!(
                    o,
                    r##"<line x1="{cx:.1}" y1="{:.1}" x2="{cx:.1}" y2="{:.1}" stroke="#000" stroke-width="1"/>"##,
                    y(b.lo),
                    y(b.hi)
                );
            }
            let _ = writeln!(
                o,
                r#"<text x="{cx:.1}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"#,
                y(b.hi.max(b.value)) - 3.0,
                esc(&b.label)
            );
        }
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            gx + gw / 2.0,
            y_base + 15.0,
            esc(&g.name)
        );
    }
    if let Some((r, label)) = reference {
        let yy = y(r);
        let _ = writeln!(
            o,
            r##"<line x1="{x0}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#c00" stroke-dasharray="5,3"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#c00" text-anchor="end">{}</text>"##,
            x0 + plot_w,
            x0 + plot_w,
            yy - 3.0,
            esc(label)
        );
    }
    // Legend.
    let mut keys: Vec<&str> = Vec::new();
    for g in &groups {
        for b in &g.bars {
            if !keys.contains(&b.key.as_str()) {
                keys.push(&b.key);
            }
        }
    }
    let ly = y_base + 32.0;
    let mut lx = x0;
    for k in keys {
        let _ = writeln!(
            o,
            r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            ly - 9.0,
            color(k),
            lx + 14.0,
            ly,
            esc(k)
        );
        lx += 24.0 + 7.0 * k.len() as f64;
    }
    30.0 + PLOT_H + 50.0
}

/// A round axis step near `raw`: 1, 2, 2.5 or 5 times a power of ten.
fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// Series of one case, by contender.
fn case<'a>(doc: &'a Doc, metric: &str, id: &str) -> Vec<&'a Series> {
    doc.results
        .iter()
        .filter(|s| s.metric == metric && s.case == id && s.summary.is_some())
        .collect()
}

/// A group of bars relative to `reference`'s median (inverted when lower
/// is better, so that higher always reads better).
fn relative(doc: &Doc, metric: &str, id: &str, name: &str, reference: &str) -> Group {
    let rows = case(doc, metric, id);
    let Some(r) = rows
        .iter()
        .find(|s| s.contender == reference)
        .and_then(|s| s.summary)
        .map(|m| m.median)
        .filter(|v| *v > 0.0)
    else {
        return Group {
            name: name.into(),
            bars: vec![],
        };
    };
    let bars = rows
        .iter()
        .filter_map(|s| {
            let m = s.summary?;
            let f = |v: f64| match s.better {
                Better::Higher => v / r,
                Better::Lower if v > 0.0 => r / v,
                Better::Lower => 0.0,
            };
            let (a, b) = (f(m.min), f(m.max));
            Some(Bar {
                key: s.contender.clone(),
                value: f(m.median),
                lo: a.min(b),
                hi: a.max(b),
                label: format!("{:.2}", f(m.median)),
            })
        })
        .collect();
    Group {
        name: name.into(),
        bars,
    }
}

fn absolute(doc: &Doc, metric: &str, id: &str, name: &str, per: f64) -> Group {
    Group {
        name: name.into(),
        bars: case(doc, metric, id)
            .iter()
            .filter_map(|s| {
                let m = s.summary?;
                Some(Bar {
                    key: s.contender.clone(),
                    value: m.median / per,
                    lo: m.min / per,
                    hi: m.max / per,
                    label: fmt_value(m.median / per),
                })
            })
            .collect(),
    }
}

pub fn chart(doc: &Doc) -> String {
    let mut body = String::new();
    let mut y = 56.0;
    let rel = [
        ("M1", "udp64_delivered", "M1 UDP 64B rate", "host"),
        ("M3", "tcp_rr_p50", "M3 TCP RR p50", "host"),
        ("M3", "tcp_rr_p99", "M3 TCP RR p99", "host"),
        ("M4", "udp_socket_rate", "M4 UDP socket", "host"),
        ("M5", "tcp_wire_to_container", "M5 wire→ctr", "host"),
        ("M5", "tcp_container_to_wire", "M5 ctr→wire", "host"),
        (
            "M5",
            "tcp_container_to_container",
            "M5 ctr→ctr (÷native)",
            "native",
        ),
    ];
    let groups: Vec<Group> = rel
        .iter()
        .map(|(m, c, n, r)| relative(doc, m, c, n, r))
        .collect();
    y += panel(
        &mut body,
        y,
        "Datapath performance relative to host (higher is better; latency inverted)",
        "× host",
        &groups,
        Some((1.0, "host = 1.0")),
    );
    y += panel(
        &mut body,
        y,
        "M2 — XDP datapath ceiling: redirect into the container veth, XDP drop there",
        "Mpps",
        &[absolute(doc, "M2", "xdp_redirect_drop", "M2", 1.0)],
        Some((3.6, "target 3.6 Mpps")),
    );
    if let Some(m6) = doc.m6 {
        let groups: Vec<Group> = m6
            .paths
            .iter()
            .filter(|p| p.at.iter().all(|a| a.fanout.is_none()))
            .map(|p| Group {
                name: p.id.replace('_', " "),
                bars: p
                    .at
                    .iter()
                    .map(|a| Bar {
                        key: format!("{} ep", a.endpoints),
                        value: a.ns.median,
                        lo: a.ns.min,
                        hi: a.ns.max,
                        label: format!("{:.0}", a.ns.median),
                    })
                    .collect(),
            })
            .collect();
        y += panel(
            &mut body,
            y,
            "M6 — ns per packet by decision path (BPF_PROG_TEST_RUN), by endpoints in the tables",
            "ns/packet",
            &groups,
            Some((60.0, "hot path target 60 ns")),
        );
    }
    let m7: Vec<Group> = [
        "attach_1",
        "attach_10",
        "attach_100",
        "detach_1",
        "detach_10",
        "detach_100",
    ]
    .iter()
    .map(|c| {
        let n: f64 = c
            .rsplit('_')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1.0);
        absolute(doc, "M7", c, &c.replace('_', " "), n)
    })
    .collect();
    y += panel(
        &mut body,
        y,
        "M7 — control plane: ms per endpoint (lower is better)",
        "ms / endpoint",
        &m7,
        None,
    );
    let m = &doc.machine;
    let mut sub = format!(
        "kernel {}, {} ({} vCPU); {} round(s) × {:.1} s; bars: medians, whiskers: min–max",
        m.kernel,
        m.cpu_model,
        m.nproc,
        doc.config.rounds,
        doc.config.duration.as_secs_f64()
    );
    if let Some(g) = &doc.generator {
        sub.push_str(&format!("; generator: {}", g.what));
    }
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{:.0}" viewBox="0 0 {W} {:.0}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="24" font-size="18" font-weight="bold">attach bench</text>
<text x="{LEFT}" y="42" font-size="12">{}</text>
{body}</svg>
"#,
        y + 10.0,
        y + 10.0,
        esc(&sub)
    )
}
