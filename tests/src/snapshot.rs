//! What a node looks like, as comparable JSON: links, addresses, rules and
//! routes of the node, its unicast filter, its bpffs pins and datapath map
//! entries, its attachment records and `attach list`, and the links of
//! given containers. A failed command must leave it unchanged.
//!
//! [`snapshot_with`] adds what the host, container and sriov kinds touch
//! (mounts, named namespaces, cgroup programs, the switch's ports);
//! `refusal::check_rejected` runs a bad command against it.

use std::{
    collections::BTreeMap,
    fmt, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::{Value, json};

use crate::{
    lab::{Lab, NETNS_PREFIX, NODE_IF},
    netns::{Netns, netns_list},
};

/// Everything a failed command could leave behind, as comparable JSON.
#[derive(PartialEq, Clone)]
pub struct State(pub BTreeMap<String, Value>);

impl State {
    /// The parts that differ, old and new, for an assertion message.
    pub fn diff(&self, after: &State) -> String {
        let mut out = String::new();
        let keys: std::collections::BTreeSet<&String> =
            self.0.keys().chain(after.0.keys()).collect();
        for k in keys {
            let v = self.0.get(k).unwrap_or(&Value::Null);
            let w = after.0.get(k).unwrap_or(&Value::Null);
            if v != w {
                out.push_str(&format!("  {k}:\n    before: {v}\n    after:  {w}\n"));
            }
        }
        out
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.0 {
            writeln!(f, "{k}: {v}")?;
        }
        Ok(())
    }
}

/// The datapath maps whose entries an attachment owns (the switch flood
/// table, an array, is left out: its rows count only up to their switch's
/// `nports`).
const MAPS: [&str; 14] = [
    "attach_eps",
    "attach_ports",
    "attach_parents",
    "attach_devs",
    "attach_ip4_eps",
    "attach_ip6_eps",
    "attach_ipvl_par",
    "attach_sw_ports",
    "attach_switches",
    "attach_sw_fdb",
    "attach_rt_ports",
    "attach_nest_vl",
    "attach_nest_prt",
    "attach_nest_ids",
];

/// Captures the node (its links and addresses, the parent's MAC, promiscuity,
/// XDP program and unicast filter), the node's bpffs pins and datapath map
/// entries, its attachment records and `attach -o json list`, and the links
/// and addresses of each namespace in `containers`.
pub fn snapshot(lab: &Lab, containers: &[&Netns]) -> State {
    let mut s = BTreeMap::new();
    let node_links = links(lab.node());
    let parent = node_links
        .iter()
        .find(|l| l["ifname"] == NODE_IF)
        .cloned()
        .unwrap_or(Value::Null);
    s.insert("node links".into(), Value::Array(node_links));
    s.insert("parent".into(), parent);
    let mut fdb = json_out(lab.node(), &["bridge", "-j", "fdb", "show"]);
    sort(&mut fdb);
    s.insert("node fdb".into(), fdb);
    // ipvlan: the node's rules and the endpoint route table.
    for family in ["-4", "-6"] {
        let mut rules = json_out(lab.node(), &["ip", "-j", family, "rule", "show"]);
        sort(&mut rules);
        s.insert(format!("node rules {family}"), rules);
        let mut routes = json_out(
            lab.node(),
            &["ip", "-j", family, "route", "show", "table", "all"],
        );
        sort(&mut routes);
        s.insert(format!("node routes {family}"), routes);
    }
    // router: the node's forwarding.
    let fwd = lab
        .node()
        .ok(&[
            "sysctl",
            "-n",
            "net.ipv4.ip_forward",
            "net.ipv6.conf.all.forwarding",
        ])
        .unwrap_or_default();
    s.insert(
        "node forwarding".into(),
        json!(fwd.split_whitespace().collect::<Vec<_>>()),
    );
    for c in containers {
        s.insert(format!("links in {}", c.name()), Value::Array(links(c)));
    }
    let pins = pin_dir(lab);
    // `progs/` caches this build's loaded programs while the node has
    // eBPF attachments (dropped with the last): not state of any attachment.
    let mut pin_tree = tree(&pins);
    if let Some(paths) = pin_tree.as_array_mut() {
        paths.retain(|p| !p.as_str().is_some_and(|p| p.starts_with("progs")));
    }
    s.insert("pins".into(), pin_tree);
    for map in MAPS {
        let path = pins.join(map);
        let mut dump = if path.exists() {
            json_cmd(
                Command::new("bpftool")
                    .args(["-j", "map", "dump", "pinned"])
                    .arg(&path),
                map,
            )
        } else {
            Value::Null
        };
        if map == "attach_sw_fdb" {
            // What a switch learned from the wire comes and goes with the
            // traffic (like the kernel's neighbour table): only the entries
            // the engine made (FDB_F_STATIC) are state.
            if let Some(entries) = dump.as_array_mut() {
                entries.retain(|e| {
                    // attach_common::FDB_F_STATIC
                    e["formatted"]["value"]["flags"].as_u64().unwrap_or(1) & 1 != 0
                });
            }
        }
        sort(&mut dump);
        s.insert(format!("map {map}"), dump);
    }
    s.insert("records".into(), tree(&state_dir(lab)));
    s.insert(
        "attach list".into(),
        lab.attach().json(&["list"]).expect("attach -o json list"),
    );
    State(s)
}

/// Links with their addresses, reduced to what an attach could change.
pub fn links(ns: &Netns) -> Vec<Value> {
    let all = json_out(ns, &["ip", "-d", "-j", "addr", "show"]);
    let mut out: Vec<Value> = all
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let addrs: Vec<String> = l["addr_info"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or("?"), a["prefixlen"]))
                .collect();
            let up = l["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == "UP"));
            json!({
                "ifname": l["ifname"],
                "ifindex": l["ifindex"],
                "kind": l["linkinfo"]["info_kind"],
                "address": l["address"],
                "mtu": l["mtu"],
                "up": up,
                "promiscuity": l["promiscuity"],
                "allmulti": l["allmulti"],
                "xdp": l["xdp"],
                "addrs": addrs,
            })
        })
        .collect();
    out.sort_by_key(|l| l["ifindex"].as_u64());
    out
}

