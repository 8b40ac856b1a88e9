//! `attach-cni`: the engine as a CNI 1.1.0 plugin (ADD, DEL, CHECK, STATUS,
//! GC, VERSION; configs from 0.3.0 on). The network configuration's own keys
//! are `attach add` options by their CLI names, so everything the CLI can
//! attach, a runtime can too:
//!
//! ```json
//! {"cniVersion":"1.1.0","name":"n1","type":"attach-cni","kind":"macvlan",
//!  "mode":"bridge","parent":"eth1","backend":"ebpf","datapath":"tc",
//!  "ipam":{"type":"host-local","subnet":"10.10.0.0/24"}}
//! ```
//!
//! Results and errors go to stdout, logs to stderr.

mod ipam;
pub mod types;

use std::{io::Read, net::IpAddr, process::ExitCode};

use clap::Parser;
use serde_json::{Value, json};

use self::{
    ipam::Ipam,
    types::{
        CNI_KEYS, CniError, Env, IpamResult, LATEST, NetConf, SUPPORTED_VERSIONS, code, pre_1_0,
    },
};
use crate::{
    Engine,
    cli::{Cli, Command},
    datapath::Datapath,
    kinds::AddRequest,
    model::{Attachment, CniRef},
    netns::Netns,
};

/// Runs one CNI command from the process environment and stdin: through
/// the node's agent when one runs, else here.
pub fn main() -> ExitCode {
    crate::logging::init(crate::cli::LogFormat::Text);
    let env = Env::from_process();
    let mut stdin = String::new();
    let _ = std::io::stdin().read_to_string(&mut stdin);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let e = CniError::new(code::IO_FAILURE, format!("cannot start the runtime: {e}"));
            println!("{}", error_json(e, &stdin));
            return ExitCode::FAILURE;
        }
    };
    let (ok, out) = rt.block_on(async {
        if env.command != "VERSION" && !no_agent() {
            let req = crate::agent::client::Request::Cni {
                env: env.pairs(),
                stdin: stdin.clone(),
            };
            match crate::agent::client::call(&req).await {
                Some(Ok(reply)) => return (reply.ok, reply.stdout),
                Some(Err(e)) => {
                    tracing::warn!("the agent did not answer ({e}); working without it")
                }
                None => {}
            }
        }
        match Engine::new() {
            Ok(engine) => run_request_env(&env, &stdin, &engine).await,
            Err(e) => (false, error_json(CniError::from_engine(e), &stdin)),
        }
    });
    if !out.is_empty() {
        println!("{out}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn no_agent() -> bool {
    std::env::var_os("ATTACH_NO_AGENT").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The error object in the configuration's version, if it is one we know.
fn error_json(mut e: CniError, stdin: &str) -> String {
    if let Some(v) = serde_json::from_str::<Value>(stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
    {
        e.cni_version = v;
    }
    serde_json::to_string(&e).expect("serializable")
}

/// One CNI call given as environment pairs (how the agent receives it):
/// (success, stdout).
pub async fn run_request(env: &[(String, String)], stdin: &str, engine: &Engine) -> (bool, String) {
    run_request_env(&Env::from_pairs(env), stdin, engine).await
}

async fn run_request_env(env: &Env, stdin: &str, engine: &Engine) -> (bool, String) {
    match run(env, stdin, engine).await {
        Ok(out) => (true, out.unwrap_or_default()),
        Err(e) => (false, error_json(e, stdin)),
    }
}

async fn run(env: &Env, stdin: &str, engine: &Engine) -> Result<Option<String>, CniError> {
    if env.command == "VERSION" {
        return Ok(Some(
            json!({"cniVersion": LATEST, "supportedVersions": SUPPORTED_VERSIONS}).to_string(),
        ));
    }
    let raw: Value = serde_json::from_str(stdin).map_err(|e| {
        CniError::new(
            code::DECODE,
            format!("network configuration is not JSON: {e}"),
        )
    })?;
    let Some(obj) = raw.as_object() else {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            "network configuration is not a JSON object",
        ));
    };
    for key in ["cniVersion", "name", "type"] {
        match obj.get(key) {
            Some(Value::String(v)) if !v.is_empty() => {}
            Some(Value::String(_)) => {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!("network configuration: {key:?} is empty"),
                ));
            }
            Some(v) => {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!("network configuration: {key:?} must be a string, not {v}"),
                ));
            }
            None => {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!("network configuration has no {key:?}"),
                ));
            }
        }
    }
    let conf: NetConf = serde_json::from_value(raw.clone())
        .map_err(|e| CniError::new(code::INVALID_CONFIG, format!("network configuration: {e}")))?;
    if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {} is not supported (supported: {})",
                conf.cni_version,
                SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    match env.command.as_str() {
        "ADD" => add(engine, env, &conf, &raw).await.map(Some),
        "DEL" => del(engine, env, &conf, &raw).await.map(|()| None),
        "CHECK" => check(engine, env, &conf, &raw).await.map(|()| None),
        "STATUS" => status(engine, env, &conf, &raw).await.map(|()| None),
        "GC" => gc(engine, env, &conf, &raw).await.map(|()| None),
        "" => Err(CniError::new(code::INVALID_ENV, "CNI_COMMAND is not set")),
        other => Err(CniError::new(
            code::INVALID_ENV,
            format!("unknown CNI_COMMAND {other:?}"),
        )),
    }
}

