//! What the agent's tasks share: the engine, the lock that makes requests
//! and repairs run one at a time, and the counters the metrics show.

use tokio::sync::Mutex;

use crate::Engine;

/// What the agent's tasks share.
pub struct Shared {
    pub engine: Engine,
    /// Serialises engine operations (requests, reconcile, metrics reads).
    pub busy: Mutex<()>,
    /// Repairs made since start, for metrics.
    pub repairs: std::sync::atomic::AtomicU64,
    /// Requests served on the socket since start, for metrics.
    pub requests: std::sync::atomic::AtomicU64,
}

/// One reconcile, under the lock; repairs are logged and counted.
pub async fn reconcile_once(shared: &Shared) {
    let _busy = shared.busy.lock().await;
    match shared.engine.reconcile().await {
        Ok(repairs) => {
            for r in &repairs {
                tracing::warn!(netns = %r.netns, ifname = %r.ifname, drift = %r.drift, action = %r.action, "repaired");
            }
            let changed = repairs.iter().filter(|r| r.changed()).count();
            shared
                .repairs
                .fetch_add(changed as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Err(e) => tracing::error!("reconcile failed: {e}"),
    }
}
