//! The engine's operations as values. The CLI, the agent's clients and the
//! CNI plugin build an [`Op`]; [`run`] executes it on an engine and renders
//! its result; the agent's socket carries it as JSON (never argv).

mod run;
mod selector;

use serde::{Deserialize, Serialize};

pub use run::{Done, render_error, run};
pub use selector::{CheckArgs, Selector, StatsArgs};

use crate::{kinds::AddRequest, model::CniRef};

/// How a result is shown: text for people, JSON for programs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// One operation on the node's attachments.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Attach; `cni` names the CNI identity that owns the attachment.
    Add {
        request: AddRequest,
        #[serde(default)]
        cni: Option<CniRef>,
    },
    /// Detach what the selector names (nothing attached is not an error).
    Del(Selector),
    /// Detach the CNI attachment `cni` as `ifname` (CNI DEL: idempotent).
    DelCni {
        cni: CniRef,
        ifname: String,
        #[serde(default)]
        netns: Option<String>,
    },
    /// Detach every attachment of CNI network `network` whose (container
    /// id, interface) is not in `valid` (CNI GC).
    GcCni {
        network: String,
        valid: Vec<(String, String)>,
    },
    /// Check one attachment (or all) against reality.
    Check(CheckArgs),
    List,
    Reconcile,
    Upgrade {
        #[serde(default)]
        force: bool,
    },
    Stats(StatsArgs),
    Features,
    Reset,
}

impl Op {
    /// The command's name, for messages (`attach add needs …`).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Add { .. } => "add",
            Op::Del(_) | Op::DelCni { .. } | Op::GcCni { .. } => "del",
            Op::Check(_) => "check",
            Op::List => "list",
            Op::Reconcile => "reconcile",
            Op::Upgrade { .. } => "upgrade",
            Op::Stats(_) => "stats",
            Op::Features => "features",
            Op::Reset => "reset",
        }
    }
}
