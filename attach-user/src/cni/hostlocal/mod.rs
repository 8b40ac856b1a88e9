//! host-local IPAM in the plugin's own process: the reference plugin's
//! configuration (`ranges`, the legacy single `subnet`, `rangeStart`,
//! `rangeEnd`, `gateway`, `routes`, `dataDir`, `resolvConf`), its requested
//! addresses (`CNI_ARGS` `IP=`, `args.cni.ips`, `runtimeConfig.ips`,
//! `runtimeConfig.ipRanges`), its allocation order, its data directory and
//! its lock, so that this code and the real binary allocate from one
//! directory, even at once, and a node can switch either way. Errors carry
//! host-local's code (999) and message.
//!
//! A configuration this code does not read exactly as host-local would
//! (an invalid one, a key spelt in another case, which Go's JSON decoder
//! accepts, an IPv4-mapped address) is not guessed at: [`Config::load`]
//! says why, and the caller runs the binary instead.

mod range;
mod store;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use serde_json::{Map, Value, json};

use self::{
    range::{RangeSet, RangeSpec},
    store::Store,
};
use super::types::{CniError, Env, IpConfig, IpamResult, Route};

/// host-local's error code (the CNI library's "internal error").
pub const CODE: u32 = 999;
const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// The `ipam` keys host-local reads, as spelt in its JSON tags (plus `name`,
/// a field it overwrites, and ours, `inProcess`).
const KEYS: [&str; 11] = [
    "type",
    "name",
    "subnet",
    "rangeStart",
    "rangeEnd",
    "gateway",
    "routes",
    "dataDir",
    "resolvConf",
    "ranges",
    "inProcess",
];
const RANGE_KEYS: [&str; 4] = ["subnet", "rangeStart", "rangeEnd", "gateway"];

/// A host-local configuration, read as host-local's `LoadIPAMConfig` reads it.
#[derive(Debug)]
pub struct Config {
    network: String,
    data_dir: PathBuf,
    sets: Vec<RangeSet>,
    routes: Vec<Route>,
    resolv_conf: Option<PathBuf>,
    /// Addresses asked for, in host-local's order (CNI_ARGS, args, runtimeConfig).
    requested: Vec<IpAddr>,
}

fn err(msg: impl Into<String>) -> CniError {
    CniError::new(CODE, msg)
}

