//! Kubernetes packaging, checked without a cluster (none runs here): the
//! manifests of contrib/k8s read as the API server would read their shape,
//! every NetworkAttachmentDefinition's configuration read by the plugin's
//! own reading, the plugin's install step, and pod identity from CNI_ARGS
//! recorded and listed as a runtime under Multus would leave it.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use attach_tests::{
    cni::{Call, plugin},
    lab::{Attach, Lab, require_root},
};
use serde::Deserialize as _;
use serde_json::{Value, json};

/// The image `cargo xtask image` builds.
const IMAGE: &str = concat!("localhost/attach:", env!("CARGO_PKG_VERSION"));

/// The kinds attach-cni attaches (a NetworkAttachmentDefinition for each).
const KINDS: [&str; 6] = ["macvlan", "ipvlan", "bridge", "router", "nested", "sriov"];

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/k8s")
}

/// Every YAML document of every manifest, as JSON values, with its file.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(k8s_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", k8s_dir().display());
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            if !v.is_null() {
                docs.push((name.clone(), v));
            }
        }
    }
    docs
}

fn of_kind(kind: &str) -> Vec<Value> {
    documents()
        .into_iter()
        .filter(|(_, d)| d["kind"] == kind)
        .map(|(_, d)| d)
        .collect()
}

#[test]
fn every_manifest_is_an_object_of_a_known_kind_without_rbac() {
    let docs = documents();
    for (file, d) in &docs {
        for key in ["apiVersion", "kind"] {
            assert!(d[key].is_string(), "{file}: no {key}: {d}");
        }
        assert!(d["metadata"]["name"].is_string(), "{file}: no name: {d}");
        let kind = d["kind"].as_str().unwrap();
        let want = match kind {
            "DaemonSet" => "apps/v1",
            "NetworkAttachmentDefinition" => "k8s.cni.cncf.io/v1",
            "Pod" => "v1",
            // The agent talks to no API server: no RBAC, no ServiceAccount.
            other => panic!("{file}: unexpected kind {other}"),
        };
        assert_eq!(d["apiVersion"], want, "{file}: {kind}");
    }
}

