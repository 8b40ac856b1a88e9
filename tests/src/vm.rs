//! Virtual machines in a lab, for nested containers: a namespace stands
//! in for each VM, joined to the lab's node (the physical host) by a veth,
//! `tapN` on the node and `eth0` (the VM's uplink) in the VM, with its own
//! engine (`nsenter --net=<vm> attach`: its own pins and records).

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::Stdio,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use crate::{
    attach::Attach,
    lab::{Lab, NODE_IF, node_id},
    netns::Netns,
    reach::Endpoint,
    snapshot::{links, tree},
};

/// A VM; its engine is reset (pins and records gone) when dropped, so
/// declare it after the lab: it goes first.
pub struct Vm {
    pub ns: Arc<Netns>,
    pub engine: Attach,
    /// Its tap on the node.
    pub tap: String,
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(out) = self.engine.run(&["reset"])
            && !out.status.success()
        {
            eprintln!(
                "warning: reset in VM {}: {}",
                self.ns.name(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
}

/// VM `name` of the lab, joined to the node by `tap`.
pub fn vm(lab: &Lab, name: &str, tap: &str) -> Result<Vm> {
    let ns = lab.container(name)?;
    lab.node().ok(&[
        "ip",
        "link",
        "add",
        tap,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns.name(),
    ])?;
    lab.node().ok(&["ip", "link", "set", tap, "up"])?;
    ns.ok(&["ip", "link", "set", "eth0", "up"])?;
    Ok(Vm {
        engine: Attach::new(&ns),
        ns,
        tap: tap.to_owned(),
    })
}

/// The MAC of a nested container with address `.last`.
pub fn nested_mac(last: u8) -> String {
    format!("02:a7:01:00:00:{last:02x}")
}

/// Container `name` in `vm` on VLAN `vlan` (in S-tag `qinq`), addresses
/// 10.77.0.{last}/24 and fd77::{last}/64, attached on both sides: by the
/// VM's engine (`nested`) and by the node's (`nested-host` on the VM's
/// tap, parent `eth1`, `host`: its extra options).
pub fn attach_nested(
    lab: &Lab,
    vm: &Vm,
    name: &str,
    vlan: u16,
    qinq: Option<u16>,
    last: u8,
    host: &[&str],
) -> Result<Endpoint> {
    let ns = lab.container(name)?;
    let (v4, v6) = (format!("10.77.0.{last}"), format!("fd77::{last}"));
    let (ip4, ip6, m, vl) = (
        format!("{v4}/24"),
        format!("{v6}/64"),
        nested_mac(last),
        vlan.to_string(),
    );
    let q = qinq.map(|q| q.to_string());
    let mut args = vec![
        "add",
        "nested",
        "--netns",
        ns.name(),
        "--uplink",
        "eth0",
        "--vlan",
        &vl,
        "--mac",
        &m,
        "--ip",
        &ip4,
        "--ip",
        &ip6,
    ];
    if let Some(q) = &q {
        args.extend(["--qinq", q]);
    }
    vm.engine
        .ok(&args)
        .with_context(|| format!("attaching {name} in its VM"))?;
    let mut args = vec![
        "add",
        "nested-host",
        "--tap",
        &vm.tap,
        "--vlan",
        &vl,
        "--parent",
        NODE_IF,
        "--mac",
        &m,
        "--ip",
        &ip4,
        "--ip",
        &ip6,
    ];
    if let Some(q) = &q {
        args.extend(["--qinq", q]);
    }
    args.extend(host);
    lab.attach()
        .ok(&args)
        .with_context(|| format!("attaching {name} on the host"))?;
    Ok(Endpoint {
        label: name.to_owned(),
        ns,
        v4,
        v6,
    })
}

/// What tcpdump on `dev` in `ns` prints (`-e`: link-level headers, VLAN
/// tags included) for up to `count` inbound frames matching `filter` while
/// `action` runs (3 s at most after it).
pub fn capture(ns: &Netns, dev: &str, filter: &str, count: u32, action: impl FnOnce()) -> String {
    let c = count.to_string();
    let argv = [
        "timeout", "5", "tcpdump", "-i", dev, "-p", "-Q", "in", "-e", "-n", "-l", "-c", &c, filter,
    ];
    let Ok(mut cap) = ns
        .command(&argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        return String::new();
    };
    // Kept open until tcpdump exits, so its summary cannot SIGPIPE it.
    let mut err = cap.stderr.take().map(BufReader::new);
    if let Some(err) = err.as_mut() {
        let mut line = String::new();
        while err.read_line(&mut line).unwrap_or(0) > 0 && !line.contains("listening on") {
            line.clear();
        }
    }
    action();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && matches!(cap.try_wait(), Ok(None)) {
        thread::sleep(Duration::from_millis(20));
    }
    if matches!(cap.try_wait(), Ok(None)) {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(cap.id() as libc::pid_t, libc::SIGTERM) };
    }
    let out = cap
        .wait_with_output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    drop(err);
    out
}

/// What a refused command in `vm` could change there (and in
/// `containers`), as comparable JSON.
pub fn vm_state(vm: &Vm, containers: &[&Netns]) -> Value {
    let id = node_id(vm.ns.path()).unwrap();
    json!({
        "links": links(&vm.ns),
        "pins": tree(Path::new(&format!("/sys/fs/bpf/attach/node-{id}"))),
        "records": tree(Path::new(&format!("/run/attach/node-{id}"))),
        "list": vm.engine.json(&["list"]).unwrap(),
        "containers": containers.iter().map(|c| json!(links(c))).collect::<Vec<_>>(),
    })
}