impl Config {
    /// The configuration of `raw` (the whole network configuration), or why
    /// it is left to the binary.
    pub fn load(raw: &Value, env: &Env) -> Result<Self, String> {
        let ipam = raw
            .get("ipam")
            .and_then(Value::as_object)
            .ok_or("no ipam object")?;
        same_case(ipam, &KEYS)?;
        let network = raw
            .get("name")
            .and_then(Value::as_str)
            .ok_or("no network name")?
            .to_owned();
        let data_dir = match ipam.get("dataDir") {
            None | Some(Value::Null) => DEFAULT_DATA_DIR.to_owned(),
            Some(Value::String(s)) if s.is_empty() => DEFAULT_DATA_DIR.to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => return Err(format!("dataDir is {v}")),
        };
        let resolv_conf = match ipam.get("resolvConf") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(PathBuf::from(s)),
            Some(v) => return Err(format!("resolvConf is {v}")),
        };
        let mut specs: Vec<Vec<RangeSpec>> = Vec::new();
        // Runtime ranges first, then the legacy single range, then `ranges`.
        if let Some(r) = raw.pointer("/runtimeConfig/ipRanges")
            && !r.is_null()
        {
            specs.extend(range_sets(r)?);
        }
        let legacy = range_spec(ipam)?;
        if legacy.subnet.is_some() {
            specs.push(vec![legacy]);
        }
        if let Some(r) = ipam.get("ranges")
            && !r.is_null()
        {
            specs.extend(range_sets(r)?);
        }
        if specs.is_empty() {
            return Err("no IP ranges specified".into());
        }
        let sets = specs
            .iter()
            .enumerate()
            .map(|(i, s)| RangeSet::new(s).map_err(|e| format!("invalid range set {i}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, a) in sets.iter().enumerate() {
            for (j, b) in sets.iter().enumerate().skip(i + 1) {
                if a.overlaps(b) {
                    return Err(format!("range set {i} overlaps with {j}"));
                }
            }
        }
        let routes = match ipam.get("routes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.iter().map(route).collect::<Result<_, _>>()?,
            Some(v) => return Err(format!("routes is {v}")),
        };
        let mut requested = env_ips(env)?;
        for at in ["/args/cni/ips", "/runtimeConfig/ips"] {
            match raw.pointer(at) {
                None | Some(Value::Null) => {}
                Some(Value::Array(a)) => {
                    for v in a {
                        requested.push(
                            v.as_str()
                                .and_then(ip_or_cidr)
                                .ok_or_else(|| format!("{at}: {v} is not an address"))?,
                        );
                    }
                }
                Some(v) => return Err(format!("{at} is {v}")),
            }
        }
        let mut seen = Vec::new();
        requested.retain(|ip| {
            let new = !seen.contains(ip);
            seen.push(*ip);
            new
        });
        Ok(Self {
            network,
            data_dir: PathBuf::from(data_dir),
            sets,
            routes,
            resolv_conf,
            requested,
        })
    }

    fn store(&self) -> Result<Store, CniError> {
        Store::open(&self.data_dir, &self.network).map_err(|e| {
            err(format!(
                "{}: {e}",
                Path::new(&self.data_dir).join(&self.network).display()
            ))
        })
    }

    /// ADD: one address from every range set (a requested one where one
    /// falls in the set); on any failure what was reserved is released.
    pub fn add(&self, id: &str, ifname: &str) -> Result<IpamResult, CniError> {
        let dns = match &self.resolv_conf {
            Some(path) => resolv_conf(path)?,
            None => json!({}),
        };
        let store = self.store()?;
        let mut requested = self.requested.clone();
        let mut ips = Vec::new();
        let release_all = |n: usize| {
            for _ in 0..n {
                if let Ok(l) = store.lock() {
                    l.release_by_id(id, ifname);
                }
            }
        };
        for (idx, set) in self.sets.iter().enumerate() {
            let want = requested
                .iter()
                .position(|ip| set.contains(*ip))
                .map(|i| requested.remove(i));
            match get(&store, set, idx, id, ifname, want) {
                Ok(ip) => ips.push(ip),
                Err(e) => {
                    release_all(ips.len());
                    return Err(err(format!("failed to allocate for range {idx}: {e}")));
                }
            }
        }
        if !requested.is_empty() {
            release_all(ips.len());
            let left: Vec<String> = requested.iter().map(IpAddr::to_string).collect();
            return Err(err(format!(
                "failed to allocate all requested IPs: {}",
                left.join(" ")
            )));
        }
        Ok(IpamResult {
            ips,
            routes: self.routes.clone(),
            dns: Some(dns),
        })
    }

    /// DEL: releases what `id`/`ifname` holds; nothing held is no error.
    pub fn del(&self, id: &str, ifname: &str) -> Result<(), CniError> {
        let store = self.store()?;
        // Once per range set, as host-local does (the second pass also
        // clears leases an older host-local wrote with the ID alone).
        for _ in &self.sets {
            let l = store.lock().map_err(|e| err(format!("lock: {e}")))?;
            l.release_by_id(id, ifname);
        }
        Ok(())
    }

    /// CHECK: `id`/`ifname` holds an address here.
    pub fn check(&self, id: &str, ifname: &str) -> Result<(), CniError> {
        let store = self.store()?;
        let l = store.lock().map_err(|e| err(format!("lock: {e}")))?;
        if l.has_id(id, ifname) {
            Ok(())
        } else {
            Err(err(format!(
                "host-local: Failed to find address added by container {id}"
            )))
        }
    }
}

/// One address from `set` (index `idx`) for `id`/`ifname`, under the lock:
/// `want` if given, else the next free one in host-local's order.
fn get(
    store: &Store,
    set: &RangeSet,
    idx: usize,
    id: &str,
    ifname: &str,
    want: Option<IpAddr>,
) -> Result<IpConfig, String> {
    let l = store.lock().map_err(|e| format!("lock: {e}"))?;
    let io = |e: std::io::Error| e.to_string();
    let conf = |ip: IpAddr, r: &range::Range| IpConfig {
        address: format!("{ip}/{}", r.prefix),
        gateway: Some(r.gateway.to_string()),
        interface: None,
    };
    if let Some(ip) = want {
        let r = set
            .range_for(ip)
            .ok_or_else(|| format!("{ip} not in range set {}", set.name()))?;
        if ip == r.gateway {
            return Err(format!("requested ip {ip} is subnet's gateway"));
        }
        if !l.reserve(id, ifname, ip, idx).map_err(io)? {
            return Err(format!(
                "requested IP address {ip} is not available in range set {}",
                set.name()
            ));
        }
        return Ok(conf(ip, r));
    }
    if let Some(ip) = l
        .get_by_id(id, ifname)
        .into_iter()
        .find(|ip| set.contains(*ip))
    {
        return Err(format!(
            "{ip} has been allocated to {id}, duplicate allocation is not allowed"
        ));
    }
    let last = l.last_reserved(idx);
    for (ip, r) in set.candidates(last) {
        if l.reserve(id, ifname, ip, idx).map_err(io)? {
            return Ok(conf(ip, r));
        }
    }
    Err(format!(
        "no IP addresses available in range set: {}",
        set.name()
    ))
}

/// Refuses keys Go's case-insensitive decoder would take for one of
/// `known` though spelt otherwise (unknown keys are ignored, as by host-local).
fn same_case(obj: &Map<String, Value>, known: &[&str]) -> Result<(), String> {
    for k in obj.keys() {
        if let Some(want) = known.iter().find(|w| w.eq_ignore_ascii_case(k))
            && *want != k
        {
            return Err(format!("key {k:?} (host-local reads it as {want:?})"));
        }
    }
    Ok(())
}

/// An address as host-local's decoder takes it: null or "" is none; an
/// IPv4-mapped IPv6 address (Go makes it IPv4) is left to the binary.
fn addr(v: Option<&Value>, what: &str) -> Result<Option<IpAddr>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => plain(s)
            .map(Some)
            .ok_or_else(|| format!("{what} {s:?} is not an address")),
        Some(v) => Err(format!("{what} is {v}")),
    }
}