#[test]
fn the_daemonset_installs_the_plugin_and_runs_the_agent() {
    let sets = of_kind("DaemonSet");
    assert_eq!(sets.len(), 1);
    let ds = &sets[0];
    let spec = &ds["spec"];
    let pod = &spec["template"]["spec"];
    // The selector picks the template's pods.
    let selector = spec["selector"]["matchLabels"].as_object().unwrap();
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(&spec["template"]["metadata"]["labels"][k], v, "label {k}");
    }
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(pod.get("serviceAccountName").is_none());

    let volumes: BTreeSet<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let host_paths: BTreeSet<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    for p in [
        "/sys/fs/bpf",
        "/run/attach",
        "/run/netns",
        "/var/lib/cni",
        "/opt/cni/bin",
        "/etc/cni/net.d",
    ] {
        assert!(host_paths.contains(p), "no hostPath {p}: {host_paths:?}");
    }
    let containers = |key: &str| pod[key].as_array().cloned().unwrap_or_default();
    let all: Vec<Value> = [containers("initContainers"), containers("containers")].concat();
    for c in &all {
        let name = c["name"].as_str().unwrap();
        assert_eq!(c["image"], IMAGE, "{name}: not the image xtask builds");
        for m in c["volumeMounts"].as_array().unwrap() {
            let v = m["name"].as_str().unwrap();
            assert!(volumes.contains(v), "{name}: mount of no volume {v}");
        }
    }

    // The init container installs the plugin with the plugin itself.
    let init = containers("initContainers");
    assert_eq!(init.len(), 1);
    assert_eq!(init[0]["command"], json!(["/usr/bin/attach-cni"]));
    assert_eq!(init[0]["args"][0], "--install");
    let bin_dir = init[0]["args"][1].as_str().unwrap();
    let mounted = |c: &Value, path: &str| {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == path)
    };
    assert!(mounted(&init[0], bin_dir), "{bin_dir} is not mounted");

    // The agent: `attach agent`, privileged, probed on its HTTP port.
    let main = containers("containers");
    assert_eq!(main.len(), 1);
    let agent = &main[0];
    assert_eq!(agent["command"], json!(["/usr/bin/attach"]));
    let args: Vec<&str> = agent["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "agent");
    let addr = args
        .windows(2)
        .find(|w| w[0] == "--metrics-addr")
        .map(|w| w[1])
        .expect("--metrics-addr");
    let port: u64 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let probe = &agent["livenessProbe"]["httpGet"];
    assert_eq!(probe["path"], "/healthz");
    assert_eq!(probe["port"], port);
    assert_eq!(agent["securityContext"]["privileged"], true);
    for path in ["/sys/fs/bpf", "/run/attach", "/run/netns", "/var/run/netns"] {
        assert!(mounted(agent, path), "agent: {path} not mounted");
    }
    // `attach agent` takes these arguments (as a container would run it,
    // with the address's variable filled in).
    let bin = Attach::bin().unwrap();
    let mut help = Command::new(&bin);
    help.arg("agent");
    for a in &args[1..] {
        help.arg(a.replace("$(NODE_IP)", "127.0.0.1"));
    }
    // --help after the arguments: clap checks them all, runs nothing.
    let out = help.arg("--help").output().unwrap();
    assert!(
        out.status.success(),
        "attach {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every kind has a NetworkAttachmentDefinition whose configuration is
/// one attach-cni takes: JSON, of a version the plugin supports, read by the
/// plugin's own reading of an ADD.
#[test]
fn every_network_attachment_is_a_configuration_attach_cni_takes() {
    let out = Command::new(plugin().unwrap())
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .output()
        .unwrap();
    assert!(out.status.success());
    let version: Value = serde_json::from_slice(&out.stdout).unwrap();
    let supported = version["supportedVersions"].as_array().unwrap();

    let mut kinds = BTreeSet::new();
    for nad in of_kind("NetworkAttachmentDefinition") {
        let name = nad["metadata"]["name"].as_str().unwrap();
        let text = nad["spec"]["config"].as_str().expect("config string");
        let conf: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
        assert_eq!(conf["type"], "attach-cni", "{name}");
        assert_eq!(conf["name"], name, "{name}");
        // podman 4.3 and other CNI 1.0 runtimes refuse newer versions.
        assert_eq!(conf["cniVersion"], "1.0.0", "{name}");
        assert!(supported.contains(&conf["cniVersion"]), "{name}");
        if let Err(e) = attach::cni::validate(text) {
            panic!("{name}: attach-cni refuses it: {} {}", e.code, e.msg);
        }
        kinds.insert(conf["kind"].as_str().unwrap().to_owned());
    }
    let want: BTreeSet<String> = KINDS.iter().map(|k| (*k).to_owned()).collect();
    assert_eq!(kinds, want);

    // The reading is the plugin's: what ADD refuses, it refuses.
    let bad = json!({"cniVersion": "1.0.0", "name": "n", "type": "attach-cni",
                     "kind": "macvlan", "parent": "eth1", "colour": "red"});
    let e = attach::cni::validate(&bad.to_string()).unwrap_err();
    assert_eq!(e.code, 2, "{}", e.msg);
    let e = attach::cni::validate(r#"{"name":"n","type":"attach-cni"}"#).unwrap_err();
    assert_eq!(e.code, 7, "{}", e.msg);
}

/// A pod's annotation names a NetworkAttachmentDefinition that exists.
#[test]
fn the_example_pod_asks_for_a_defined_network() {
    let nads: BTreeSet<String> = of_kind("NetworkAttachmentDefinition")
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    for pod in of_kind("Pod") {
        let nets = pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]
            .as_str()
            .unwrap();
        for net in nets.split(',') {
            assert!(nads.contains(net.trim()), "no network {net}");
        }
    }
}

/// What the DaemonSet's init container runs: the plugin copies itself.
#[test]
fn the_plugin_installs_itself() {
    let dir = std::env::temp_dir().join(format!("attach-k8s-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let plugin = plugin().unwrap();
    let out = Command::new(&plugin)
        .args(["--install".as_ref(), dir.join("bin").as_os_str()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = dir.join("bin/attach-cni");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&plugin).unwrap()
    );
    // The installed copy is a working plugin.
    let out = Command::new(&installed)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .output()
        .unwrap();
    assert!(out.status.success());
    // Arguments a runtime never passes are refused, not taken as a call.
    let out = Command::new(&plugin).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let left = std::fs::read_dir(dir.join("bin")).unwrap().count();
    assert_eq!(left, 1, "temporary files left beside the plugin");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn conf(net: &str) -> String {
    json!({
        "cniVersion": "1.0.0",
        "name": net,
        "type": "attach-cni",
        "kind": "macvlan",
        "mode": "bridge",
        "parent": "eth1",
        "backend": "ebpf",
        "datapath": "tc",
    })
    .to_string()
}

fn call<'a>(
    lab: &'a Lab,
    command: &'a str,
    id: &'a str,
    c: &'a attach_tests::lab::Netns,
) -> Call<'a> {
    Call {
        node: lab.node(),
        command,
        container_id: id,
        netns: Some(c.path()),
        ifname: "net1",
        env_extra: Vec::new(),
    }
}

/// Multus passes the pod in CNI_ARGS: it is recorded with the attachment,
/// shown by `attach list`, and is no part of its identity (a DEL without
/// it still finds the attachment); a value that is no Kubernetes name is
/// left out, not recorded.
#[test]
fn the_pod_from_cni_args_is_recorded_and_listed() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = lab.container("c1").unwrap();
    let c2 = lab.container("c2").unwrap();
    let cfg = conf("k8s1");
    let mut add = call(&lab, "ADD", "pod1", &c1);
    add.env_extra.push((
        "CNI_ARGS",
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;\
         K8S_POD_INFRA_CONTAINER_ID=pod1;K8S_POD_UID=0a1b;IP=10.77.0.50/24",
    ));
    let r = add.run(&cfg).unwrap();
    assert!(r.ok, "{} {}", r.stdout, r.stderr);
    let mut add = call(&lab, "ADD", "pod2", &c2);
    add.env_extra.push((
        "CNI_ARGS",
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=Shop_1;K8S_POD_NAME=web-1;IP=10.77.0.51/24",
    ));
    let r = add.run(&cfg).unwrap();
    assert!(r.ok, "{} {}", r.stdout, r.stderr);

    let list = lab.attach().json(&["list"]).unwrap();
    let rec = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["cni"]["container_id"] == id)
            .unwrap_or_else(|| panic!("no record of {id}: {list}"))
            .clone()
    };
    let one = rec("pod1");
    assert_eq!(
        one["cni"],
        json!({"network": "k8s1", "container_id": "pod1",
               "pod_namespace": "shop", "pod_name": "web-0"}),
        "{one}"
    );
    // Not a Kubernetes name: only the valid half is kept, and no pod shown.
    let two = rec("pod2");
    assert!(two["cni"].get("pod_namespace").is_none(), "{two}");
    assert_eq!(two["cni"]["pod_name"], "web-1", "{two}");
    let table = lab.attach().ok(&["list"]).unwrap();
    let header = table.lines().next().unwrap();
    assert!(header.trim_end().ends_with("POD"), "{table}");
    let row = |ns: &str| {
        table
            .lines()
            .find(|l| l.contains(ns))
            .unwrap_or_else(|| panic!("no row of {ns}: {table}"))
            .to_owned()
    };
    assert!(
        row(&c1.path().display().to_string()).ends_with("shop/web-0"),
        "{table}"
    );
    assert!(
        row(&c2.path().display().to_string()).ends_with(" -"),
        "{table}"
    );

    // DEL as a runtime may send it, without the pod's arguments.
    for (id, c) in [("pod1", &c1), ("pod2", &c2)] {
        let r = call(&lab, "DEL", id, c).run(&cfg).unwrap();
        assert!(r.ok, "{} {}", r.stdout, r.stderr);
    }
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
    // With no pod left, no POD column.
    let table = lab.attach().ok(&["list"]).unwrap();
    assert!(!table.contains("POD"), "{table}");
}

