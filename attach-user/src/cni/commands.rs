//! The CNI commands (ADD, DEL, CHECK, STATUS, GC), each a few operations on
//! the node (through its agent when one runs) around the IPAM plugin, which
//! runs here, in the runtime's context.

use serde_json::Value;

use super::{
    ipam::Ipam,
    request::{cni_args, request},
    result::{HostSide, result},
    types::{CniError, Env, IpamResult, NetConf, code},
};
use crate::{
    Engine,
    datapath::Datapath,
    model::{Attachment, CniRef},
    netns::Netns,
    op::{CheckArgs, Format, Op, Selector},
};

/// `{"detached": [...]}`, what a GC answers.
#[derive(serde::Deserialize)]
struct Detached {
    detached: Vec<Attachment>,
}

/// Where the plugin's operations run: the node's agent when one answers,
/// else an engine of this process (made on first use). IPAM always runs
/// here, in the runtime's context.
#[derive(Default)]
pub struct Node {
    engine: Option<Engine>,
}

impl Node {
    /// Runs `op` (rendered as JSON); an agent that does not answer is
    /// worked around, not an error for the runtime.
    async fn run(&mut self, op: &Op) -> crate::Result<crate::op::Done> {
        crate::agent::client::run(op, Format::Json, &mut self.engine, true).await
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

fn identity(env: &Env, conf: &NetConf) -> Result<(CniRef, String), CniError> {
    let container_id = env.require(&env.container_id, "CNI_CONTAINERID")?;
    let ifname = env.require(&env.ifname, "CNI_IFNAME")?;
    Ok((
        CniRef {
            network: conf.name.clone(),
            container_id,
            pod_namespace: pod_arg(env, "K8S_POD_NAMESPACE"),
            pod_name: pod_arg(env, "K8S_POD_NAME"),
        },
        ifname,
    ))
}

/// A pod's namespace or name from CNI_ARGS, if it is a Kubernetes name (a
/// DNS subdomain: at most 253 of `a-z0-9.-`); anything else is left out, not
/// refused: it is a note for `list` and the metrics' labels, which must not
/// carry arbitrary text.
fn pod_arg(env: &Env, key: &str) -> Option<String> {
    let v = cni_args(env).into_iter().find(|(k, _)| k == key)?.1;
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !ok {
        tracing::warn!("CNI_ARGS {key}={v:?} is not a Kubernetes name: not recorded");
    }
    ok.then_some(v)
}

pub async fn add(
    node: &mut Node,
    env: &Env,
    conf: &NetConf,
    raw: &Value,
) -> Result<String, CniError> {
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
        Ok(rec) => {
            let host = host_side(&rec).await;
            Ok(result(conf, &rec, &leased, host.as_ref()).to_string())
        }
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

/// The host side of `rec`'s veth as this process (in the runtime's
/// namespace, the node's) sees it, for the result. Not finding it is not an
/// ADD failure (the attachment is made and works): the result then lists
/// the container's interface only, and a chained plugin that needs the host
/// side says so.
async fn host_side(rec: &Attachment) -> Option<HostSide> {
    let name = rec.host_ifname.as_ref()?;
    let found = match crate::netlink::Rtnl::here() {
        Ok(rtnl) => rtnl.link_by_name(name).await,
        Err(e) => Err(e),
    };
    match found {
        Ok(Some(link)) => Some(HostSide {
            name: link.name,
            mac: link.mac.to_string(),
        }),
        Ok(None) => {
            tracing::warn!("host-side interface {name} not found: left out of the result");
            None
        }
        Err(e) => {
            tracing::warn!("reading host-side interface {name}: {}", e.message);
            None
        }
    }
}

/// Idempotent: succeeds when nothing (or no namespace) is left.
pub async fn del(node: &mut Node, env: &Env, conf: &NetConf, raw: &Value) -> Result<(), CniError> {
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

pub async fn check(
    node: &mut Node,
    env: &Env,
    conf: &NetConf,
    raw: &Value,
) -> Result<(), CniError> {
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
        i.check(conf, env)?;
    }
    Ok(())
}

/// 51 when attachments of this network are broken (their datapath is not
/// loaded or has drifted: limited connectivity); 50 when an ADD could not
/// succeed now (no bpffs, the parent is missing, the IPAM plugin is absent).
pub async fn status(
    node: &mut Node,
    env: &Env,
    conf: &NetConf,
    raw: &Value,
) -> Result<(), CniError> {
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
pub async fn gc(node: &mut Node, env: &Env, conf: &NetConf, raw: &Value) -> Result<(), CniError> {
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