fn identity(env: &Env, conf: &NetConf) -> Result<(CniRef, String), CniError> {
    let container_id = env.require(&env.container_id, "CNI_CONTAINERID")?;
    let ifname = env.require(&env.ifname, "CNI_IFNAME")?;
    Ok((
        CniRef {
            network: conf.name.clone(),
            container_id,
        },
        ifname,
    ))
}

/// `camelCase` keys are accepted for the CLI's `kebab-case` options.
fn kebab(key: &str) -> String {
    let mut out = String::new();
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('-');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Where a CLI option of the request came from, to name it in errors.
struct Sources(Vec<(String, String)>);

impl Sources {
    fn note(&mut self, flag: &str, from: String) {
        if !self.0.iter().any(|(f, _)| f == flag) {
            self.0.push((flag.to_owned(), from));
        }
    }

    /// What gave option `flag` (`--mac <MAC>` or `--mac`).
    fn of(&self, flag: &str) -> String {
        let flag = flag.split([' ', '=']).next().unwrap_or(flag);
        self.0
            .iter()
            .find(|(f, _)| f == flag)
            .map_or_else(|| format!("{flag:?}"), |(_, from)| from.clone())
    }
}

/// The kinds a runtime may ask for: those with a container interface.
fn kind_of(conf: &NetConf) -> Result<String, CniError> {
    let kind = match conf.options.get("kind") {
        None => return Ok("macvlan".into()),
        Some(Value::String(k)) => k.clone(),
        Some(v) => {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("configuration key \"kind\" must name a kind (a string), not {v}"),
            ));
        }
    };
    // Those with an interface of their own: a runtime asks for CNI_IFNAME.
    const KINDS: [&str; 6] = ["macvlan", "ipvlan", "bridge", "router", "nested", "sriov"];
    if !KINDS.contains(&kind.as_str()) {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!(
                "configuration key \"kind\" is {kind:?}: attach-cni attaches an interface \
                 (CNI_IFNAME) of kind {}",
                KINDS.join(", ")
            ),
        ));
    }
    Ok(kind)
}

/// The long options of `attach add KIND` itself (not the global ones,
/// not help).
fn options_of(kind: &str) -> Vec<String> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    // The kinds' arguments are made when the command is built.
    cmd.build();
    cmd.find_subcommand("add")
        .and_then(|add| add.find_subcommand(kind))
        .map(|k| {
            k.get_arguments()
                .filter(|a| !a.is_global_set())
                .filter_map(|a| a.get_long().map(str::to_owned))
                .filter(|l| l != "help")
                .collect()
        })
        .unwrap_or_default()
}

