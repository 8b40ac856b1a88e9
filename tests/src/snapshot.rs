//! Everything an `attach` command could change, as comparable JSON, and a
//! table-driven check that a rejected command names the bad value, exits
//! with the documented code and changes nothing.
//!
//! The same approach as `tests/cli.rs` (which keeps its own copy for the
//! macvlan cases), extended to what the other kinds touch: mounts (held
//! namespaces, NETNS files the engine makes), cgroup programs, named
//! namespaces, and links in any namespace of the lab.

use std::{
    collections::BTreeMap,
    fmt, fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde_json::{Value, json};

use crate::{
    lab::{Lab, NETNS_PREFIX},
    netns::{Netns, netns_list},
};

/// The node's state, keyed by what was looked at.
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

/// What to look at besides the node: namespaces (their links and
/// addresses) and cgroups (their attached programs).
#[derive(Default)]
pub struct Scope<'a> {
    pub namespaces: Vec<&'a Netns>,
    pub cgroups: Vec<PathBuf>,
}

/// Captures the node (links, addresses, fdb), the given namespaces' links,
/// the node's pins and datapath map entries, its records and `attach -o json
/// list`, every mount of the lab or of the node's state directory, the
/// lab's named namespaces, and the programs on the given cgroups.
pub fn snapshot(lab: &Lab, scope: &Scope) -> State {
    let mut s = BTreeMap::new();
    s.insert("node links".into(), Value::Array(links(lab.node())));
    s.insert("switch links".into(), Value::Array(links(lab.sw())));
    let mut fdb = json_out(lab.node(), &["bridge", "-j", "fdb", "show"]);
    sort(&mut fdb);
    s.insert("node fdb".into(), fdb);
    for ns in &scope.namespaces {
        s.insert(format!("links in {}", ns.name()), Value::Array(links(ns)));
    }
    let pins = lab.node_pin_dir();
    s.insert("pins".into(), tree(&pins));
    for map in [
        "attach_eps",
        "attach_ports",
        "attach_parents",
        "attach_devs",
    ] {
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
        sort(&mut dump);
        s.insert(format!("map {map}"), dump);
    }
    let state = lab.node_state_dir();
    s.insert("records".into(), tree(&state));
    s.insert(
        "attach list".into(),
        lab.attach().json(&["list"]).expect("attach -o json list"),
    );
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
            let mut v = json_cmd(
                Command::new("bpftool")
                    .args(["-j", "cgroup", "show"])
                    .arg(cg),
                "bpftool cgroup show",
            );
            // Program ids change from load to load: keep what identifies.
            if let Value::Array(a) = &mut v {
                for p in a.iter_mut() {
                    *p = json!({"name": p["name"], "attach_type": p["attach_type"]});
                }
            }
            sort(&mut v);
            v
        } else {
            Value::Null
        };
        s.insert(format!("cgroup {}", cg.display()), progs);
    }
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
                // Link-local addresses come and go with the link state.
                .filter(|a| a["scope"] != "link")
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
                "master": l["master"],
                "xdp": l["xdp"],
                "addrs": addrs,
            })
        })
        .collect();
    out.sort_by_key(|l| l["ifindex"].as_u64());
    out
}

/// Files under `dir`, relative, sorted; `null` when `dir` does not exist.
fn tree(dir: &Path) -> Value {
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

fn sort(v: &mut Value) {
    if let Value::Array(a) = v {
        a.sort_by_key(|x| x.to_string());
    }
}

fn json_out(ns: &Netns, argv: &[&str]) -> Value {
    json_cmd(&mut ns.command(argv), &argv.join(" "))
}

fn json_cmd(cmd: &mut Command, what: &str) -> Value {
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

// ---------------------------------------------------------------------------
// Rejected commands

pub const SYSTEM: i32 = 1;
pub const INVALID: i32 = 2;
pub const NOT_FOUND: i32 = 3;
pub const CONFLICT: i32 = 4;

fn kind_of(code: i32) -> &'static str {
    match code {
        1 => "system",
        2 => "invalid_input",
        3 => "not_found",
        4 => "conflict",
        _ => "?",
    }
}

/// A command that must fail: its arguments (after `attach`), the exit code
/// and a text the error must contain; `parse` when clap rejects it (its own
/// error format, no JSON).
pub struct Bad {
    pub name: String,
    pub args: Vec<String>,
    pub code: i32,
    pub names: String,
    pub parse: bool,
}

impl Bad {
    pub fn new(name: &str, args: &[&str], code: i32, names: &str) -> Bad {
        Bad {
            name: name.to_owned(),
            args: args.iter().map(|s| s.to_string()).collect(),
            code,
            names: names.to_owned(),
            parse: false,
        }
    }

    pub fn parse(mut self) -> Bad {
        self.parse = true;
        self
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_owned()
}

/// Runs `bad` in text then JSON mode; returns what broke the contract
/// (exit code, error kind and message, stdout on error, and any change of
/// the snapshot).
pub fn check_rejected(lab: &Lab, scope: &Scope, bad: &Bad) -> Vec<String> {
    let label = format!("[{}] attach {}", bad.name, bad.args.join(" "));
    let mut broken = Vec::new();
    let before = snapshot(lab, scope);
    for json_mode in [false, true] {
        let mode = if json_mode { "json" } else { "text" };
        let mut argv: Vec<&str> = bad.args.iter().map(String::as_str).collect();
        if json_mode {
            argv.splice(0..0, ["-o", "json"]);
        }
        let out: Output = lab.attach().run(&argv).expect("running attach");
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let code = out.status.code();
        eprintln!(
            "{label} ({mode}): exit {code:?}: {}",
            if json_mode { &stdout } else { &stderr }
        );
        if code != Some(bad.code) {
            broken.push(format!(
                "{label} ({mode}): exit {code:?}, want {}\nstdout: {stdout}\nstderr: {stderr}",
                bad.code
            ));
        }
        if json_mode && !bad.parse {
            match serde_json::from_str::<Value>(&stdout) {
                Ok(v) => {
                    let e = &v["error"];
                    let (kind, msg) = (e["kind"].as_str(), e["message"].as_str());
                    if kind != Some(kind_of(bad.code))
                        || !msg.is_some_and(|m| m.contains(&bad.names))
                    {
                        broken.push(format!(
                            "{label} (json): want error kind {} naming {:?}, got {v}",
                            kind_of(bad.code),
                            bad.names
                        ));
                    }
                }
                Err(_) => broken.push(format!(
                    "{label} (json): stdout is not JSON: {stdout:?} (stderr: {stderr})"
                )),
            }
        } else {
            if !stderr.contains(&bad.names) {
                broken.push(format!(
                    "{label} ({mode}): stderr does not name {:?}: {stderr}",
                    bad.names
                ));
            }
            if !stdout.is_empty() {
                broken.push(format!("{label} ({mode}): stdout on error: {stdout}"));
            }
        }
        let after = snapshot(lab, scope);
        if after != before {
            broken.push(format!(
                "{label} ({mode}) left the node changed:\n{}",
                before.diff(&after)
            ));
        }
    }
    broken
}