/// Files under `dir`, relative, sorted; `null` when `dir` does not exist.
pub fn tree(dir: &Path) -> Value {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if p.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    if !dir.exists() {
        return Value::Null;
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    json!(out)
}

pub fn sort(v: &mut Value) {
    if let Value::Array(a) = v {
        a.sort_by_key(|x| x.to_string());
    }
}

pub fn json_out(ns: &Netns, argv: &[&str]) -> Value {
    json_cmd(&mut ns.command(argv), &argv.join(" "))
}

pub fn json_cmd(cmd: &mut Command, what: &str) -> Value {
    let out = cmd.stdin(Stdio::null()).output().expect(what);
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        // bpftool prints nothing at all for an empty list.
        return json!([]);
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"))
}

pub fn pin_dir(lab: &Lab) -> PathBuf {
    lab.node_pin_dir()
}

pub fn state_dir(lab: &Lab) -> PathBuf {
    lab.node_state_dir()
}

// ---------------------------------------------------------------------------
// What the host, container and sriov kinds touch besides

/// What to look at besides the node: namespaces (their links and
/// addresses) and cgroups (their attached programs).
#[derive(Default)]
pub struct Scope<'a> {
    pub namespaces: Vec<&'a Netns>,
    pub cgroups: Vec<PathBuf>,
}

/// [`snapshot`] of `scope.namespaces`, plus the switch's links, every mount
/// of the lab or of the node's state directory (held namespaces, NETNS files
/// the engine makes), the lab's named namespaces, and the programs on the
/// given cgroups.
///
/// IPv6 link-local addresses and the multicast entries of the devices'
/// filters are left out: the kernel re-creates them, a moment later, when a
/// device the engine handed back comes up again (the sriov stand-in).
pub fn snapshot_with(lab: &Lab, scope: &Scope) -> State {
    let State(mut s) = snapshot(lab, &scope.namespaces);
    s.insert("switch links".into(), Value::Array(links(lab.sw())));
    for (k, v) in s.iter_mut() {
        let Value::Array(items) = v else { continue };
        if k.contains("links") {
            for l in items.iter_mut() {
                if let Value::Array(addrs) = &mut l["addrs"] {
                    addrs.retain(|a| !a.as_str().is_some_and(|a| a.starts_with("fe80:")));
                }
            }
        } else if k == "node fdb" {
            // The first octet's low bit: a multicast address.
            items.retain(|e| {
                !e["mac"]
                    .as_str()
                    .and_then(|m| u8::from_str_radix(m.get(..2)?, 16).ok())
                    .is_some_and(|b| b & 1 == 1)
            });
        }
    }
    let state = state_dir(lab);
    let tag = format!("{NETNS_PREFIX}-{}-", lab.tag());
    let mounts: Vec<Value> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|m| m.contains(&tag) || Path::new(m).starts_with(&state))
        .map(|m| json!(m))
        .collect();
    s.insert("mounts".into(), Value::Array(mounts));
    let mut named: Vec<String> = netns_list()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with(&tag))
        .collect();
    named.sort();
    s.insert("named namespaces".into(), json!(named));
    for cg in &scope.cgroups {
        let progs = if cg.exists() {
            // Names and attach types: ids change from load to load.
            match crate::cgroup::attached_programs(cg) {
                Ok(progs) => progs
                    .into_iter()
                    .map(|(name, what)| json!({"name": name, "attach_type": what}))
                    .collect(),
                Err(e) => json!(format!("{e:#}")),
            }
        } else {
            Value::Null
        };
        s.insert(format!("cgroup {}", cg.display()), progs);
    }
    State(s)
}
