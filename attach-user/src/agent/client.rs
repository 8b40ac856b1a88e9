//! The client side of the agent's socket: the CLI (and the CNI plugin) hand
//! their request to a running agent of their node, and do the work
//! themselves when there is none.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::{
    Error, ErrorKind, Result,
    op::{Done, Format, Op},
};

/// One request on the socket (a JSON line): an operation, and how its
/// result is to be rendered.
#[derive(Serialize, Deserialize, Debug)]
pub struct Request {
    pub op: Op,
    #[serde(default)]
    pub format: Format,
}

/// One reply (a JSON line).
#[derive(Serialize, Deserialize, Debug)]
pub struct Reply {
    pub ok: bool,
    pub stdout: String,
    /// What the command noticed and let pass (`attach: warning: …` lines).
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default)]
    pub error: Option<(String, String)>,
}

/// The agent socket of the node the caller runs in.
pub fn socket_path(node_id: &str) -> PathBuf {
    crate::node_id::agent_socket(node_id)
}

/// Whether commands go to a running agent (ATTACH_NO_AGENT=1: never).
fn wanted() -> bool {
    std::env::var_os("ATTACH_NO_AGENT").is_none_or(|v| v.is_empty() || v == "0")
}

/// Sends `req` to the node's agent; `None` when no agent answers.
pub async fn call(req: &Request) -> Option<Result<Reply>> {
    let node = format!("node-{}", crate::netns::current_cookie().ok()?);
    let path = socket_path(&node);
    let stream = tokio::net::UnixStream::connect(&path).await.ok()?;
    Some(exchange(stream, req).await)
}

async fn exchange(stream: tokio::net::UnixStream, req: &Request) -> Result<Reply> {
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    w.write_all(line.as_bytes())
        .await
        .map_err(|e| Error::system(format!("talking to the agent: {e}")))?;
    let mut answer = String::new();
    BufReader::new(r)
        .read_line(&mut answer)
        .await
        .map_err(|e| Error::system(format!("talking to the agent: {e}")))?;
    if answer.is_empty() {
        return Err(Error::system(
            "the agent closed the connection without answering",
        ));
    }
    Ok(serde_json::from_str(&answer)?)
}

/// What became of an operation sent to the node's agent.
pub enum Forwarded {
    /// No agent runs (or ATTACH_NO_AGENT asks not to use one).
    NoAgent,
    /// An agent's socket took the request but no answer came back.
    Unanswered(Error),
    /// The agent's answer: its output, or the operation's error.
    Answered(Result<Done>),
}

/// Runs `op` through the node's agent, if one is running.
pub async fn forward(op: &Op, format: Format) -> Forwarded {
    if !wanted() {
        return Forwarded::NoAgent;
    }
    let req = Request {
        op: op.clone(),
        format,
    };
    let reply = match call(&req).await {
        None => return Forwarded::NoAgent,
        Some(Err(e)) => return Forwarded::Unanswered(e),
        Some(Ok(r)) => r,
    };
    Forwarded::Answered(match reply.error {
        None => Ok(Done {
            stdout: reply.stdout,
            warnings: reply.warnings,
        }),
        Some((kind, message)) => Err(Error::new(ErrorKind::from_name(&kind), message)),
    })
}

/// Runs `op` through the node's agent when one runs, else on `engine`
/// (made on first use). An agent that takes the request but does not
/// answer is an error, or with `fall_back` a warning and the work done here.
pub async fn run(
    op: &Op,
    format: Format,
    engine: &mut Option<crate::Engine>,
    fall_back: bool,
) -> Result<Done> {
    match forward(op, format).await {
        Forwarded::Answered(done) => return done,
        Forwarded::Unanswered(e) if !fall_back => return Err(e),
        Forwarded::Unanswered(e) => {
            tracing::warn!("the agent did not answer ({e}); working without it")
        }
        Forwarded::NoAgent => {}
    }
    let engine = match engine {
        Some(e) => e,
        None => engine.insert(crate::Engine::new()?),
    };
    crate::op::run(op, engine, format).await
}
