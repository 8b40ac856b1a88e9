//! Which attachment an operation is about, as `del`, `check` and `stats`
//! name it.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

// An attachment by its container (NETNS and interface), or the host side
// of a nested container by tap and VLAN. (No doc comment: it would replace
// the commands' own help.)
#[derive(Args, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// The container's network namespace: a name under /run/netns, a path, or
    /// a pid (for host and container attachments: NETNS as given to add).
    // Required unless --tap (or check's --all): checked when run, since
    // clap cannot name an argument only one of its users has.
    #[arg(long, value_name = "NETNS", conflicts_with = "tap")]
    #[serde(default)]
    pub netns: Option<String>,
    /// Interface name inside the container. Default: the host or container
    /// attachment of NETNS if there is one, else eth0.
    #[arg(long)]
    #[serde(default)]
    pub ifname: Option<String>,
    /// The host side of a nested container: the VM's tap (with --vlan).
    #[arg(long, value_name = "IF", requires = "vlan", conflicts_with = "ifname")]
    #[serde(default)]
    pub tap: Option<String>,
    /// With --tap: the container's VLAN.
    #[arg(long, value_name = "N", value_parser = crate::parse::vlan, requires = "tap")]
    #[serde(default)]
    pub vlan: Option<u16>,
    /// With --tap: the VM uplink's S-tag.
    #[arg(long, value_name = "OUTER", value_parser = crate::parse::vlan, requires = "tap")]
    #[serde(default)]
    pub qinq: Option<u16>,
}

// `check`: one attachment, or every one.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckArgs {
    /// Check every attachment of the node; exits non-zero if one drifted,
    /// naming each.
    #[arg(long, conflicts_with_all = ["netns", "tap"])]
    #[serde(default)]
    pub all: bool,
    #[command(flatten)]
    #[serde(flatten)]
    pub target: Selector,
}

// `stats`: every attachment's counters, or one's.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsArgs {
    /// Only this container's attachment (name under /run/netns, path or pid).
    #[arg(long, value_name = "NETNS")]
    #[serde(default)]
    pub netns: Option<String>,
    /// With --netns: the interface inside the container. Default: the host
    /// attachment of NETNS if there is one, else eth0.
    #[arg(long, requires = "netns")]
    #[serde(default)]
    pub ifname: Option<String>,
}

impl Selector {
    /// Refuses an empty NETNS: it names no container (and the host side
    /// of a nested attachment is recorded without one).
    pub fn check_netns(&self) -> Result<()> {
        match &self.netns {
            Some(ns) if ns.trim().is_empty() => Err(Error::invalid(format!(
                "--netns {ns:?} is empty: name the container's network namespace \
                 (a name under /run/netns, a path or a pid), or give --tap with --vlan"
            ))),
            _ => Ok(()),
        }
    }

    /// "nothing attached as eth0 in NETNS", "nothing attached in NETNS",
    /// "nothing attached as VLAN of tap TAP".
    pub fn nothing(&self) -> String {
        match (&self.netns, &self.ifname) {
            (Some(ns), None) => format!("nothing attached in {ns}"),
            _ => format!("nothing attached as {}", self.what()),
        }
    }

    /// How the asked-for attachment is named in messages.
    pub fn what(&self) -> String {
        match (&self.netns, &self.tap, self.vlan) {
            (Some(ns), _, _) => match &self.ifname {
                Some(i) => format!("{i} in {ns}"),
                None => format!("an attachment in {ns}"),
            },
            (None, Some(tap), Some(v)) => format!(
                "{} of tap {tap}",
                crate::kinds::nested::vlan_ifname(self.qinq, v)
            ),
            _ => "?".into(),
        }
    }
}
