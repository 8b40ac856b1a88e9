//! Running the `attach-cni` plugin the way a container runtime does: CNI_*
//! environment, the network configuration on stdin, inside the lab's node.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::{attach::Attach, netns::Netns};

/// Where Debian's reference plugins (host-local, macvlan, ...) live.
pub const SYSTEM_CNI_DIR: &str = "/usr/lib/cni";

/// The plugin binary: beside `attach` (the same cargo target directory).
pub fn plugin() -> Result<PathBuf> {
    let p = Attach::bin()?.with_file_name("attach-cni");
    anyhow::ensure!(
        p.is_file(),
        "{} not built (cargo build -p attach-user)",
        p.display()
    );
    Ok(p)
}

/// What one plugin call returned.
#[derive(Debug)]
pub struct Reply {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {:?}\nstderr: {}", self.stdout, self.stderr)
        })
    }

    /// The CNI error code of a failed call.
    pub fn code(&self) -> u64 {
        assert!(!self.ok, "expected a failure, got {:?}", self.stdout);
        self.json()["code"].as_u64().expect("error code")
    }
}

/// A runtime's view: the command, its environment and the configuration.
pub struct Call<'a> {
    pub node: &'a Netns,
    pub command: &'a str,
    pub container_id: &'a str,
    pub netns: Option<&'a Path>,
    pub ifname: &'a str,
    pub env_extra: Vec<(&'a str, &'a str)>,
}

