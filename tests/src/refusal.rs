//! Commands that must fail: the exit codes and error kinds of the CLI's
//! contract, [`judge`] of one refused run's output, and [`check_rejected`],
//! which runs a [`Bad`] command in text then JSON mode and checks that the
//! node ([`snapshot_with`]) is unchanged.

use std::process::Output;

use serde_json::Value;

use crate::{
    lab::Lab,
    snapshot::{Scope, snapshot_with},
};

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

/// A command's output as text, trimmed.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_owned()
}

/// How a refused command's output breaks the contract, one line each:
/// its exit code; in JSON mode (unless clap refused it: `parse`) an
/// `{"error": {"kind", "message"}}` naming `names`; in text mode (or
/// clap's own error) `names` on stderr and nothing on stdout.
pub fn judge(
    label: &str,
    json_mode: bool,
    out: &Output,
    want_code: i32,
    parse: bool,
    names: &str,
) -> Vec<String> {
    let mode = if json_mode { "json" } else { "text" };
    let mut broken = Vec::new();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let code = out.status.code();
    eprintln!(
        "{label} ({mode}): exit {code:?}: {}",
        if json_mode { &stdout } else { &stderr }
    );
    if code != Some(want_code) {
        broken.push(format!(
            "{label} ({mode}): exit {code:?}, want {}\nstdout: {stdout}\nstderr: {stderr}",
            want_code
        ));
    }
    if json_mode && !parse {
        match serde_json::from_str::<Value>(&stdout) {
            Ok(v) => {
                let e = &v["error"];
                let (kind, msg) = (e["kind"].as_str(), e["message"].as_str());
                if kind != Some(kind_of(want_code)) || !msg.is_some_and(|m| m.contains(names)) {
                    broken.push(format!(
                        "{label} (json): want error kind {} naming {:?}, got {v}",
                        kind_of(want_code),
                        names
                    ));
                }
            }
            Err(_) => broken.push(format!(
                "{label} (json): stdout is not JSON: {stdout:?} (stderr: {stderr})"
            )),
        }
    } else {
        if !stderr.contains(names) {
            broken.push(format!(
                "{label} ({mode}): stderr does not name {:?}: {stderr}",
                names
            ));
        }
        if !stdout.is_empty() {
            broken.push(format!("{label} ({mode}): stdout on error: {stdout}"));
        }
    }
    broken
}

/// Runs `bad` in text then JSON mode; returns what broke the contract
/// (exit code, error kind and message, stdout on error, and any change of
/// [`snapshot_with`]).
pub fn check_rejected(lab: &Lab, scope: &Scope, bad: &Bad) -> Vec<String> {
    let label = format!("[{}] attach {}", bad.name, bad.args.join(" "));
    let mut broken = Vec::new();
    let before = snapshot_with(lab, scope);
    for json_mode in [false, true] {
        let mut argv: Vec<&str> = bad.args.iter().map(String::as_str).collect();
        if json_mode {
            argv.splice(0..0, ["-o", "json"]);
        }
        let out: Output = lab.attach().run(&argv).expect("running attach");
        broken.extend(judge(
            &label, json_mode, &out, bad.code, bad.parse, &bad.names,
        ));
        let after = snapshot_with(lab, scope);
        let mode = if json_mode { "json" } else { "text" };
        if after != before {
            broken.push(format!(
                "{label} ({mode}) left the node changed:\n{}",
                before.diff(&after)
            ));
        }
    }
    broken
}
