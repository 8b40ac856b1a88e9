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

use serde_json::{Value, json};

use self::{
    ipam::Ipam,
    types::{
        CNI_KEYS, CniError, Env, IpamResult, LATEST, NetConf, SUPPORTED_VERSIONS, code, pre_1_0,
    },
};
use crate::{
    Engine,
    datapath::Datapath,
    kinds::AddRequest,
    model::{Attachment, CniRef},
    netns::Netns,
    op::{CheckArgs, Format, Op, Selector},
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
        let mut node = Node::default();
        match run(&env, &stdin, &mut node).await {
            Ok(out) => (true, out.unwrap_or_default()),
            Err(e) => (false, error_json(e, &stdin)),
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

/// `{"detached": [...]}`, what a GC answers.
#[derive(serde::Deserialize)]
struct Detached {
    detached: Vec<Attachment>,
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

/// Where the plugin's operations run: the node's agent when one answers,
/// else an engine of this process (made on first use). IPAM always runs
/// here, in the runtime's context.
#[derive(Default)]
struct Node {
    engine: Option<Engine>,
}

impl Node {
    /// Runs `op` (rendered as JSON).
    async fn run(&mut self, op: &Op) -> crate::Result<crate::op::Done> {
        if let Some(reply) = crate::agent::client::forward(op, Format::Json).await {
            match reply {
                Err(e) if e.kind == crate::ErrorKind::System && e.message.contains("the agent") => {
                    tracing::warn!("the agent did not answer ({e}); working without it")
                }
                done => return done,
            }
        }
        let engine = match &mut self.engine {
            Some(e) => e,
            None => self.engine.insert(Engine::new()?),
        };
        crate::op::run(op, engine, Format::Json).await
    }

    /// Runs `op` and reads its JSON result as `T`.
    async fn call<T: serde::de::DeserializeOwned>(&mut self, op: Op) -> Result<T, CniError> {
        let done = self.run(&op).await.map_err(CniError::from_engine)?;
        serde_json::from_str(&done.stdout).map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                format!("unreadable result of {}: {e}", op.name()),
            )
        })
    }

    async fn list(&mut self) -> Result<Vec<Attachment>, CniError> {
        self.call(Op::List).await
    }

    /// Checks `rec` against reality; the error is the engine's.
    async fn check(&mut self, rec: &Attachment) -> crate::Result<()> {
        let op = Op::Check(CheckArgs {
            all: false,
            target: Selector {
                netns: Some(rec.netns.clone()),
                ifname: Some(rec.ifname.clone()),
                ..Selector::default()
            },
        });
        self.run(&op).await.map(drop)
    }
}

