//! What the DHCP tests share: the node's agent (which renews and rebinds
//! leases) and `attach add KIND --dhcp`.

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    lab::{Attach, Lab, NODE_IF, Netns, node_id},
    refusal::text,
};

/// An agent (reconciling every 2 s), killed by its PID when dropped.
pub struct Agent(Option<Child>, PathBuf);

impl Agent {
    /// The agent of the lab's node.
    pub fn start(lab: &Lab) -> Agent {
        Self::start_in(lab.node())
    }

    /// The agent of the node `ns` (a VM's, for one).
    pub fn start_in(ns: &Netns) -> Agent {
        let socket = PathBuf::from(format!(
            "/run/attach/node-{}.sock",
            node_id(ns.path()).unwrap()
        ));
        let bin = Attach::bin().unwrap();
        let child = ns
            .command(&[
                bin.to_str().unwrap(),
                "agent",
                "--no-metrics",
                "--reconcile-interval",
                "2",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "the agent's socket never came");
            thread::sleep(Duration::from_millis(50));
        }
        Agent(Some(child), socket)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.1);
    }
}

/// `attach ARGS --parent eth1 --netns NETNS --dhcp` (ARGS: `add KIND`, with
/// global options), as it ended.
pub fn run_add(lab: &Lab, args: &[&str], netns: &str) -> std::process::Output {
    let mut argv = args.to_vec();
    argv.extend(["--parent", NODE_IF, "--netns", netns, "--dhcp"]);
    lab.attach().run(&argv).unwrap()
}

/// `attach -o json add KIND --parent eth1 --netns NETNS --dhcp`: the record
/// and the warnings.
pub fn add(lab: &Lab, kind: &str, netns: &str) -> (Value, String) {
    let out = run_add(lab, &["-o", "json", "add", kind], netns);
    let err = text(&out.stderr);
    assert!(out.status.success(), "add {kind} --dhcp: {err}");
    (serde_json::from_slice(&out.stdout).unwrap(), err)
}
