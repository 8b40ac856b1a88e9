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

mod commands;
mod hostlocal;
pub mod install;
mod ipam;
mod request;
mod result;
pub mod types;

use std::{io::Read, process::ExitCode};

use serde_json::{Value, json};

use self::{
    commands::{Node, add, check, del, gc, status},
    types::{CniError, Env, LATEST, NetConf, SUPPORTED_VERSIONS, code},
};

/// Runs one CNI command from the process environment and stdin: through
/// the node's agent when one runs, else here.
pub fn main() -> ExitCode {
    crate::logging::init(crate::cli::LogFormat::Text);
    // One ADD, DEL, CHECK or GC, then exit.
    crate::sys::short_lived_heap();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(install) = install::Install::from_args(&args) {
        return run_install(install);
    }
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

/// `attach-cni --install ...` (see install.rs): one line per file written.
fn run_install(install: Result<install::Install, String>) -> ExitCode {
    let done = install.and_then(|i| {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
        i.run(&exe).map_err(|e| format!("installing: {e}"))
    });
    match done {
        Ok(wrote) => {
            for path in wrote {
                println!("installed {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("attach-cni: {e}");
            ExitCode::from(2)
        }
    }
}

/// Checks a network configuration as ADD would read it, without running
/// anything: JSON, `cniVersion`/`name`/`type`, the kind and its settings
/// (the container's namespace, interface and addresses, which come from
/// the runtime and IPAM, stand in). For manifests shipped with it (the
/// Kubernetes NetworkAttachmentDefinitions) and tools that write them.
pub fn validate(config: &str) -> Result<(), CniError> {
    let (_, conf) = parse(config)?;
    request::request(
        &conf,
        &Env::default(),
        "/run/netns/validate",
        "net1",
        &types::IpamResult::default(),
    )
    .map(drop)
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

async fn run(env: &Env, stdin: &str, node: &mut Node) -> Result<Option<String>, CniError> {
    if env.command == "VERSION" {
        return Ok(Some(
            json!({"cniVersion": LATEST, "supportedVersions": SUPPORTED_VERSIONS}).to_string(),
        ));
    }
    let (raw, conf) = parse(stdin)?;
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

/// The network configuration, raw and read, with its required keys and a
/// supported version.
fn parse(stdin: &str) -> Result<(Value, NetConf), CniError> {
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
    Ok((raw, conf))
}
