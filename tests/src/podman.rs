//! Podman, Debian's, as a real CNI client of `attach-cni`: a private
//! configuration, storage and network directory per lab, a busybox rootfs
//! (no image can be pulled here), run inside the lab's node namespace.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Output,
};

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::{cni, lab::Lab};

pub struct Podman {
    dir: PathBuf,
    node: PathBuf,
    pub network: String,
}

impl Podman {
    /// A podman whose only network is `network`, one `attach-cni` plugin
    /// with `plugin` as its configuration (cniVersion, name and type are
    /// filled in).
    pub fn new(lab: &Lab, network: &str, mut plugin: Value) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("attach-podman-{}", lab.tag()));
        let _ = fs::remove_dir_all(&dir);
        let p = Self {
            dir,
            node: lab.node().path().to_owned(),
            network: network.to_owned(),
        };
        for d in ["plugins", "net.d", "root", "runroot", "tmp", "rootfs/bin"] {
            fs::create_dir_all(p.dir.join(d))?;
        }
        std::os::unix::fs::symlink(cni::plugin()?, p.dir.join("plugins/attach-cni"))?;
        p.busybox_rootfs()?;
        plugin["type"] = "attach-cni".into();
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": network,
            "plugins": [plugin],
        });
        fs::write(
            p.dir.join(format!("net.d/{network}.conflist")),
            conflist.to_string(),
        )?;
        fs::write(p.dir.join("containers.conf"), p.containers_conf())?;
        Ok(p)
    }

    fn busybox_rootfs(&self) -> Result<()> {
        let bin = self.dir.join("rootfs/bin");
        fs::copy("/bin/busybox", bin.join("busybox")).context("busybox-static")?;
        let applets = std::process::Command::new("/bin/busybox")
            .arg("--list")
            .output()?;
        for a in String::from_utf8_lossy(&applets.stdout).lines() {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(a));
        }
        for d in ["proc", "sys", "dev", "etc", "tmp"] {
            fs::create_dir_all(self.dir.join("rootfs").join(d))?;
        }
        Ok(())
    }

    fn containers_conf(&self) -> String {
        let d = self.dir.display();
        format!(
            r#"[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
tmp_dir = "{d}/tmp"

[network]
network_backend = "cni"
cni_plugin_dirs = ["{d}/plugins", "/usr/lib/cni"]
network_config_dir = "{d}/net.d"
default_network = "{net}"
"#,
            net = self.network
        )
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// `podman ARGS`, in the node, with our configuration and storage.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        let root = self.dir.join("root");
        let runroot = self.dir.join("runroot");
        let mut argv = vec![
            "nsenter".to_owned(),
            format!("--net={}", self.node.display()),
            "--".into(),
            "podman".into(),
            "--root".into(),
            root.display().to_string(),
            "--runroot".into(),
            runroot.display().to_string(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .output()
            .context("running podman")?;
        Ok(out)
    }

    /// `podman run --rm` of a shell command in a busybox container.
    pub fn sh(&self, extra: &[&str], script: &str) -> Result<Output> {
        let rootfs = self.rootfs().display().to_string();
        let mut args = vec![
            "run",
            "--rm",
            "--network",
            &self.network,
            "--cap-add",
            "NET_RAW",
        ];
        args.extend(extra);
        args.extend(["--rootfs", &rootfs, "/bin/sh", "-c", script]);
        self.run(&args)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Stops and removes every container (each DEL reaches attach-cni),
        // then the storage.
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["system", "reset", "--force"]);
        let _ = fs::remove_dir_all(&self.dir);
    }
}
