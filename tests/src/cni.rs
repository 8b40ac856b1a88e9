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
        let plugin = plugin()?;
        let dir = plugin.parent().expect("plugin dir").to_owned();
        let cni_path = format!("{}:{SYSTEM_CNI_DIR}", dir.display());
        let netns = self
            .netns
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut cmd = self.node.command(&[plugin.to_str().expect("utf-8 path")]);
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
            .context("starting attach-cni")?;
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