impl Call<'_> {
    pub fn run(&self, conf: &str) -> Result<Reply> {
        self.run_plugin(&plugin()?, conf)
    }

    /// Runs `bin` (attach-cni or a reference plugin) as the runtime would.
    pub fn run_plugin(&self, bin: &Path, conf: &str) -> Result<Reply> {
        let plugin = self::plugin()?;
        let dir = plugin.parent().expect("plugin dir").to_owned();
        let cni_path = format!("{}:{SYSTEM_CNI_DIR}", dir.display());
        let netns = self
            .netns
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut cmd = self.node.command(&[bin.to_str().expect("utf-8 path")]);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", self.command)
            .env("CNI_CONTAINERID", self.container_id)
            .env("CNI_NETNS", &netns)
            .env("CNI_IFNAME", self.ifname)
            .env("CNI_PATH", &cni_path)
            .env("CNI_ARGS", "IgnoreUnknown=1");
        for (k, v) in &self.env_extra {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(conf.as_bytes())?;
        let out = child.wait_with_output()?;
        Ok(Reply {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// A plugin chain (a conflist's `plugins`) run as a runtime runs one: each
/// plugin gets the list's `cniVersion` and `name`, the `runtimeConfig` keys
/// its `capabilities` ask for, and the previous plugin's result as
/// `prevResult`; DEL goes in reverse order with the ADD's final result.
pub struct Chain<'a> {
    pub call: Call<'a>,
    /// `{"cniVersion", "name", "plugins": [...]}`.
    pub list: Value,
    /// What the runtime offers, by capability (`portMappings`, `bandwidth`, ...).
    pub runtime_config: Value,
}

impl Chain<'_> {
    /// The binary of a plugin `type`: ours beside `attach`, the others
    /// Debian's.
    fn binary(ty: &str) -> Result<PathBuf> {
        if ty == "attach-cni" {
            return plugin();
        }
        let p = Path::new(SYSTEM_CNI_DIR).join(ty);
        anyhow::ensure!(p.is_file(), "reference plugin {} missing", p.display());
        Ok(p)
    }

    /// The plugins' types, in order.
    pub fn types(&self) -> Vec<String> {
        self.plugins()
            .iter()
            .map(|p| p["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn plugins(&self) -> &[Value] {
        self.list["plugins"].as_array().map_or(&[], Vec::as_slice)
    }

    /// Plugin `i`'s configuration, as the runtime hands it over.
    pub fn conf_of(&self, i: usize, prev: Option<&Value>) -> Value {
        let mut c = self.plugins()[i].clone();
        c["cniVersion"] = self.list["cniVersion"].clone();
        c["name"] = self.list["name"].clone();
        let mut rc = serde_json::Map::new();
        if let (Some(caps), Some(offered)) = (
            c.get("capabilities").and_then(Value::as_object),
            self.runtime_config.as_object(),
        ) {
            for (k, v) in offered {
                if caps.get(k) == Some(&Value::Bool(true)) {
                    rc.insert(k.clone(), v.clone());
                }
            }
        }
        if !rc.is_empty() {
            c["runtimeConfig"] = Value::Object(rc);
        }
        if let Some(p) = prev {
            c["prevResult"] = p.clone();
        }
        c
    }

    fn step(&self, command: &str, i: usize, prev: Option<&Value>) -> Result<Reply> {
        let ty = self.types()[i].clone();
        let call = Call {
            command,
            env_extra: self.call.env_extra.clone(),
            ..self.call
        };
        let r = call.run_plugin(&Self::binary(&ty)?, &self.conf_of(i, prev).to_string())?;
        anyhow::ensure!(
            r.ok,
            "{command} of {ty} failed: {}\nstderr: {}",
            r.stdout,
            r.stderr
        );
        Ok(r)
    }

    /// ADD through the chain; the final result (the runtime caches it).
    pub fn add(&self) -> Result<Value> {
        let mut prev: Option<Value> = None;
        for i in 0..self.plugins().len() {
            let r = self.step("ADD", i, prev.as_ref())?;
            prev = Some(r.json());
        }
        prev.context("an empty chain")
    }

    /// CHECK of every plugin, in order, with the ADD's final result.
    pub fn check(&self, result: &Value) -> Result<()> {
        self.check_except(result, &[])
    }

    /// [`Chain::check`] leaving out the plugins of types `skip` (a plugin
    /// whose own CHECK is broken).
    pub fn check_except(&self, result: &Value, skip: &[&str]) -> Result<()> {
        let types = self.types();
        for (i, ty) in types.iter().enumerate() {
            if !skip.contains(&ty.as_str()) {
                self.step("CHECK", i, Some(result))?;
            }
        }
        Ok(())
    }

    /// DEL in reverse order; `after(type)` runs once each plugin's DEL
    /// succeeded (to see what that plugin removed before the next goes).
    pub fn del(&self, result: Option<&Value>, mut after: impl FnMut(&str)) -> Result<()> {
        for i in (0..self.plugins().len()).rev() {
            self.step("DEL", i, result)?;
            after(&self.types()[i]);
        }
        Ok(())
    }
}

/// A host-local data directory of a test's own (never /var/lib/cni):
/// `attach-<purpose>-<lab tag>` under the temporary directory, removed on
/// drop. Host-local keeps one directory per network name in it.
pub struct Leases(pub PathBuf);

impl Leases {
    pub fn new(purpose: &str, lab_tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("attach-{purpose}-{lab_tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Lease files of network `net`: (address, content), by address.
    pub fn leased(&self, net: &str) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(self.0.join(net)) else {
            return Vec::new();
        };
        let mut out: Vec<(String, String)> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .map(|n| {
                let content = std::fs::read_to_string(self.0.join(net).join(&n)).unwrap();
                (n, content)
            })
            .collect();
        out.sort();
        out
    }

    /// Addresses leased in network `net`.
    pub fn addresses(&self, net: &str) -> Vec<String> {
        self.leased(net).into_iter().map(|(a, _)| a).collect()
    }

    /// Range set `set`'s `last_reserved_ip` in network `net` ("" if none).
    pub fn last(&self, net: &str, set: usize) -> String {
        std::fs::read_to_string(self.0.join(net).join(format!("last_reserved_ip.{set}")))
            .unwrap_or_default()
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