/// `CNI_ARGS` (`K=V;K=V`) as pairs.
fn cni_args(env: &Env) -> Vec<(String, String)> {
    env.args
        .as_deref()
        .unwrap_or("")
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The `attach add` request of a configuration: its keys become CLI
/// options, parsed by the CLI's own parser. The MAC comes from the
/// configuration's `mac`, else `runtimeConfig.mac`, else `CNI_ARGS` `MAC=`;
/// the addresses from IPAM, else `runtimeConfig.ips`, else `CNI_ARGS` `IP=`.
fn request(
    conf: &NetConf,
    env: &Env,
    netns: &str,
    ifname: &str,
    ipam: &IpamResult,
) -> Result<AddRequest, CniError> {
    let kind = kind_of(conf)?;
    let options = options_of(&kind);
    let mut argv: Vec<String> = ["attach", "add", &kind, "--netns", netns, "--ifname", ifname]
        .map(String::from)
        .to_vec();
    let mut from = Sources(Vec::new());
    for (key, value) in &conf.options {
        if key == "kind" || CNI_KEYS.contains(&key.as_str()) {
            continue;
        }
        if matches!(key.as_str(), "netns" | "ifname") {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                format!(
                    "{key:?} comes from the runtime (CNI_NETNS/CNI_IFNAME), not the configuration"
                ),
            ));
        }
        let long = kebab(key);
        if !options.contains(&long) {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                format!("configuration key {key:?} is not a setting of kind {kind}"),
            ));
        }
        let flag = format!("--{long}");
        from.note(&flag, format!("configuration key {key:?}"));
        match value {
            Value::Bool(true) => argv.push(flag),
            Value::Bool(false) | Value::Null => {}
            Value::String(s) => argv.extend([flag, s.clone()]),
            Value::Number(n) => argv.extend([flag, n.to_string()]),
            Value::Array(items) => {
                for item in items {
                    let v = item
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| item.to_string());
                    argv.extend([flag.clone(), v]);
                }
            }
            Value::Object(_) => {
                return Err(CniError::new(
                    code::UNSUPPORTED_FIELD,
                    format!("configuration key {key:?} takes a value, not an object"),
                ));
            }
        }
    }
    let args = cni_args(env);
    let arg = |k: &str| args.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if !conf.options.contains_key("mac") {
        if let Some(mac) = &conf.runtime_config.mac {
            from.note("--mac", "runtimeConfig.mac".into());
            argv.extend(["--mac".into(), mac.clone()]);
        } else if let Some(mac) = arg("MAC").filter(|m| !m.is_empty()) {
            from.note("--mac", "CNI_ARGS MAC".into());
            argv.extend(["--mac".into(), mac]);
        }
    }
    for ip in &ipam.ips {
        from.note("--ip", "the ipam result's address".into());
        argv.extend(["--ip".into(), ip.address.clone()]);
    }
    if ipam.ips.is_empty() {
        for ip in &conf.runtime_config.ips {
            from.note("--ip", "runtimeConfig.ips".into());
            argv.extend(["--ip".into(), ip.clone()]);
        }
        // Static addresses in CNI_ARGS (with an IPAM plugin, they are its
        // to honour: it gets the same CNI_ARGS).
        if conf.runtime_config.ips.is_empty()
            && let Some(ips) = arg("IP").filter(|v| !v.is_empty())
        {
            for ip in ips.split(',') {
                if !ip.contains('/') {
                    return Err(CniError::new(
                        code::INVALID_CONFIG,
                        format!(
                            "CNI_ARGS IP={ip} needs a prefix length (like {ip}/24) \
                             when the network has no ipam"
                        ),
                    ));
                }
                from.note("--ip", "CNI_ARGS IP".into());
                argv.extend(["--ip".into(), ip.to_owned()]);
            }
        }
    }
    // Router endpoints route through their own link-local gateways.
    if kind != "router"
        && !conf.options.contains_key("gateway")
        && let Some(gw) = default_gateway(ipam)
    {
        from.note("--gateway", "the ipam result's gateway".into());
        argv.extend(["--gateway".into(), gw.to_string()]);
    }
    let cli = Cli::try_parse_from(&argv)
        .map_err(|e| CniError::new(code::INVALID_CONFIG, parse_error(&e, &from)))?;
    match cli.command {
        Command::Add(k) => Ok(AddRequest::from(k)),
        _ => unreachable!("argv starts with `add`"),
    }
}

