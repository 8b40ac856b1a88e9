//! Executes an [`Op`] on an engine and renders its result (text or JSON):
//! the one place every front end's request ends up.

use serde_json::json;

use super::{CheckArgs, Format, Op, StatsArgs};
use crate::{Engine, Error, Result, output};

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("serializable")
}

/// How an error is shown: a JSON object on stdout with `-o json`, else a
/// line on stderr. Returns (stdout, stderr).
pub fn render_error(fmt: Format, e: &Error) -> (String, String) {
    match fmt {
        Format::Json => (
            json!({"error": {"kind": e.kind.name(), "message": e.message}}).to_string(),
            String::new(),
        ),
        Format::Text => (String::new(), format!("attach: {}", e.message)),
    }
}

/// "nothing attached [as IFNAME] in NETNS".
fn nothing(netns: &str, ifname: Option<&str>) -> String {
    match ifname {
        Some(i) => format!("nothing attached as {i} in {netns}"),
        None => format!("nothing attached in {netns}"),
    }
}

/// What a command printed: its output, and warnings (what it noticed and let
/// pass), which the CLI writes on stderr as `attach: warning: …`.
#[derive(Debug, Default)]
pub struct Done {
    pub stdout: String,
    pub warnings: Vec<String>,
}

/// Runs `op` against `engine` and renders its result as `format` asks.
/// The CLI calls it directly, the agent for its clients.
pub async fn run(op: &Op, engine: &Engine, format: Format) -> Result<Done> {
    let json = format == Format::Json;
    let mut warnings = Vec::new();
    let stdout = match op {
        Op::Add { request, cni } => {
            let rec = engine.add_as(request, cni.clone()).await?;
            warnings.extend(rec.warnings.iter().cloned());
            if json {
                to_json(&rec)
            } else {
                output::attachments(std::slice::from_ref(&rec))
            }
        }
        Op::DelCni { cni, ifname, netns } => {
            let gone = engine.del_cni(cni, ifname, netns.as_deref()).await?;
            to_json(&json!({"detached": gone}))
        }
        Op::GcCni { network, valid } => {
            let gone = engine.gc_cni(network, valid).await?;
            to_json(&json!({"detached": gone}))
        }
        Op::Del(args) => {
            args.check_netns()?;
            let gone = match (&args.netns, &args.tap, args.vlan) {
                (Some(netns), _, _) => engine.del(netns, args.ifname.as_deref()).await?,
                (None, Some(tap), Some(vlan)) => engine.del_vlan(tap, args.qinq, vlan).await?,
                _ => return Err(Error::invalid("give --netns, or --tap with --vlan")),
            };
            warnings.extend(gone.iter().flat_map(|r| r.warnings.iter().cloned()));
            match (json, gone) {
                (true, g) => to_json(&json!({"detached": g})),
                (false, Some(r)) => format!("detached {}", output::what(&r)),
                (false, None) => args.nothing(),
            }
        }
        Op::Check(CheckArgs { all: true, .. }) => check_all(engine, json).await?,
        Op::Check(CheckArgs { target: args, .. }) => {
            args.check_netns()?;
            let rec = match (&args.netns, &args.tap, args.vlan) {
                (Some(netns), _, _) => engine.get(netns, args.ifname.as_deref())?,
                (None, Some(tap), Some(vlan)) => engine.get_vlan(tap, args.qinq, vlan)?,
                _ => {
                    return Err(Error::invalid(
                        "give --netns, or --tap with --vlan, or --all",
                    ));
                }
            }
            .ok_or_else(|| Error::not_found(args.nothing()))?;
            engine.check(&rec).await?;
            if json {
                to_json(&json!({"ok": true, "attachment": rec}))
            } else {
                format!("{}: ok", output::what(&rec))
            }
        }
        Op::List => {
            let list = engine.list()?;
            if json {
                to_json(&list)
            } else {
                output::attachments(&list)
            }
        }
        Op::Reconcile => {
            let repairs = engine.reconcile().await?;
            if json {
                to_json(&repairs)
            } else if repairs.is_empty() {
                "nothing to repair".into()
            } else {
                repairs
                    .iter()
                    .map(|r| format!("{} in {}: {} ({})", r.ifname, r.netns, r.action, r.drift))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Op::Upgrade { force } => {
            let up = engine.upgrade(*force)?;
            if json {
                let links = up
                    .links
                    .iter()
                    .map(|(pin, what)| json!({"link": pin, "action": what}));
                let containers = up.containers.iter().map(|(netns, ifname)| {
                    json!({"netns": netns, "interface": ifname, "setting": "rx-gro-list",
                           "action": "updated"})
                });
                let cache = [("emptied", up.ep_cache.stale), ("filled", up.ep_cache.filled)]
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(what, n)| {
                        json!({"map": attach_common::MAP_EP_CACHE, "action": what, "slots": n})
                    });
                to_json(&links.chain(containers).chain(cache).collect::<Vec<_>>())
            } else {
                let updated = up.links.iter().filter(|(_, w)| *w == "updated").count();
                let mut out = format!("{updated} of {} program links updated", up.links.len());
                for (netns, ifname) in &up.containers {
                    out.push_str(&format!("\n{ifname} in {netns}: fraglist GRO turned on"));
                }
                let c = &up.ep_cache;
                if c.stale + c.filled > 0 {
                    out.push_str(&format!(
                        "\nendpoint cache: {} stale slot(s) emptied, {} filled",
                        c.stale, c.filled
                    ));
                }
                out
            }
        }
        Op::Stats(StatsArgs { netns, ifname }) => {
            let mut s = engine.stats()?;
            if let Some(netns) = netns {
                let ifname = ifname.as_deref();
                let rec = engine
                    .get(netns, ifname)?
                    .ok_or_else(|| Error::not_found(nothing(netns, ifname)))?;
                s.attachments.retain(|a| a.attachment == rec);
            }
            if json { to_json(&s) } else { output::stats(&s) }
        }
        Op::Features => {
            let report = engine.features();
            if json {
                to_json(&report)
            } else {
                output::features(&report)
            }
        }
        Op::Reset => {
            let removed = engine.reset().await?;
            if json {
                to_json(&json!({"detached": removed}))
            } else {
                format!(
                    "detached {} attachment(s); pins and state removed",
                    removed.len()
                )
            }
        }
    };
    Ok(Done { stdout, warnings })
}

/// `check --all`: every attachment, in the order `list` shows them; one that
/// drifted makes the whole an error naming each.
async fn check_all(engine: &Engine, json: bool) -> Result<String> {
    let all = engine.list()?;
    let mut drifted = Vec::new();
    for rec in &all {
        if let Err(e) = engine.check(rec).await {
            drifted.push(format!("{}: {}", output::what(rec), e.message));
        }
    }
    let mut node: Vec<String> = engine
        .check_node(&all)
        .err()
        .map(|e| e.message)
        .into_iter()
        .collect();
    node.extend(engine.leftovers().await?);
    if !drifted.is_empty() || !node.is_empty() {
        let count = drifted.len();
        drifted.extend(node.iter().map(|e| format!("the node: {e}")));
        let head = if all.is_empty() {
            "the node has leftovers (`attach reconcile` removes them)".to_owned()
        } else {
            format!(
                "{count} of {} attachments drifted{} (`attach reconcile` repairs drift)",
                all.len(),
                if node.is_empty() {
                    ""
                } else {
                    ", and the node"
                },
            )
        };
        return Err(Error::system(format!(
            "{head}:\n  {}",
            drifted.join("\n  ")
        )));
    }
    Ok(if json {
        to_json(&json!({"ok": true, "attachments": all}))
    } else if all.is_empty() {
        "nothing attached".into()
    } else {
        all.iter()
            .map(|r| format!("{}: ok", output::what(r)))
            .collect::<Vec<_>>()
            .join("\n")
    })
}
