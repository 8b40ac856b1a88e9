//! The `attach add` request of a CNI configuration: its keys are the CLI's
//! options, read straight into the kind's request; what fails is named by
//! where it came from (a configuration key, CNI_ARGS, runtimeConfig, IPAM).

use std::net::IpAddr;

use serde_json::{Value, json};

use super::types::{CNI_KEYS, CniError, Env, IpamResult, NetConf, code};
use crate::kinds::AddRequest;

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

/// The kinds a runtime may ask for: those with an interface of their own
/// (a runtime asks for CNI_IFNAME), each with its [`form`].
const KINDS: [&str; 6] = ["macvlan", "ipvlan", "bridge", "router", "nested", "sriov"];

/// The kind the configuration asks for, one of [`KINDS`].
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
    if form(&kind).is_none() {
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

/// How a request of `kind` is read from its JSON form.
type Reader = fn(&Value, &Sources) -> Result<AddRequest, CniError>;

/// A kind of [`KINDS`]: its `attach add` arguments (clap) and how its
/// request is read. Kind by kind: through the tagged enum, serde would lose
/// which key failed.
fn form(kind: &str) -> Option<(clap::Command, Reader)> {
    use clap::Args;

    use crate::kinds::{bridge, ipvlan, macvlan, nested, router, sriov};
    fn read<T: serde::de::DeserializeOwned>(
        given: &Value,
        from: &Sources,
        wrap: fn(T) -> AddRequest,
    ) -> Result<AddRequest, CniError> {
        serde_path_to_error::deserialize(given)
            .map(wrap)
            .map_err(|e| CniError::new(code::INVALID_CONFIG, read_error(&e, given, from)))
    }
    let cmd = clap::Command::new("add");
    Some(match kind {
        "macvlan" => (macvlan::MacvlanRequest::augment_args(cmd), |g, f| {
            read(g, f, AddRequest::Macvlan)
        }),
        "ipvlan" => (ipvlan::IpvlanRequest::augment_args(cmd), |g, f| {
            read(g, f, AddRequest::Ipvlan)
        }),
        "bridge" => (bridge::BridgeRequest::augment_args(cmd), |g, f| {
            read(g, f, AddRequest::Bridge)
        }),
        "router" => (router::RouterRequest::augment_args(cmd), |g, f| {
            read(g, f, AddRequest::Router)
        }),
        "nested" => (nested::NestedRequest::augment_args(cmd), |g, f| {
            read(g, f, AddRequest::Nested)
        }),
        "sriov" => (sriov::SriovRequest::augment_args(cmd), |g, f| {
            read(g, f, AddRequest::Sriov)
        }),
        _ => return None,
    })
}

/// The options of `attach add KIND`, as named on the command line and in
/// JSON (hidden ones and help excepted).
fn options_of(cmd: &clap::Command) -> Vec<String> {
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect()
}

/// `CNI_ARGS` (`K=V;K=V`) as pairs.
pub fn cni_args(env: &Env) -> Vec<(String, String)> {
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
pub fn request(
    conf: &NetConf,
    env: &Env,
    netns: &str,
    ifname: &str,
    ipam: &IpamResult,
) -> Result<AddRequest, CniError> {
    let kind = kind_of(conf)?;
    let (args, read) = form(&kind).expect("kind_of gives a kind with a form");
    let options = options_of(&args);
    let mut obj = serde_json::Map::new();
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
    // The `bandwidth` capability: enforced by our programs, as the
    // configuration's own `ingressRate`... would be (which win).
    for (key, value) in conf.runtime_config.bandwidth.iter().flatten() {
        let option = kebab(key);
        if ![
            "ingress-rate",
            "ingress-burst",
            "egress-rate",
            "egress-burst",
        ]
        .contains(&option.as_str())
        {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!(
                    "runtimeConfig.bandwidth.{key} is not a limit (ingressRate, ingressBurst, egressRate, egressBurst)"
                ),
            ));
        }
        if !options.contains(&option) {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("runtimeConfig.bandwidth: kind {kind} has no rate limits"),
            ));
        }
        if !obj.contains_key(&option) && !value.is_null() {
            from.note(&option, format!("runtimeConfig.bandwidth.{key}"));
            obj.insert(option, value.clone());
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
    read(&Value::Object(obj), &from)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::types::{self, SUPPORTED_VERSIONS};

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
}