/// A parse error of the request, in the configuration's terms.
fn parse_error(e: &clap::Error, from: &Sources) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let ctx = |k: ContextKind| -> Vec<String> {
        match e.get(k) {
            Some(ContextValue::String(s)) => vec![s.clone()],
            Some(ContextValue::Strings(v)) => v.clone(),
            _ => Vec::new(),
        }
    };
    let arg = ctx(ContextKind::InvalidArg);
    let source = arg.first().map(|a| from.of(a)).unwrap_or_default();
    let value = ctx(ContextKind::InvalidValue).into_iter().next();
    match e.kind() {
        ErrorKind::InvalidValue => {
            let valid = ctx(ContextKind::ValidValue);
            format!(
                "invalid value {:?} for {source}{}",
                value.unwrap_or_default(),
                if valid.is_empty() {
                    String::new()
                } else {
                    format!(": it takes {}", valid.join(", "))
                }
            )
        }
        ErrorKind::ValueValidation => {
            let why = std::error::Error::source(e)
                .map(|s| s.to_string())
                .unwrap_or_default();
            match value {
                Some(v) if !why.contains(&v) => format!("invalid value {v:?} for {source}: {why}"),
                _ => format!("{source}: {why}"),
            }
        }
        ErrorKind::ArgumentConflict => {
            let other = ctx(ContextKind::PriorArg)
                .first()
                .map(|a| from.of(a))
                .unwrap_or_default();
            format!("{source} cannot be given together with {other}")
        }
        ErrorKind::MissingRequiredArgument => {
            let keys: Vec<String> = arg
                .iter()
                .map(|a| {
                    let long = a.trim_start_matches("--");
                    format!("{:?}", long.split([' ', '=']).next().unwrap_or(long))
                })
                .collect();
            format!("the configuration needs {}", keys.join(", "))
        }
        ErrorKind::TooManyValues | ErrorKind::UnknownArgument => {
            format!("{source} is given more than once or does not apply")
        }
        _ => format!(
            "invalid configuration{}",
            if source.is_empty() {
                String::new()
            } else {
                format!(": {source}")
            }
        ),
    }
}

/// The gateway of the IPAM result's default route (or of its first address
/// when the default route names none).
fn default_gateway(ipam: &IpamResult) -> Option<IpAddr> {
    let route = ipam
        .routes
        .iter()
        .find(|r| r.dst == "0.0.0.0/0" || r.dst == "::/0")?;
    if let Some(gw) = &route.gw {
        return gw.parse().ok();
    }
    let v6 = route.dst.contains(':');
    ipam.ips
        .iter()
        .filter(|ip| ip.address.contains(':') == v6)
        .find_map(|ip| ip.gateway.as_ref()?.parse().ok())
}