async fn run(env: &Env, stdin: &str, node: &mut Node) -> Result<Option<String>, CniError> {
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
        "ADD" => add(node, env, &conf, &raw).await.map(Some),
        "DEL" => del(node, env, &conf, &raw).await.map(|()| None),
        "CHECK" => check(node, env, &conf, &raw).await.map(|()| None),
        "STATUS" => status(node, env, &conf, &raw).await.map(|()| None),
        "GC" => gc(node, env, &conf, &raw).await.map(|()| None),
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

/// Where each option of the request came from, to name it in errors.
#[derive(Default)]
struct Sources(Vec<(String, String)>);

impl Sources {
    fn note(&mut self, option: &str, from: String) {
        if !self.0.iter().any(|(o, _)| o == option) {
            self.0.push((option.to_owned(), from));
        }
    }

    /// What gave `option` (e.g. `configuration key "mtu"`).
    fn of(&self, option: &str) -> String {
        self.0
            .iter()
            .find(|(o, _)| o == option)
            .map_or_else(|| format!("{option:?}"), |(_, from)| from.clone())
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

/// The options of `attach add KIND`, as named on the command line and in
/// JSON (hidden ones and help excepted).
fn options_of(kind: &str) -> Vec<String> {
    use crate::kinds::{bridge, ipvlan, macvlan, nested, router, sriov};
    use clap::Args;
    let cmd = clap::Command::new("add");
    let cmd = match kind {
        "macvlan" => macvlan::MacvlanRequest::augment_args(cmd),
        "ipvlan" => ipvlan::IpvlanRequest::augment_args(cmd),
        "bridge" => bridge::BridgeRequest::augment_args(cmd),
        "router" => router::RouterRequest::augment_args(cmd),
        "nested" => nested::NestedRequest::augment_args(cmd),
        "sriov" => sriov::SriovRequest::augment_args(cmd),
        _ => cmd,
    };
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect()
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

/// The `attach add` request of a configuration: its keys are the CLI's
/// options (camelCase accepted), read straight into the kind's request.
/// The MAC comes from the configuration's `mac`, else `runtimeConfig.mac`,
/// else `CNI_ARGS` `MAC=`; the addresses from IPAM, else
/// `runtimeConfig.ips`, else `CNI_ARGS` `IP=`.
fn request(
    conf: &NetConf,
    env: &Env,
    netns: &str,
    ifname: &str,
    ipam: &IpamResult,
) -> Result<AddRequest, CniError> {
    let kind = kind_of(conf)?;
    let options = options_of(&kind);
    let mut obj = serde_json::Map::new();
    obj.insert("kind".into(), json!(kind));
    obj.insert("netns".into(), json!(netns));
    obj.insert("ifname".into(), json!(ifname));
    let mut from = Sources::default();
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
        let option = kebab(key);
        if !options.contains(&option) {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                format!("configuration key {key:?} is not a setting of kind {kind}"),
            ));
        }
        if value.is_object() {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                format!("configuration key {key:?} takes a value, not an object"),
            ));
        }
        // false and null: as if the key were absent (an option not given).
        if matches!(value, Value::Bool(false) | Value::Null) {
            continue;
        }
        from.note(&option, format!("configuration key {key:?}"));
        obj.insert(option, value.clone());
    }
    let args = cni_args(env);
    let arg = |k: &str| args.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if !obj.contains_key("mac") {
        if let Some(mac) = &conf.runtime_config.mac {
            from.note("mac", "runtimeConfig.mac".into());
            obj.insert("mac".into(), json!(mac));
        } else if let Some(mac) = arg("MAC").filter(|m| !m.is_empty()) {
            from.note("mac", "CNI_ARGS MAC".into());
            obj.insert("mac".into(), json!(mac));
        }
    }
    let mut ips: Vec<String> = ipam.ips.iter().map(|ip| ip.address.clone()).collect();
    if !ips.is_empty() {
        from.note("ip", "the ipam result's address".into());
    } else if !conf.runtime_config.ips.is_empty() {
        from.note("ip", "runtimeConfig.ips".into());
        ips.clone_from(&conf.runtime_config.ips);
    } else if let Some(list) = arg("IP").filter(|v| !v.is_empty()) {
        // Static addresses in CNI_ARGS (with an IPAM plugin, they are its
        // to honour: it gets the same CNI_ARGS).
        for ip in list.split(',') {
            if !ip.contains('/') {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!(
                        "CNI_ARGS IP={ip} needs a prefix length (like {ip}/24) \
                         when the network has no ipam"
                    ),
                ));
            }
            ips.push(ip.to_owned());
        }
        from.note("ip", "CNI_ARGS IP".into());
    }
    if !ips.is_empty() {
        let given = obj.entry("ip").or_insert_with(|| json!([]));
        if let Value::String(one) = given {
            *given = json!([one]);
        }
        if let Value::Array(list) = given {
            list.extend(ips.into_iter().map(Value::String));
        }
    }
    // Router endpoints route through their own link-local gateways.
    if kind != "router"
        && !obj.contains_key("gateway")
        && let Some(gw) = default_gateway(ipam)
    {
        from.note("gateway", "the ipam result's gateway".into());
        obj.insert("gateway".into(), json!(gw.to_string()));
    }
    obj.remove("kind");
    let given = Value::Object(obj);
    // Kind by kind: through the tagged enum, serde would lose which key
    // failed.
    fn read<T: serde::de::DeserializeOwned>(
        given: &Value,
        from: &Sources,
        wrap: fn(T) -> AddRequest,
    ) -> Result<AddRequest, CniError> {
        serde_path_to_error::deserialize(given)
            .map(wrap)
            .map_err(|e| CniError::new(code::INVALID_CONFIG, read_error(&e, given, from)))
    }
    match kind.as_str() {
        "macvlan" => read(&given, &from, AddRequest::Macvlan),
        "ipvlan" => read(&given, &from, AddRequest::Ipvlan),
        "bridge" => read(&given, &from, AddRequest::Bridge),
        "router" => read(&given, &from, AddRequest::Router),
        "nested" => read(&given, &from, AddRequest::Nested),
        _ => read(&given, &from, AddRequest::Sriov),
    }
}