fn plain(s: &str) -> Option<IpAddr> {
    match s.parse().ok()? {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => None,
        ip => Some(ip),
    }
}

/// `ADDR/PREFIX` as Go's `ParseCIDR` takes it.
fn cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, p) = s.split_once('/')?;
    let ip = plain(ip)?;
    if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let p: u8 = p.parse().ok()?;
    (p <= if ip.is_ipv4() { 32 } else { 128 }).then_some((ip, p))
}

/// A requested address: `ADDR` or `ADDR/PREFIX` (the prefix is dropped).
fn ip_or_cidr(s: &str) -> Option<IpAddr> {
    if s.contains('/') {
        cidr(s).map(|(ip, _)| ip)
    } else {
        plain(s)
    }
}

fn range_spec(obj: &Map<String, Value>) -> Result<RangeSpec, String> {
    let subnet = match obj.get("subnet") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(cidr(s).ok_or_else(|| format!("subnet {s:?} is not ADDR/PREFIX"))?)
        }
        Some(v) => return Err(format!("subnet is {v}")),
    };
    Ok(RangeSpec {
        subnet,
        start: addr(obj.get("rangeStart"), "rangeStart")?,
        end: addr(obj.get("rangeEnd"), "rangeEnd")?,
        gateway: addr(obj.get("gateway"), "gateway")?,
    })
}

/// `[[{range}, ...], ...]`.
fn range_sets(v: &Value) -> Result<Vec<Vec<RangeSpec>>, String> {
    let sets = v.as_array().ok_or_else(|| format!("ranges are {v}"))?;
    sets.iter()
        .map(|set| {
            set.as_array()
                .ok_or_else(|| format!("a range set is {set}"))?
                .iter()
                .map(|r| {
                    let obj = r.as_object().ok_or_else(|| format!("a range is {r}"))?;
                    same_case(obj, &RANGE_KEYS)?;
                    let spec = range_spec(obj)?;
                    // Go decodes a missing subnet as no address, which
                    // host-local then refuses.
                    spec.subnet.ok_or("a range without a subnet")?;
                    Ok(spec)
                })
                .collect()
        })
        .collect()
}

/// A route as host-local prints it back: `dst` as given (address not
/// masked), `gw` if any.
fn route(v: &Value) -> Result<Route, String> {
    let obj = v.as_object().ok_or_else(|| format!("a route is {v}"))?;
    same_case(obj, &["dst", "gw"])?;
    let dst = match obj.get("dst") {
        Some(Value::String(s)) => cidr(s).ok_or_else(|| format!("route dst {s:?}"))?,
        other => return Err(format!("route dst is {other:?}")),
    };
    Ok(Route {
        dst: format!("{}/{}", dst.0, dst.1),
        gw: addr(obj.get("gw"), "route gw")?.map(|g| g.to_string()),
    })
}