/// Through the node's agent (as the DaemonSet runs it): a pod's series are
/// labelled by its namespace and name, not its sandbox's path, and
/// `/healthz`, the DaemonSet's liveness probe, answers.
#[test]
fn the_agents_metrics_label_a_pod_by_name() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = lab.container("c1").unwrap();
    let log = std::env::temp_dir().join(format!("attach-k8s-agent-{}.log", lab.tag()));
    let bin = Attach::bin().unwrap();
    let socket = format!(
        "/run/attach/{}.sock",
        lab.node_pin_dir().file_name().unwrap().to_string_lossy()
    );
    let _agent = Stopped(
        lab.node()
            .command(&[
                bin.to_str().unwrap(),
                "agent",
                "--metrics-addr",
                "127.0.0.1:9469",
                "--reconcile-interval",
                "0",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        socket.clone(),
    );
    let curl = |path: &str| {
        lab.node()
            .ok(&["curl", "-sf", &format!("http://127.0.0.1:9469{path}")])
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() || curl("/healthz").is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let cfg = conf("k8s2");
    let mut add = call(&lab, "ADD", "pod3", &c1);
    add.env_extra.push((
        "CNI_ARGS",
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;IP=10.77.0.52/24",
    ));
    let r = add.run(&cfg).unwrap();
    let served = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(r.ok, "{} {}\nagent: {served}", r.stdout, r.stderr);
    let metrics = curl("/metrics").unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("attach_rx_packets_total{"))
        .unwrap_or_else(|| panic!("no endpoint series: {metrics}"));
    assert!(
        line.starts_with(
            "attach_rx_packets_total{endpoint=\"shop/web-0/net1\",netns=\"\",\
             pod_namespace=\"shop\",pod_name=\"web-0\",ifname=\"net1\",kind=\"macvlan\""
        ),
        "{line}"
    );
    let sandbox = c1.path().display().to_string();
    assert!(
        !metrics.contains(&sandbox),
        "a sandbox path in a label: {metrics}"
    );
    assert!(curl("/healthz").is_ok());

    let r = call(&lab, "DEL", "pod3", &c1).run(&cfg).unwrap();
    assert!(r.ok, "{} {}", r.stdout, r.stderr);
    let metrics = curl("/metrics").unwrap();
    assert!(
        !metrics.contains("web-0"),
        "series of a deleted pod: {metrics}"
    );
    let _ = std::fs::remove_file(&log);
}

/// A child of the test's, killed (by its pid) when the test ends, passed or
/// not.
/// An agent, killed by its PID when dropped, and its socket (which a
/// killed agent cannot remove) with it.
struct Stopped(std::process::Child, String);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_file(&self.1);
    }
}
