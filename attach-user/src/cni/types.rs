//! The CNI wire formats: environment, network configuration, results and
//! errors, for spec versions 0.3.0 through 1.1.0.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
pub const LATEST: &str = "1.1.0";

/// Well-known error codes (CNI spec), and ours (100+).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const NOT_AVAILABLE: u32 = 50;
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// Conflicts with another attachment (MAC, address, passthru, datapath).
    pub const CONFLICT: u32 = 100;
    /// The kernel refused an operation.
    pub const SYSTEM: u32 = 101;
    /// CHECK found the attachment differing from what was made.
    pub const DRIFT: u32 = 102;
}

/// A CNI error object, printed on stdout with a non-zero exit.
#[derive(Debug, Serialize)]
pub struct CniError {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            cni_version: LATEST.into(),
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn details(mut self, d: impl Into<String>) -> Self {
        self.details = d.into();
        self
    }

    pub fn from_engine(e: crate::Error) -> Self {
        use crate::ErrorKind::*;
        let code = match e.kind {
            InvalidInput | NotFound => code::INVALID_CONFIG,
            Conflict => code::CONFLICT,
            System => code::SYSTEM,
        };
        Self::new(code, e.message)
    }
}

/// What the runtime passes in the environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub command: String,
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    pub args: Option<String>,
    pub path: Option<String>,
}

impl Env {
    pub fn from_process() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            command: get("CNI_COMMAND").unwrap_or_default(),
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            args: get("CNI_ARGS"),
            path: get("CNI_PATH"),
        }
    }

    /// The CNI_* variables as (name, value) pairs, to hand to the agent.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut out = vec![("CNI_COMMAND".to_owned(), self.command.clone())];
        for (k, v) in [
            ("CNI_CONTAINERID", &self.container_id),
            ("CNI_NETNS", &self.netns),
            ("CNI_IFNAME", &self.ifname),
            ("CNI_ARGS", &self.args),
            ("CNI_PATH", &self.path),
        ] {
            if let Some(v) = v {
                out.push((k.to_owned(), v.clone()));
            }
        }
        out
    }

    pub fn from_pairs(pairs: &[(String, String)]) -> Self {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        Self {
            command: get("CNI_COMMAND").unwrap_or_default(),
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            args: get("CNI_ARGS"),
            path: get("CNI_PATH"),
        }
    }

    pub fn require(&self, v: &Option<String>, name: &str) -> Result<String, CniError> {
        v.clone()
            .ok_or_else(|| CniError::new(code::INVALID_ENV, format!("{name} is not set")))
    }
}

/// One entry of `cni.dev/valid-attachments` (GC).
#[derive(Debug, Clone, Deserialize)]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeConfig {
    pub mac: Option<String>,
    #[serde(default)]
    pub ips: Vec<String>,
    /// The `bandwidth` capability: `ingressRate`, `ingressBurst`,
    /// `egressRate`, `egressBurst` (bits per second, bits).
    #[serde(default)]
    pub bandwidth: Option<serde_json::Map<String, Value>>,
}

/// A network configuration. Keys other than the CNI ones are the `attach
/// add` options, by their CLI names (`parent`, `mode`, `host-access`, ...).
#[derive(Debug, Clone, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin: String,
    #[serde(default)]
    pub ipam: Option<Value>,
    #[serde(default)]
    pub dns: Option<Value>,
    #[serde(rename = "runtimeConfig", default)]
    pub runtime_config: RuntimeConfig,
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<ValidAttachment>>,
    #[serde(flatten)]
    pub options: Map<String, Value>,
}

/// CNI keys that are not `attach` options.
pub const CNI_KEYS: &[&str] = &[
    "args",
    "capabilities",
    "cni.dev/attachments",
    "disableCheck",
    "disableGC",
];

/// What an IPAM plugin (or we) put in a result.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct IpamResult {
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct IpConfig {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// Whether `v` is older than 1.0.0 (whose results tag each IP with a version).
pub fn pre_1_0(v: &str) -> bool {
    v.starts_with("0.")
}

/// `a` < `b` for dotted versions.
pub fn version_lt(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a) < parse(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare() {
        assert!(version_lt("0.4.0", "1.0.0"));
        assert!(version_lt("1.0.0", "1.1.0"));
        assert!(!version_lt("1.1.0", "1.0.0"));
        assert!(pre_1_0("0.3.1") && !pre_1_0("1.0.0"));
    }

    #[test]
    fn options_are_everything_else() {
        let c: NetConf = serde_json::from_str(
            r#"{"cniVersion":"1.1.0","name":"n1","type":"attach-cni","kind":"macvlan",
                "mode":"bridge","parent":"eth1","ipam":{"type":"host-local"},
                "runtimeConfig":{"mac":"02:00:00:00:00:01"}}"#,
        )
        .unwrap();
        assert_eq!(c.options.len(), 3);
        assert_eq!(c.options["parent"], "eth1");
        assert_eq!(c.runtime_config.mac.as_deref(), Some("02:00:00:00:00:01"));
    }
}