/// `CNI_ARGS` as host-local's `LoadArgs` reads them: `IP=` is the one key
/// it knows; others need `IgnoreUnknown` true (else host-local fails, and
/// so does this, by leaving it to the binary).
fn env_ips(env: &Env) -> Result<Vec<IpAddr>, String> {
    let Some(args) = env.args.as_deref().filter(|a| !a.is_empty()) else {
        return Ok(Vec::new());
    };
    let mut ip = None;
    let mut ignore = false;
    let mut unknown = false;
    for pair in args.split(';') {
        let kv: Vec<&str> = pair.split('=').collect();
        let [k, v] = kv[..] else {
            return Err(format!("CNI_ARGS pair {pair:?}"));
        };
        match k {
            "IP" => {
                ip = Some(ip_or_cidr(v).ok_or_else(|| format!("CNI_ARGS IP={v}"))?);
            }
            "IgnoreUnknown" => {
                ignore = match v {
                    "1" | "true" | "True" => true,
                    "0" | "false" | "False" => false,
                    _ => return Err(format!("CNI_ARGS IgnoreUnknown={v}")),
                }
            }
            _ => unknown = true,
        }
    }
    if unknown && !ignore {
        return Err("CNI_ARGS has keys host-local does not know, without IgnoreUnknown".into());
    }
    Ok(ip.into_iter().collect())
}

/// host-local's `resolvConf`: nameserver, domain, search and options lines.
fn resolv_conf(path: &Path) -> Result<Value, CniError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| err(format!("open {}: {e}", path.display())))?;
    let (mut ns, mut domain) = (Vec::<&str>::new(), None);
    let (mut search, mut options) = (Vec::<&str>::new(), Vec::<&str>::new());
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 2 {
            continue;
        }
        match f[0] {
            "nameserver" => ns.push(f[1]),
            "domain" => domain = Some(f[1]),
            "search" => search.extend(&f[1..]),
            "options" => options.extend(&f[1..]),
            _ => {}
        }
    }
    let mut out = Map::new();
    if !ns.is_empty() {
        out.insert("nameservers".into(), json!(ns));
    }
    if let Some(d) = domain {
        out.insert("domain".into(), json!(d));
    }
    if !search.is_empty() {
        out.insert("search".into(), json!(search));
    }
    if !options.is_empty() {
        out.insert("options".into(), json!(options));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(ipam: Value, args: Option<&str>) -> Result<Config, String> {
        let raw = json!({"cniVersion": "1.0.0", "name": "n", "type": "attach-cni", "ipam": ipam,
                         "runtimeConfig": {"ips": ["10.0.0.9/24"]}});
        let env = Env {
            args: args.map(str::to_owned),
            ..Env::default()
        };
        Config::load(&raw, &env)
    }

    #[test]
    fn reads_host_locals_forms() {
        let c = load(
            json!({"type": "host-local", "subnet": "10.0.0.0/24",
                   "ranges": [[{"subnet": "fd00::/64"}]], "routes": [{"dst": "0.0.0.0/0"}]}),
            Some("IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.0.0.7"),
        )
        .unwrap();
        // The legacy range comes first, `ranges` after it.
        assert_eq!(c.sets.len(), 2);
        assert_eq!(c.sets[0].name(), "10.0.0.1-10.0.0.254");
        assert_eq!(c.data_dir, Path::new(DEFAULT_DATA_DIR));
        assert_eq!(c.routes[0].dst, "0.0.0.0/0");
        let want: Vec<IpAddr> = vec!["10.0.0.7".parse().unwrap(), "10.0.0.9".parse().unwrap()];
        assert_eq!(c.requested, want);
    }

    #[test]
    fn leaves_what_it_does_not_read_exactly_to_the_binary() {
        let ranges = json!([[{"subnet": "10.0.0.0/24"}]]);
        for (ipam, args) in [
            // Go's decoder takes another case; unknown CNI_ARGS without IgnoreUnknown.
            (json!({"Ranges": ranges}), None),
            (
                json!({"ranges": [[{"subnet": "10.0.0.0/24", "RangeEnd": "10.0.0.9"}]]}),
                None,
            ),
            (json!({"ranges": ranges}), Some("K8S_POD_NAME=p")),
            (json!({"ranges": ranges}), Some("IP=10.0.0.1,10.0.0.2")),
            // Invalid: host-local gives its own error.
            (json!({"ranges": [[{"subnet": "10.0.0.1/24"}]]}), None),
            (
                json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/25"}]]}),
                None,
            ),
            (json!({"subnet": "::ffff:10.0.0.0/120"}), None),
            (json!({}), None),
        ] {
            assert!(load(ipam.clone(), args).is_err(), "{ipam} {args:?}");
        }
    }
}
