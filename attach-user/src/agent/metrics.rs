//! Prometheus text exposition of the datapath counters on `/metrics`, and
//! `/healthz`, served by axum.

use std::{fmt::Write as _, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::net::TcpListener;

use super::shared::Shared;
use crate::engine::Stats;

/// Label values escaped as the exposition format wants.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A per-endpoint series: name, help, and how to read it.
type Series = (
    &'static str,
    &'static str,
    fn(&crate::engine::Counters) -> u64,
);

/// Renders `stats` (and the agent's own numbers) as Prometheus text.
pub fn render(stats: &Stats, repairs: u64, requests: u64) -> String {
    let mut out = String::new();
    let counters: [Series; 11] = [
        ("rx_packets", "Packets delivered to the endpoint.", |c| {
            c.rx_packets
        }),
        ("rx_bytes", "Bytes delivered to the endpoint.", |c| {
            c.rx_bytes
        }),
        ("tx_packets", "Packets the endpoint sent.", |c| c.tx_packets),
        ("tx_bytes", "Bytes the endpoint sent.", |c| c.tx_bytes),
        (
            "rx_broadcast_packets",
            "Broadcast frames delivered to the endpoint.",
            |c| c.rx_broadcast,
        ),
        (
            "rx_multicast_packets",
            "Multicast frames delivered to the endpoint.",
            |c| c.rx_multicast,
        ),
        (
            "tx_broadcast_packets",
            "Broadcast frames the endpoint sent.",
            |c| c.tx_broadcast,
        ),
        (
            "tx_multicast_packets",
            "Multicast frames the endpoint sent.",
            |c| c.tx_multicast,
        ),
        (
            "flood_copies",
            "Copies made flooding the endpoint's frames to other endpoints.",
            |c| c.flood_copies,
        ),
        (
            "rx_dropped_packets",
            "Frames for the endpoint the datapath dropped.",
            |c| c.rx_dropped,
        ),
        (
            "tx_dropped_packets",
            "Frames from the endpoint the datapath dropped.",
            |c| c.tx_dropped,
        ),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP attach_{name}_total {help}");
        let _ = writeln!(out, "# TYPE attach_{name}_total counter");
        for a in &stats.attachments {
            let Some(c) = &a.counters else { continue };
            // Bounded labels (see labels.rs): pods by name, not sandbox.
            let labels: Vec<String> = super::labels::endpoint(&a.attachment)
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
                .collect();
            let _ = writeln!(
                out,
                "attach_{name}_total{{{}}} {}",
                labels.join(","),
                get(c)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP attach_drop_packets_total Frames the datapath dropped, by reason."
    );
    let _ = writeln!(out, "# TYPE attach_drop_packets_total counter");
    for v in stats.verdicts.iter().filter(|v| v.drop) {
        let _ = writeln!(
            out,
            "attach_drop_packets_total{{reason=\"{}\",direction=\"{}\"}} {}",
            v.verdict, v.direction, v.packets
        );
    }
    let _ = writeln!(
        out,
        "# HELP attach_verdict_packets_total Datapath decisions, by verdict."
    );
    let _ = writeln!(out, "# TYPE attach_verdict_packets_total counter");
    for v in &stats.verdicts {
        let _ = writeln!(
            out,
            "attach_verdict_packets_total{{verdict=\"{}\",direction=\"{}\"}} {}",
            v.verdict, v.direction, v.packets
        );
    }
    let _ = writeln!(
        out,
        "# HELP attach_events_lost_total Datapath events (drops, and decisions while tracing) \
         lost because the event buffer was full."
    );
    let _ = writeln!(out, "# TYPE attach_events_lost_total counter");
    let _ = writeln!(out, "attach_events_lost_total {}", stats.events_lost);
    let _ = writeln!(out, "# HELP attach_attachments Attachments of this node.");
    let _ = writeln!(out, "# TYPE attach_attachments gauge");
    let mut by: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for a in &stats.attachments {
        let key = (
            a.attachment.kind.name().to_owned(),
            format!("{:?}", a.attachment.backend).to_lowercase(),
        );
        *by.entry(key).or_default() += 1;
    }
    for ((kind, backend), n) in by {
        let _ = writeln!(
            out,
            "attach_attachments{{kind=\"{kind}\",backend=\"{backend}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP attach_reconcile_repairs_total Drift the agent repaired (repaired, recreated or detached; not what it kept as it was)."
    );
    let _ = writeln!(out, "# TYPE attach_reconcile_repairs_total counter");
    let _ = writeln!(out, "attach_reconcile_repairs_total {repairs}");
    let _ = writeln!(
        out,
        "# HELP attach_api_requests_total Requests the agent served for the CLI and the CNI plugin."
    );
    let _ = writeln!(out, "# TYPE attach_api_requests_total counter");
    let _ = writeln!(out, "attach_api_requests_total {requests}");
    out
}

/// Serves `/metrics` (Prometheus text) and `/healthz` over HTTP/1.1;
/// other paths are 404, other methods 405, HEAD answers as GET without a
/// body.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("metrics server stopped: {e}");
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let stats = {
        let _busy = s.busy.lock().await;
        s.engine.stats()
    };
    match stats {
        Ok(st) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            render(
                &st,
                s.repairs.load(std::sync::atomic::Ordering::Relaxed),
                s.requests.load(std::sync::atomic::Ordering::Relaxed),
            ),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// Alive when the agent's tasks answer and the node's records can be read
/// (the lock is not held forever).
async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    let busy = tokio::time::timeout(std::time::Duration::from_secs(5), s.busy.lock()).await;
    match busy {
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy for more than 5 s\n").into_response(),
        Ok(_guard) => match s.engine.list() {
            Ok(list) => format!("ok: {} attachment(s)\n", list.len()).into_response(),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::render;
    use crate::engine::{Stats, VerdictCount};

    #[test]
    fn lost_events_and_failed_flood_copies_are_exposed() {
        let stats = Stats {
            attachments: Vec::new(),
            verdicts: vec![VerdictCount {
                direction: "rx",
                verdict: attach_common::Verdict::DropFloodCopy.name(),
                drop: true,
                packets: 3,
            }],
            events_lost: 7,
        };
        let text = render(&stats, 0, 0);
        assert!(text.contains("\nattach_events_lost_total 7\n"), "{text}");
        assert!(text.contains("# TYPE attach_events_lost_total counter"));
        assert!(
            text.contains(
                "attach_drop_packets_total{reason=\"flood_copy_failed\",direction=\"rx\"} 3"
            ),
            "{text}"
        );
    }
}