/// The result's DNS: what the IPAM plugin gave, field by field, over the
/// configuration's (host-local gives an empty `dns`, which must not hide
/// the configuration's).
fn merge_dns(conf: Option<&Value>, ipam: Option<&Value>) -> Option<Value> {
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    let mut out = serde_json::Map::new();
    for dns in [conf, ipam].into_iter().flatten() {
        if let Value::Object(o) = dns {
            for (k, v) in o {
                if !empty(v) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
    (conf.is_some() || ipam.is_some()).then_some(Value::Object(out))
}

/// The CNI result for an attachment, in the configuration's version.
fn result(conf: &NetConf, rec: &Attachment, ipam: &IpamResult) -> Value {
    let old = pre_1_0(&conf.cni_version);
    let ips: Vec<Value> = rec
        .ips
        .iter()
        .map(|net| {
            let mut ip = json!({"address": net.to_string(), "interface": 0});
            if let Some(gw) = rec.gateway.filter(|g| g.is_ipv4() == net.addr.is_ipv4()) {
                ip["gateway"] = json!(gw.to_string());
            }
            if old {
                ip["version"] = json!(if net.addr.is_ipv4() { "4" } else { "6" });
            }
            ip
        })
        .collect();
    let mut routes: Vec<Value> = ipam.routes.iter().map(|r| json!(r)).collect();
    if routes.is_empty()
        && let Some(gw) = rec.gateway
    {
        let dst = if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
        routes.push(json!({"dst": dst, "gw": gw.to_string()}));
    }
    let mut out = json!({
        "cniVersion": conf.cni_version,
        "interfaces": [{
            "name": rec.ifname,
            "mac": rec.mac.to_string(),
            "mtu": rec.mtu,
            "sandbox": rec.netns_path,
        }],
        "ips": ips,
        "routes": routes,
    });
    if old {
        // "mtu" on interfaces arrived in 1.0.0.
        out["interfaces"][0]
            .as_object_mut()
            .map(|o| o.remove("mtu"));
    }
    if let Some(dns) = merge_dns(conf.dns.as_ref(), ipam.dns.as_ref()) {
        out["dns"] = dns;
    }
    out
}

async fn add(engine: &Engine, env: &Env, conf: &NetConf, raw: &Value) -> Result<String, CniError> {
    let (cni, ifname) = identity(env, conf)?;
    let netns = env.require(&env.netns, "CNI_NETNS")?;
    Netns::open(&netns).map_err(|e| CniError::new(code::UNKNOWN_CONTAINER, e.message))?;
    let ipam = Ipam::of(conf, raw, env)?;
    let leased = match &ipam {
        Some(i) => i.add(env)?,
        None => IpamResult::default(),
    };
    let added = match request(conf, env, &netns, &ifname, &leased) {
        Ok(req) => engine
            .add_as(&req, Some(cni))
            .await
            .map_err(CniError::from_engine),
        Err(e) => Err(e),
    };
    match added {
        Ok(rec) => Ok(result(conf, &rec, &leased).to_string()),
        Err(e) => {
            // ADD rolls back completely: the lease too.
            if let Some(i) = &ipam
                && let Err(d) = i.del(env)
            {
                tracing::warn!("releasing the address after a failed ADD: {}", d.msg);
            }
            Err(e)
        }
    }
}

/// Idempotent: succeeds when nothing (or no namespace) is left.
async fn del(engine: &Engine, env: &Env, conf: &NetConf, raw: &Value) -> Result<(), CniError> {
    let (cni, ifname) = identity(env, conf)?;
    engine
        .del_cni(&cni, &ifname, env.netns.as_deref())
        .await
        .map_err(CniError::from_engine)?;
    if let Some(i) = Ipam::of(conf, raw, env)? {
        i.del(env)?;
    }
    Ok(())
}

async fn check(engine: &Engine, env: &Env, conf: &NetConf, raw: &Value) -> Result<(), CniError> {
    let (cni, ifname) = identity(env, conf)?;
    let rec = engine
        .list()
        .map_err(CniError::from_engine)?
        .into_iter()
        .find(|r| r.cni.as_ref() == Some(&cni) && r.ifname == ifname)
        .ok_or_else(|| {
            CniError::new(
                code::UNKNOWN_CONTAINER,
                format!(
                    "no attachment of {} as {ifname} in network {}",
                    cni.container_id, cni.network
                ),
            )
        })?;
    if let Some(prev) = &conf.prev_result {
        let want_mac = prev["interfaces"]
            .as_array()
            .and_then(|i| i.iter().find(|i| i["name"] == ifname.as_str()))
            .and_then(|i| i["mac"].as_str());
        if let Some(m) = want_mac
            && !m.eq_ignore_ascii_case(&rec.mac.to_string())
        {
            return Err(CniError::new(
                code::DRIFT,
                format!("{ifname} has MAC {} but prevResult says {m}", rec.mac),
            ));
        }
    }
    engine
        .check(&rec)
        .await
        .map_err(|e| CniError::new(code::DRIFT, e.message))?;
    if let Some(i) = Ipam::of(conf, raw, env)? {
        i.check(env)?;
    }
    Ok(())
}

/// 51 when attachments of this network are broken (their datapath is not
/// loaded or has drifted: limited connectivity); 50 when an ADD could not
/// succeed now (no bpffs, the parent is missing, the IPAM plugin is absent).
async fn status(engine: &Engine, env: &Env, conf: &NetConf, raw: &Value) -> Result<(), CniError> {
    for rec in engine.list().map_err(CniError::from_engine)? {
        if rec.cni.as_ref().is_some_and(|c| c.network == conf.name)
            && let Err(e) = engine.check(&rec).await
        {
            return Err(CniError::new(
                code::LIMITED_CONNECTIVITY,
                format!(
                    "existing containers may have limited connectivity: {}",
                    e.message
                ),
            ));
        }
    }
    let unavailable = |msg: String| CniError::new(code::NOT_AVAILABLE, msg);
    let ebpf = conf.options.get("backend").and_then(Value::as_str) != Some("native");
    if ebpf {
        Datapath::check_bpffs().map_err(|e| unavailable(e.message))?;
    }
    if let Some(parent) = conf.options.get("parent").and_then(Value::as_str) {
        let rtnl = crate::netlink::Rtnl::here().map_err(|e| unavailable(e.message))?;
        if rtnl
            .link_by_name(parent)
            .await
            .map_err(|e| unavailable(e.message))?
            .is_none()
        {
            return Err(unavailable(format!("parent {parent:?} does not exist")));
        }
    }
    Ipam::of(conf, raw, env).map_err(|e| unavailable(e.msg))?;
    Ok(())
}

/// Removes every attachment of this network not in
/// `cni.dev/valid-attachments`, with its lease.
async fn gc(engine: &Engine, env: &Env, conf: &NetConf, raw: &Value) -> Result<(), CniError> {
    let valid: Vec<(String, String)> = conf
        .valid_attachments
        .as_ref()
        .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "GC needs cni.dev/valid-attachments"))?
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let gone = engine
        .gc_cni(&conf.name, &valid)
        .await
        .map_err(CniError::from_engine)?;
    if let Some(i) = Ipam::of(conf, raw, env)? {
        for rec in &gone {
            let Some(c) = &rec.cni else { continue };
            let mut e = env.clone();
            e.container_id = Some(c.container_id.clone());
            e.ifname = Some(rec.ifname.clone());
            e.netns = None;
            i.del(&e)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(extra: &str) -> NetConf {
        serde_json::from_str(&format!(
            r#"{{"cniVersion":"1.0.0","name":"n","type":"attach-cni","parent":"eth1"{extra}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn config_keys_become_cli_options() {
        let c = conf(r#","mode":"vepa","hostAccess":true,"datapath":"xdp","mtu":1400"#);
        let ipam = IpamResult {
            ips: vec![types::IpConfig {
                address: "10.10.0.5/24".into(),
                gateway: Some("10.10.0.1".into()),
                interface: None,
            }],
            routes: vec![types::Route {
                dst: "0.0.0.0/0".into(),
                gw: None,
            }],
            dns: None,
        };
        let AddRequest::Macvlan(r) =
            request(&c, &Env::default(), "/run/netns/x", "eth0", &ipam).unwrap()
        else {
            panic!("not a macvlan request");
        };
        assert_eq!(r.mode, crate::model::MacvlanMode::Vepa);
        assert!(r.host_access);
        assert_eq!(r.mtu, Some(1400));
        assert_eq!(r.ips[0].to_string(), "10.10.0.5/24");
        assert_eq!(r.gateway, Some("10.10.0.1".parse().unwrap()));
        assert_eq!(r.netns, "/run/netns/x");
    }

    #[test]
    fn router_takes_no_gateway_from_ipam() {
        let c: NetConf = serde_json::from_str(
            r#"{"cniVersion":"1.0.0","name":"n","type":"attach-cni","kind":"router","uplink":"eth1"}"#,
        )
        .unwrap();
        let ipam = IpamResult {
            ips: vec![types::IpConfig {
                address: "10.88.0.5/24".into(),
                gateway: Some("10.88.0.1".into()),
                interface: None,
            }],
            routes: vec![types::Route {
                dst: "0.0.0.0/0".into(),
                gw: Some("10.88.0.1".into()),
            }],
            dns: None,
        };
        let AddRequest::Router(r) =
            request(&c, &Env::default(), "/run/netns/x", "eth0", &ipam).unwrap()
        else {
            panic!("not a router request");
        };
        assert_eq!(r.uplink.as_deref(), Some("eth1"));
        assert_eq!(r.ips[0].to_string(), "10.88.0.5/24");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_config_errors() {
        let e = request(
            &conf(r#","colour":"red""#),
            &Env::default(),
            "/x",
            "eth0",
            &IpamResult::default(),
        )
        .unwrap_err();
        assert_eq!(e.code, code::UNSUPPORTED_FIELD);
        assert!(e.msg.contains("\"colour\""), "{}", e.msg);
        let e = request(
            &conf(r#","mode":"sideways""#),
            &Env::default(),
            "/x",
            "eth0",
            &IpamResult::default(),
        )
        .unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(
            e.msg.contains("\"sideways\"") && e.msg.contains("\"mode\"") && e.msg.contains("vepa"),
            "{}",
            e.msg
        );
        assert!(!e.msg.contains("'--"), "parser wording: {}", e.msg);
        let e = request(
            &conf(r#","netns":"/y""#),
            &Env::default(),
            "/x",
            "eth0",
            &IpamResult::default(),
        )
        .unwrap_err();
        assert_eq!(e.code, code::UNSUPPORTED_FIELD);
    }

    #[test]
    fn the_sample_conflist_is_valid() {
        let list: Value =
            serde_json::from_str(include_str!("../../../contrib/10-attach.conflist")).unwrap();
        let mut plugin = list["plugins"][0].clone();
        plugin["cniVersion"] = list["cniVersion"].clone();
        plugin["name"] = list["name"].clone();
        let conf: NetConf = serde_json::from_value(plugin).unwrap();
        assert!(SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()));
        // podman 4.3 (CNI 1.0) refuses newer versions.
        assert_eq!(conf.cni_version, "1.0.0");
        request(
            &conf,
            &Env::default(),
            "/run/netns/x",
            "eth0",
            &IpamResult::default(),
        )
        .unwrap();
    }

    #[test]
    fn old_results_tag_ip_versions() {
        let c: NetConf = serde_json::from_str(
            r#"{"cniVersion":"0.3.1","name":"n","type":"attach-cni","parent":"eth1"}"#,
        )
        .unwrap();
        let rec: Attachment = serde_json::from_value(json!({
            "netns": "x", "netns_path": "/run/netns/x", "netns_inode": 1, "ifname": "eth0",
            "kind": "macvlan", "mode": "bridge", "backend": "ebpf", "datapath": "tc",
            "parent": "eth1", "parent_ifindex": 2, "mac": "02:00:00:00:00:01",
            "ips": ["10.10.0.5/24", "fd00::5/64"], "gateway": "10.10.0.1", "mtu": 1500,
            "host_ifname": null, "host_ifindex": null, "ifindex": 3, "host_access": false,
            "spoofchk": true, "endpoint_id": 0, "xdp_mode": null, "saved_parent": null,
            "created": 0
        }))
        .unwrap();
        let r = result(&c, &rec, &IpamResult::default());
        assert_eq!(r["ips"][0]["version"], "4");
        assert_eq!(r["ips"][1]["version"], "6");
        assert_eq!(r["ips"][0]["gateway"], "10.10.0.1");
        assert!(r["ips"][1].get("gateway").is_none());
        assert_eq!(r["routes"][0]["dst"], "0.0.0.0/0");
        assert!(r["interfaces"][0].get("mtu").is_none());
    }

    #[test]
    fn kind_must_be_a_container_kind() {
        for (extra, names) in [
            (r#","kind":null"#, "null"),
            (r#","kind":7"#, "7"),
            (r#","kind":"teleport""#, "teleport"),
            (r#","kind":"nested-host""#, "nested-host"),
            (r#","kind":"host""#, "\"host\""),
        ] {
            let e = request(
                &conf(extra),
                &Env::default(),
                "/x",
                "eth0",
                &IpamResult::default(),
            )
            .unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG, "{extra}");
            assert!(e.msg.contains("kind") && e.msg.contains(names), "{}", e.msg);
        }
    }

    #[test]
    fn bad_values_name_their_source_not_the_parser() {
        let env = Env {
            args: Some("IgnoreUnknown=1;MAC=zz:00".into()),
            ..Env::default()
        };
        let e = request(&conf(""), &env, "/x", "eth0", &IpamResult::default()).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(
            e.msg.contains("CNI_ARGS MAC") && e.msg.contains("zz:00"),
            "{}",
            e.msg
        );
        let e = request(
            &conf(r#","mtu":"big""#),
            &Env::default(),
            "/x",
            "eth0",
            &IpamResult::default(),
        )
        .unwrap_err();
        assert!(
            e.msg.contains("\"mtu\"") && e.msg.contains("big"),
            "{}",
            e.msg
        );
        assert!(
            !e.msg.contains("'--") && !e.msg.contains("error:"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn cni_args_give_the_mac_and_static_addresses() {
        let env = Env {
            args: Some("IgnoreUnknown=1;MAC=02:aa:00:00:00:09;IP=10.10.0.9/24".into()),
            ..Env::default()
        };
        let AddRequest::Macvlan(r) =
            request(&conf(""), &env, "/x", "eth0", &IpamResult::default()).unwrap()
        else {
            panic!("not a macvlan request");
        };
        assert_eq!(r.mac.unwrap().to_string(), "02:aa:00:00:00:09");
        assert_eq!(r.ips[0].to_string(), "10.10.0.9/24");
        // runtimeConfig.mac wins over CNI_ARGS.
        let c = conf(r#","runtimeConfig":{"mac":"02:bb:00:00:00:01"}"#);
        let AddRequest::Macvlan(r) =
            request(&c, &env, "/x", "eth0", &IpamResult::default()).unwrap()
        else {
            panic!("not a macvlan request");
        };
        assert_eq!(r.mac.unwrap().to_string(), "02:bb:00:00:00:01");
        let env = Env {
            args: Some("IP=10.10.0.9".into()),
            ..Env::default()
        };
        let e = request(&conf(""), &env, "/x", "eth0", &IpamResult::default()).unwrap_err();
        assert!(e.msg.contains("IP=10.10.0.9"), "{}", e.msg);
    }

    #[test]
    fn dns_of_the_configuration_survives_an_empty_one_from_ipam() {
        let conf_dns = json!({"nameservers": ["10.10.0.53"], "search": ["example.test"]});
        let merged = merge_dns(Some(&conf_dns), Some(&json!({}))).unwrap();
        assert_eq!(merged, conf_dns);
        let ipam_dns = json!({"nameservers": ["10.10.0.1"], "domain": ""});
        let merged = merge_dns(Some(&conf_dns), Some(&ipam_dns)).unwrap();
        assert_eq!(
            merged,
            json!({"nameservers": ["10.10.0.1"], "search": ["example.test"]})
        );
        assert_eq!(merge_dns(None, None), None);
    }
}