/// A request that could not be read, in the configuration's terms.
fn read_error(
    e: &serde_path_to_error::Error<serde_json::Error>,
    given: &Value,
    from: &Sources,
) -> String {
    let why = e.inner().to_string();
    let why = why.split(" at line ").next().unwrap_or(&why);
    let option = e.path().iter().find_map(|s| match s {
        serde_path_to_error::Segment::Map { key } => Some(key.clone()),
        _ => None,
    });
    match option {
        Some(option) => {
            let value = &given[&option];
            let value = match value {
                Value::Array(items) if items.len() == 1 => &items[0],
                v => v,
            };
            format!("invalid value {value} for {}: {why}", from.of(&option))
        }
        None => match why.strip_prefix("missing field `") {
            Some(rest) => format!("the configuration needs {:?}", rest.trim_end_matches('`')),
            None => format!("invalid configuration: {why}"),
        },
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

async fn add(node: &mut Node, env: &Env, conf: &NetConf, raw: &Value) -> Result<String, CniError> {
    let (cni, ifname) = identity(env, conf)?;
    let netns = env.require(&env.netns, "CNI_NETNS")?;
    Netns::open(&netns).map_err(|e| CniError::new(code::UNKNOWN_CONTAINER, e.message))?;
    let ipam = Ipam::of(conf, raw, env)?;
    let leased = match &ipam {
        Some(i) => i.add(env)?,
        None => IpamResult::default(),
    };
    let added = match request(conf, env, &netns, &ifname, &leased) {
        Ok(request) => {
            node.call::<Attachment>(Op::Add {
                request,
                cni: Some(cni),
            })
            .await
        }
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
async fn del(node: &mut Node, env: &Env, conf: &NetConf, raw: &Value) -> Result<(), CniError> {
    let (cni, ifname) = identity(env, conf)?;
    node.call::<Value>(Op::DelCni {
        cni,
        ifname,
        netns: env.netns.clone(),
    })
    .await?;
    if let Some(i) = Ipam::of(conf, raw, env)? {
        i.del(env)?;
    }
    Ok(())
}

async fn check(node: &mut Node, env: &Env, conf: &NetConf, raw: &Value) -> Result<(), CniError> {
    let (cni, ifname) = identity(env, conf)?;
    let rec = node
        .list()
        .await?
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
    node.check(&rec)
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
async fn status(node: &mut Node, env: &Env, conf: &NetConf, raw: &Value) -> Result<(), CniError> {
    for rec in node.list().await? {
        if rec.cni.as_ref().is_some_and(|c| c.network == conf.name)
            && let Err(e) = node.check(&rec).await
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
async fn gc(node: &mut Node, env: &Env, conf: &NetConf, raw: &Value) -> Result<(), CniError> {
    let valid: Vec<(String, String)> = conf
        .valid_attachments
        .as_ref()
        .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "GC needs cni.dev/valid-attachments"))?
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let gone: Detached = node
        .call(Op::GcCni {
            network: conf.name.clone(),
            valid,
        })
        .await?;
    let gone = gone.detached;
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
