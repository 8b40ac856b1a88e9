//! Runs the real `attach` binary inside a node's namespace, as the node would.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::netns::{Netns, checked};

/// The `attach` command of one node.
#[derive(Debug)]
pub struct Attach {
    node: PathBuf,
    env: Vec<(String, String)>,
}

impl Attach {
    /// Runs `attach` in `node`'s network namespace.
    pub fn new(node: &Netns) -> Attach {
        Attach {
            node: node.path().to_owned(),
            env: Vec::new(),
        }
    }

    /// The same runner, with `key=value` in every command's environment.
    pub fn with_env(&self, key: &str, value: &str) -> Attach {
        let mut env = self.env.clone();
        env.push((key.to_owned(), value.to_owned()));
        Attach {
            node: self.node.clone(),
            env,
        }
    }

    /// Runs `attach` in the network namespace at `path`.
    pub fn at(path: PathBuf) -> Attach {
        Attach {
            node: path,
            env: Vec::new(),
        }
    }

    /// `$ATTACH_BIN`, else `target/debug/attach` of this workspace.
    pub fn bin() -> Result<PathBuf> {
        if let Some(bin) = std::env::var_os("ATTACH_BIN") {
            return Ok(bin.into());
        }
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/attach");
        if !bin.exists() {
            bail!(
                "no attach binary: ATTACH_BIN is unset and {} does not exist; \
                 run `cargo +stable xtask test`",
                bin.display()
            );
        }
        Ok(bin)
    }

    fn command(&self, args: &[&str]) -> Result<Command> {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.node.display()))
            .arg("--")
            .arg(Attach::bin()?)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        Ok(cmd)
    }

    /// Runs `attach <args>`; the exit status is not checked.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        self.command(args)?
            .output()
            .with_context(|| format!("cannot run attach {}", args.join(" ")))
    }

    /// Runs `attach <args>` and returns stdout; a non-zero exit is an error
    /// with stdout and stderr.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        checked(
            &mut self.command(args)?,
            &format!("attach {}", args.join(" ")),
        )
    }

    /// Runs `attach -o json <args>` and parses stdout.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let argv: Vec<&str> = ["-o", "json"].iter().chain(args).copied().collect();
        let out = self.ok(&argv)?;
        serde_json::from_str(&out)
            .with_context(|| format!("attach {}: stdout is not JSON: {out}", argv.join(" ")))
    }
}
