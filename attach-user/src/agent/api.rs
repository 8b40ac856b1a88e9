//! The agent's unix socket: one JSON-line request, one JSON-line reply.

use std::{path::Path, sync::Arc};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

use super::{
    client::{Reply, Request},
    shared::Shared,
};
use crate::{Error, Result};

/// Binds the socket, replacing a stale one (no agent answering on it).
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::conflict(format!(
                "an agent already serves this node on {}",
                path.display()
            )));
        }
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)
        .map_err(|e| Error::system(format!("cannot listen on {}: {e}", path.display())))?;
    // Only root may ask the agent to change the network.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

pub async fn serve(listener: UnixListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let s = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, &s).await {
                        tracing::warn!("api connection: {e}");
                    }
                });
            }
            Err(e) => tracing::warn!("api accept: {e}"),
        }
    }
}

async fn handle(stream: UnixStream, shared: &Shared) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(r).read_line(&mut line).await? == 0 {
        // Closed without a request: a liveness probe, nothing to answer.
        return Ok(());
    }
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(req) => answer(req, shared).await,
        Err(e) => Reply {
            ok: false,
            stdout: String::new(),
            warnings: Vec::new(),
            error: Some(("invalid_input".into(), format!("bad request: {e}"))),
        },
    };
    let mut out = serde_json::to_string(&reply).expect("serializable");
    out.push('\n');
    w.write_all(out.as_bytes()).await
}

async fn answer(req: Request, shared: &Shared) -> Reply {
    shared
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(?req, "request");
    let _busy = shared.busy.lock().await;
    match crate::op::run(&req.op, &shared.engine, req.format).await {
        Ok(done) => Reply {
            ok: true,
            stdout: done.stdout,
            warnings: done.warnings,
            error: None,
        },
        Err(e) => Reply {
            ok: false,
            stdout: String::new(),
            warnings: Vec::new(),
            error: Some((e.kind.name().into(), e.message)),
        },
    }
}
