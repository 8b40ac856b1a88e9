//! The client side of the agent's socket: the CLI (and the CNI plugin) hand
//! their request to a running agent of their node, and do the work
//! themselves when there is none.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::{
    Error, ErrorKind, Result,
    cli::{Cli, Command},
};

/// One request on the socket (a JSON line).
#[derive(Serialize, Deserialize, Debug)]
pub enum Request {
    /// `attach` arguments (without the program name).
    Cli(Vec<String>),
    /// A CNI call: its environment and stdin.
    Cni {
        env: Vec<(String, String)>,
        stdin: String,
    },
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
    PathBuf::from(attach_common::STATE_ROOT).join(format!("{node_id}.sock"))
}

fn wanted(cli: &Cli) -> bool {
    // The agent runs commands, not streams.
    !matches!(
        cli.command,
        Command::Agent(_) | Command::Monitor(_) | Command::Bench(_)
    ) && std::env::var_os("ATTACH_NO_AGENT").is_none_or(|v| v.is_empty() || v == "0")
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

/// Runs the CLI's command through the agent, if one is running.
pub async fn forward(cli: &Cli) -> Option<Result<crate::commands::Done>> {
    if !wanted(cli) {
        return None;
    }
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let reply = match call(&Request::Cli(argv)).await? {
        Ok(r) => r,
        Err(e) => return Some(Err(e)),
    };
    Some(match reply.error {
        None => Ok(crate::commands::Done {
            stdout: reply.stdout,
            warnings: reply.warnings,
        }),
        Some((kind, message)) => Err(Error::new(ErrorKind::from_name(&kind), message)),
    })
}
