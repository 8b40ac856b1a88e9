//! Address management: host-local in this process (see `hostlocal`), or
//! the IPAM plugin named in `ipam.type` run as the spec asks: same
//! environment, the network configuration on stdin. `"inProcess": false`
//! in the `ipam` object runs the host-local binary instead.

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
};

use serde_json::Value;

use super::{
    hostlocal,
    types::{CniError, Env, IpamResult, LATEST, NetConf, code, version_lt},
};

/// The `ipam` key that, false, runs the host-local binary rather than this
/// process's host-local.
pub const IN_PROCESS: &str = "inProcess";

pub enum Ipam {
    /// host-local, here.
    HostLocal(hostlocal::Config),
    /// A plugin binary.
    Exec(Exec),
}

pub struct Exec {
    plugin: PathBuf,
    /// The configuration as given.
    conf: Value,
}

/// The container's ID and interface, which IPAM keys its leases by (the
/// commands have made sure both are set).
fn who(env: &Env) -> (&str, &str) {
    (
        env.container_id.as_deref().unwrap_or(""),
        env.ifname.as_deref().unwrap_or(""),
    )
}

impl Ipam {
    /// The IPAM of `conf`, if it has one.
    pub fn of(conf: &NetConf, raw: &Value, env: &Env) -> Result<Option<Self>, CniError> {
        let Some(ipam) = &conf.ipam else {
            return Ok(None);
        };
        let ty = ipam
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "ipam has no \"type\""))?;
        if ty.contains('/') || ty.is_empty() {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("ipam type {ty:?} is not a plugin name"),
            ));
        }
        if ty == "host-local" {
            let in_process = match ipam.get(IN_PROCESS) {
                None | Some(Value::Bool(true)) => true,
                Some(Value::Bool(false)) => false,
                Some(v) => {
                    return Err(CniError::new(
                        code::INVALID_CONFIG,
                        format!("ipam key {IN_PROCESS:?} must be true or false, not {v}"),
                    ));
                }
            };
            if in_process {
                match hostlocal::Config::load(raw, env) {
                    Ok(c) => return Ok(Some(Self::HostLocal(c))),
                    // Never a guess: the binary reads what this does not.
                    Err(why) => tracing::debug!("host-local runs as its binary: {why}"),
                }
            }
        }
        let plugin = find(env, ty)?;
        Ok(Some(Self::Exec(Exec {
            plugin,
            conf: raw.clone(),
        })))
    }

    pub fn add(&self, env: &Env) -> Result<IpamResult, CniError> {
        match self {
            Self::HostLocal(c) => {
                let (id, ifname) = who(env);
                c.add(id, ifname)
            }
            Self::Exec(e) => e.add(env),
        }
    }

    pub fn del(&self, env: &Env) -> Result<(), CniError> {
        match self {
            Self::HostLocal(c) => {
                let (id, ifname) = who(env);
                c.del(id, ifname)
            }
            Self::Exec(e) => e.del(env),
        }
    }

    /// CHECK needs a version that has it (0.4.0+); older configurations skip it.
    pub fn check(&self, conf: &NetConf, env: &Env) -> Result<(), CniError> {
        if version_lt(&conf.cni_version, "0.4.0") {
            return Ok(());
        }
        match self {
            Self::HostLocal(c) => {
                let (id, ifname) = who(env);
                c.check(id, ifname)
            }
            Self::Exec(e) => e.call("CHECK", env).map(drop),
        }
    }
}

impl Exec {
    /// Runs `command` with the runtime's version; if the plugin does not
    /// speak it (Debian's host-local stops at 1.0.0), again with the highest
    /// version both speak. Asking first spares a VERSION exec per call in
    /// the common case.
    fn call(&self, command: &str, env: &Env) -> Result<Value, CniError> {
        match self.exec(command, env, &self.conf) {
            Err(e) if e.code == code::INCOMPATIBLE_VERSION => {
                let asked = self.conf["cniVersion"].as_str().unwrap_or(LATEST);
                let mut conf = self.conf.clone();
                conf["cniVersion"] = Value::String(self.pick_version(asked, env)?);
                self.exec(command, env, &conf)
            }
            r => r,
        }
    }

    /// The highest version both we (as asked by the runtime) and the plugin speak.
    fn pick_version(&self, asked: &str, env: &Env) -> Result<String, CniError> {
        let out = self.exec("VERSION", env, &serde_json::json!({"cniVersion": LATEST}))?;
        let supported: Vec<String> = out
            .get("supportedVersions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        supported
            .into_iter()
            .filter(|v| !version_lt(asked, v))
            .max_by(|a, b| {
                if version_lt(a, b) {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                }
            })
            .ok_or_else(|| {
                CniError::new(
                    code::INCOMPATIBLE_VERSION,
                    format!(
                        "ipam plugin {} supports no version up to {asked}",
                        self.plugin.display()
                    ),
                )
            })
    }

    pub fn add(&self, env: &Env) -> Result<IpamResult, CniError> {
        let out = self.call("ADD", env)?;
        serde_json::from_value(out).map_err(|e| {
            CniError::new(
                code::DECODE,
                format!("ipam result from {}: {e}", self.plugin.display()),
            )
        })
    }

    pub fn del(&self, env: &Env) -> Result<(), CniError> {
        self.call("DEL", env).map(drop)
    }

    fn exec(&self, command: &str, env: &Env, conf: &Value) -> Result<Value, CniError> {
        let mut cmd = Command::new(&self.plugin);
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", env.container_id.as_deref().unwrap_or(""))
            .env("CNI_NETNS", env.netns.as_deref().unwrap_or(""))
            .env("CNI_IFNAME", env.ifname.as_deref().unwrap_or(""))
            .env("CNI_ARGS", env.args.as_deref().unwrap_or(""))
            .env("CNI_PATH", env.path.as_deref().unwrap_or(""))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                format!("cannot run ipam plugin {}: {e}", self.plugin.display()),
            )
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(conf.to_string().as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                format!("ipam plugin {}: {e}", self.plugin.display()),
            )
        })?;
        let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        if !out.status.success() {
            // Pass the plugin's own error on, with its code.
            let (c, msg) = match &parsed {
                Some(v) => (
                    v.get("code")
                        .and_then(Value::as_u64)
                        .unwrap_or(code::IO_FAILURE as u64) as u32,
                    v.get("msg")
                        .and_then(Value::as_str)
                        .unwrap_or("failed")
                        .to_owned(),
                ),
                None => (
                    code::IO_FAILURE,
                    String::from_utf8_lossy(&out.stdout).trim().to_owned(),
                ),
            };
            let theirs = parsed
                .as_ref()
                .and_then(|v| v.get("details"))
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty());
            return Err(CniError::new(c, msg).details(match theirs {
                Some(d) => format!("ipam plugin {} ({command}): {d}", self.plugin.display()),
                None => format!("ipam plugin {} ({command})", self.plugin.display()),
            }));
        }
        Ok(parsed.unwrap_or(Value::Null))
    }
}

/// Finds plugin `name` in the directories of CNI_PATH.
fn find(env: &Env, name: &str) -> Result<PathBuf, CniError> {
    let path = env.path.as_deref().ok_or_else(|| {
        CniError::new(
            code::INVALID_ENV,
            format!("CNI_PATH is not set: it is where the ipam plugin {name:?} is looked for"),
        )
    })?;
    std::env::split_paths(path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                code::INVALID_CONFIG,
                format!("ipam plugin {name:?} not found in CNI_PATH {path:?}"),
            )
        })
}
