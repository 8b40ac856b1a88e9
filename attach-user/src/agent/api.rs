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

/// The gid of group `name` (or a number).
pub fn group_id(name: &str) -> Result<u32> {
    if let Ok(gid) = name.parse() {
        return Ok(gid);
    }
    let c = std::ffi::CString::new(name)
        .map_err(|_| Error::invalid(format!("--socket-group {name:?} is not a group name")))?;
    // SAFETY: getgrnam reads a NUL-terminated name; the result is only
    // read here, before any other call could reuse its buffer.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        return Err(Error::not_found(format!(
            "--socket-group {name:?}: no such group"
        )));
    }
    // SAFETY: non-null, points at a valid group entry.
    Ok(unsafe { (*gr).gr_gid })
}

/// Binds the socket, replacing a stale one (no agent answering on it):
/// root's alone, or also `group`'s.
pub fn bind(path: &Path, group: Option<u32>) -> Result<UnixListener> {
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
    // Only root (and the group given) may ask the agent to change the
    // network; each caller's credentials are checked again on connect.
    use std::os::unix::fs::PermissionsExt;
    let mode = match group {
        Some(gid) => {
            std::os::unix::fs::chown(path, Some(0), Some(gid))?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(l)
}

pub async fn serve(listener: UnixListener, shared: Arc<Shared>, group: Option<u32>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let s = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, &s, group).await {
                        tracing::warn!("api connection: {e}");
                    }
                });
            }
            Err(e) => tracing::warn!("api accept: {e}"),
        }
    }
}

/// Why a caller may not be served, if it may not: root, or the socket's
/// group, only (the file mode is not trusted alone: the socket may have
/// been reached through a descriptor passed on, or its mode changed).
fn refusal(stream: &UnixStream, group: Option<u32>) -> Option<String> {
    let Ok(cred) = stream.peer_cred() else {
        return Some("the caller's credentials cannot be read".into());
    };
    if cred.uid() == 0 || group.is_some_and(|g| g == cred.gid()) {
        return None;
    }
    Some(format!(
        "the agent serves root{}: uid {} (gid {}) is refused",
        group.map(|g| format!(" and group {g}")).unwrap_or_default(),
        cred.uid(),
        cred.gid()
    ))
}

async fn handle(stream: UnixStream, shared: &Shared, group: Option<u32>) -> std::io::Result<()> {
    let refused = refusal(&stream, group);
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(r).read_line(&mut line).await? == 0 {
        // Closed without a request: a liveness probe, nothing to answer.
        return Ok(());
    }
    if let Some(why) = refused {
        tracing::warn!("api: {why}");
        let reply = Reply {
            ok: false,
            stdout: String::new(),
            warnings: Vec::new(),
            error: Some(("system".into(), why)),
        };
        let mut out = serde_json::to_string(&reply).expect("serializable");
        out.push('\n');
        return w.write_all(out.as_bytes()).await;
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
