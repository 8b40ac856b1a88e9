//! The CNI result of an attachment: its interfaces (the container's, and
//! the host side of its veth where the kind has one), addresses, routes and
//! DNS, in the configuration's version.

use serde_json::{Value, json};

use super::types::{IpamResult, NetConf, pre_1_0};
use crate::model::Attachment;

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

/// The host side of an attachment's veth, as the result lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSide {
    pub name: String,
    pub mac: String,
}

/// The CNI result for an attachment, in the configuration's version.
///
/// `interfaces[0]` is the container's (every IP's `interface` points at
/// it); the host side of its veth, where there is one, follows without a
/// `sandbox` (the spec's mark of an interface on the host), which is how
/// chained plugins (`bandwidth`, `portmap`, `firewall`) find it.
pub fn result(
    conf: &NetConf,
    rec: &Attachment,
    ipam: &IpamResult,
    host: Option<&HostSide>,
) -> Value {
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
    if let Some(h) = host {
        let mut iface = json!({"name": h.name, "mac": h.mac});
        if !old {
            iface["mtu"] = json!(rec.mtu);
        }
        if let Some(ifaces) = out["interfaces"].as_array_mut() {
            ifaces.push(iface);
        }
    }
    if old {
        // "mtu" on interfaces arrived in 1.0.0.
        out["interfaces"][0]
            .as_object_mut()
            .map(|o| o.remove("mtu"));
    }
    if let Some(dns) = merge_dns(conf.dns.as_ref(), ipam.dns.as_ref()) {
        out["dns"] = dns;
    }
    // A DHCP lease's servers and search list, where neither the
    // configuration nor IPAM gave them.
    if let Some(lease) = &rec.dhcp
        && !lease.dns.is_empty()
        && out["dns"]["nameservers"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    {
        if !out["dns"].is_object() {
            out["dns"] = json!({});
        }
        let dns = &mut out["dns"];
        dns["nameservers"] = json!(lease.dns);
        if let Some(domain) = lease.search.first() {
            if dns.get("domain").is_none() {
                dns["domain"] = json!(domain);
            }
            if dns["search"].as_array().is_none_or(|a| a.is_empty()) {
                dns["search"] = json!(lease.search);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::Attachment;

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
        let r = result(&c, &rec, &IpamResult::default(), None);
        assert_eq!(r["interfaces"].as_array().unwrap().len(), 1);
        assert_eq!(r["ips"][0]["version"], "4");
        assert_eq!(r["ips"][1]["version"], "6");
        assert_eq!(r["ips"][0]["gateway"], "10.10.0.1");
        assert!(r["ips"][1].get("gateway").is_none());
        assert_eq!(r["routes"][0]["dst"], "0.0.0.0/0");
        assert!(r["interfaces"][0].get("mtu").is_none());
    }

    #[test]
    fn the_host_side_follows_the_container_without_a_sandbox() {
        let c: NetConf = serde_json::from_str(
            r#"{"cniVersion":"1.0.0","name":"n","type":"attach-cni","parent":"eth1"}"#,
        )
        .unwrap();
        let rec: Attachment = serde_json::from_value(json!({
            "netns": "x", "netns_path": "/run/netns/x", "netns_inode": 1, "ifname": "eth0",
            "kind": "macvlan", "mode": "bridge", "backend": "ebpf", "datapath": "tc",
            "parent": "eth1", "parent_ifindex": 2, "mac": "02:00:00:00:00:01",
            "ips": ["10.10.0.5/24"], "gateway": null, "mtu": 1500,
            "host_ifname": "atk0000000001", "host_ifindex": 9, "ifindex": 3,
            "host_access": false, "spoofchk": true, "endpoint_id": 0, "xdp_mode": null,
            "saved_parent": null, "created": 0
        }))
        .unwrap();
        let host = HostSide {
            name: "atk0000000001".into(),
            mac: "02:00:00:00:00:02".into(),
        };
        let r = result(&c, &rec, &IpamResult::default(), Some(&host));
        let ifaces = r["interfaces"].as_array().unwrap();
        assert_eq!(ifaces.len(), 2);
        assert_eq!(ifaces[0]["sandbox"], "/run/netns/x");
        assert_eq!(
            ifaces[1],
            json!({"name": "atk0000000001", "mac": "02:00:00:00:00:02", "mtu": 1500})
        );
        assert_eq!(r["ips"][0]["interface"], 0);
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
