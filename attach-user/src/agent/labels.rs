//! The labels of the per-endpoint metrics series. Every value is bounded:
//! one set per attachment alive on the node (a detached endpoint's series
//! are gone at the next scrape), each value from a small set or a checked
//! name:
//!
//! - `endpoint`: `POD_NAMESPACE/POD_NAME/IFNAME` for a Kubernetes pod (from
//!   the CNI plugin's CNI_ARGS), else `NETNS/IFNAME`;
//! - `netns`: the namespace as given to `attach add` (a name or a path);
//!   empty for a pod, whose runtime names a new sandbox at every restart
//!   (`/var/run/netns/cni-<uuid>`): the pod's labels stay the same instead;
//! - `pod_namespace`, `pod_name`: the pod's, empty when not a pod; both are
//!   Kubernetes names (at most 253 of `a-z0-9.-`, checked when recorded);
//! - `ifname`, `kind`, `mode`, `parent`: the interface in the container, the
//!   kind and mode names, the node's device it hangs off.

use crate::model::Attachment;

/// The labels of `r`'s series, in order, unescaped.
pub fn endpoint(r: &Attachment) -> [(&'static str, String); 8] {
    let cni = r.cni.as_ref();
    let pod_namespace = cni.and_then(|c| c.pod_namespace.clone());
    let pod_name = cni.and_then(|c| c.pod_name.clone());
    let pod = cni.and_then(|c| c.pod());
    let (endpoint, netns) = match pod {
        Some(p) => (format!("{p}/{}", r.ifname), String::new()),
        None => (format!("{}/{}", r.netns, r.ifname), r.netns.clone()),
    };
    [
        ("endpoint", endpoint),
        ("netns", netns),
        ("pod_namespace", pod_namespace.unwrap_or_default()),
        ("pod_name", pod_name.unwrap_or_default()),
        ("ifname", r.ifname.clone()),
        ("kind", r.kind.name().to_owned()),
        ("mode", r.mode_name().to_owned()),
        ("parent", r.parent.clone()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CniRef, Kind};

    fn rec(pod: Option<(&str, &str)>) -> Attachment {
        let mut r = Attachment::new(Kind::Macvlan, "net1");
        r.netns = "/var/run/netns/cni-1234".into();
        r.parent = "eth1".into();
        r.cni = Some(CniRef {
            network: "n1".into(),
            container_id: "abc".into(),
            pod_namespace: pod.map(|p| p.0.to_owned()),
            pod_name: pod.map(|p| p.1.to_owned()),
        });
        r
    }

    fn get(labels: &[(&'static str, String)], k: &str) -> String {
        labels.iter().find(|(n, _)| *n == k).unwrap().1.clone()
    }

    #[test]
    fn a_pod_is_named_by_its_namespace_and_name_not_its_sandbox() {
        let l = endpoint(&rec(Some(("shop", "web-0"))));
        assert_eq!(get(&l, "endpoint"), "shop/web-0/net1");
        assert_eq!(get(&l, "netns"), "");
        assert_eq!(get(&l, "pod_namespace"), "shop");
        assert_eq!(get(&l, "pod_name"), "web-0");
        assert_eq!(get(&l, "kind"), "macvlan");
        assert_eq!(get(&l, "parent"), "eth1");
        // A restarted pod (a new sandbox) keeps its series.
        let mut again = rec(Some(("shop", "web-0")));
        again.netns = "/var/run/netns/cni-5678".into();
        assert_eq!(endpoint(&again), l);
    }

    #[test]
    fn without_a_pod_the_namespace_names_it() {
        let l = endpoint(&rec(None));
        assert_eq!(get(&l, "endpoint"), "/var/run/netns/cni-1234/net1");
        assert_eq!(get(&l, "netns"), "/var/run/netns/cni-1234");
        assert_eq!(get(&l, "pod_namespace"), "");
        assert_eq!(get(&l, "pod_name"), "");
    }
}
