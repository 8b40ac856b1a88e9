//! `attach agent`: the long-running side of a node. It reconciles at start,
//! periodically and when a link an attachment stands on changes, serves
//! Prometheus metrics, bridges the programs' logs into its own, and serves
//! the CLI and the CNI plugin on a unix socket (both also work without it). Requests are handled one at a time, like
//! the CLI's own runs under the node lock.

pub mod api;
pub mod client;
mod labels;
mod link_watch;
mod logs;
mod mac_watch;
pub mod metrics;
mod shared;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use clap::Args;
use tokio::sync::Mutex;

use self::shared::{Shared, reconcile_once};
use crate::{Engine, Error, Result};

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Serve Prometheus metrics (/metrics) and a health check (/healthz)
    /// on this address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9469")]
    pub metrics_addr: SocketAddr,
    /// Do not serve metrics.
    #[arg(long)]
    pub no_metrics: bool,
    /// Unix socket of the API (default: one per node, under /run/attach).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Also serve the API to members of this group (name or gid): the
    /// socket becomes group-accessible, and each caller's credentials are
    /// checked (root, or this primary group). Default: root only.
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// Seconds between reconcile passes (0: only at start).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub reconcile_interval: u64,
}

pub async fn run(args: &AgentArgs) -> Result<()> {
    let engine = Engine::new()?;
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| client::socket_path(&engine.node_id));
    let shared = Arc::new(Shared {
        engine,
        busy: Mutex::new(()),
        repairs: Default::default(),
        requests: Default::default(),
    });
    tracing::info!(node = %shared.engine.node_id, socket = %socket.display(), "agent starting");
    reconcile_once(&shared).await;

    let group = args
        .socket_group
        .as_deref()
        .map(api::group_id)
        .transpose()?;
    let listener = api::bind(&socket, group)?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(api::serve(listener, shared.clone(), group));
    if !args.no_metrics {
        let l = tokio::net::TcpListener::bind(args.metrics_addr)
            .await
            .map_err(|e| {
                Error::system(format!(
                    "cannot serve metrics on {}: {e}",
                    args.metrics_addr
                ))
            })?;
        tracing::info!(addr = %args.metrics_addr, "serving metrics");
        tasks.spawn(metrics::serve(l, shared.clone()));
    }
    if args.reconcile_interval > 0 {
        let every = Duration::from_secs(args.reconcile_interval);
        let s = shared.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                reconcile_once(&s).await;
            }
        });
    }
    tasks.spawn(link_watch::watch(shared.clone()));
    tasks.spawn(mac_watch::watch(shared.clone()));
    tasks.spawn(logs::bridge(shared.engine.pin_dir().to_owned()));

    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    };
    stop.await;
    tracing::info!("agent stopping; the datapath stays");
    tasks.abort_all();
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
