//! `attach features` tells the truth about the kernel it runs on: each
//! feature checked here another way (the kernel's version for helpers and
//! attach types, `ip link add` for drivers, /proc for sysctls), every
//! program of the build accepted by this kernel's verifier, and a kind the
//! kernel cannot do refused before anything is made. Runs on the
//! development kernel and in every guest of the kernel matrix.

use attach_tests::lab::{Lab, NODE_IF, Netns, require_root};
use serde_json::Value;

/// (major, minor) of the running kernel.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

/// Whether `ip link add` makes a link of `kind` in a scratch namespace.
fn driver_works(kind: &str) -> bool {
    let ns = Netns::new("feat").unwrap();
    let mut argv = vec!["ip", "link", "add"];
    match kind {
        "veth" => argv.extend(["v0", "type", "veth", "peer", "name", "v1"]),
        "bridge" => argv.extend(["b0", "type", "bridge"]),
        // Drivers with a lower device: a veth to stand on.
        _ => {
            ns.ok(&[
                "ip", "link", "add", "lo0", "type", "veth", "peer", "name", "lo1",
            ])
            .unwrap();
            argv.extend(["x0", "link", "lo0", "type", kind]);
        }
    }
    ns.exec(&argv).unwrap().status.success()
}

fn feature<'a>(report: &'a Value, what_starts: &str) -> &'a Value {
    report["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["what"].as_str().unwrap().starts_with(what_starts))
        .unwrap_or_else(|| panic!("no feature {what_starts:?} in {report:#}"))
}

fn capability<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no capability {name:?} in {report:#}"))
}

/// What the engine left at the root of the bpffs: its pins all live in
/// `/sys/fs/bpf/attach/`, so any `attach_*` pin or scratch directory there
/// is a leak.
fn bpffs_root_leftovers() -> Vec<String> {
    std::fs::read_dir("/sys/fs/bpf")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("attach_") || n.starts_with("attach-verify"))
        .collect()
}

#[test]
fn features_match_the_kernel_and_every_program_is_accepted() {
    require_root();
    let lab = Lab::new().unwrap();
    // Builds before the verifier's scratch pins left its maps' pins here.
    for name in bpffs_root_leftovers() {
        let _ = std::fs::remove_file(std::path::Path::new("/sys/fs/bpf").join(name));
    }
    let started = std::time::Instant::now();
    // The verifier's progress, program by program, straight to the console:
    // on an emulated older kernel this is where the time goes.
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", lab.node().path().display()))
        .arg("--")
        .arg(attach_tests::lab::Attach::bin().unwrap())
        .args(["-o", "json", "features"])
        .env("RUST_LOG", "attach::verifier=debug")
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    eprintln!("attach features took {:?}", started.elapsed());
    let leaked = bpffs_root_leftovers();
    assert!(leaked.is_empty(), "features left {leaked:?} in /sys/fs/bpf");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(report["kernel"], release.trim());

    let v = kernel_version();
    for (what, since) in [
        ("tcx", (6, 6)),
        ("SO_NETNS_COOKIE", (5, 14)),
        ("bpf_loop", (5, 17)),
        ("XDP redirect into a veth", (5, 13)),
    ] {
        assert_eq!(
            feature(&report, what)["present"],
            v >= since,
            "{what} on {v:?} (since {since:?})"
        );
    }
    let force = std::path::Path::new("/proc/sys/net/ipv6/conf/all/force_forwarding").exists();
    assert_eq!(feature(&report, "net.ipv6")["present"], force);
    for (what, kind) in [
        ("veth", "veth"),
        ("macvlan", "macvlan"),
        ("ipvlan", "ipvlan"),
        ("bridge", "bridge"),
    ] {
        assert_eq!(
            feature(&report, what)["present"],
            driver_works(kind),
            "{what} driver"
        );
    }
    let tcx = v >= (6, 6);
    assert_eq!(report["tc_hooks"], if tcx { "tcx" } else { "clsact" });

    // The build for this kernel passes its verifier, program by program.
    let programs = report["programs"].as_array().unwrap();
    for p in programs {
        eprintln!(
            "{}: {:.0} ms, {} instructions verified",
            p["program"], p["load_ms"], p["verified_instructions"]
        );
    }
    assert!(programs.len() >= 15, "{programs:?}");
    let refused: Vec<&Value> = programs
        .iter()
        .filter(|p| !p["refused"].is_null())
        .collect();
    assert!(refused.is_empty(), "refused here: {refused:#?}");

    // So every capability works, but the kernel ipvlan where the driver is
    // missing (the XDP datapath works before 5.13 too: its endpoints get an
    // XDP program of their own there).
    let ipvlan = driver_works("ipvlan");
    for c in report["capabilities"].as_array().unwrap() {
        let want = match c["name"].as_str().unwrap() {
            "ipvlan --backend native" => ipvlan,
            _ => true,
        };
        assert_eq!(c["available"], want, "{c}");
    }
    let native = capability(&report, "ipvlan --backend native");
    if !ipvlan {
        assert!(native["note"].as_str().unwrap().contains("CONFIG_IPVLAN"));
    }
    let text = lab.attach().ok(&["features"]).unwrap();
    assert!(
        text.contains(&format!(
            "this kernel's verifier accepts all {} of this build's",
            programs.len()
        )),
        "{text}"
    );
}

/// Without the kernel's ipvlan driver, `--backend native` is refused before
/// anything is made, naming the driver; with it, it works (the kernel
/// matrix's guests have it: see kernels.rs).
#[test]
fn a_kind_the_kernel_lacks_is_refused_before_anything_is_made() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = lab.container("c1").unwrap();
    let add = [
        "add",
        "ipvlan",
        "--backend",
        "native",
        "--parent",
        NODE_IF,
        "--netns",
        c.name(),
        "--ip",
        "10.77.0.11/24",
    ];
    if driver_works("ipvlan") {
        // Covered where it works: the ipvlan differential attaches with it.
        lab.attach().ok(&add).unwrap();
        lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
        return;
    }
    let before = lab.node().ok(&["ip", "-o", "link"]).unwrap();
    let out = lab.attach().run(&add).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("ipvlan driver (CONFIG_IPVLAN)") && err.contains("--backend ebpf"),
        "{err}"
    );
    assert_eq!(lab.node().ok(&["ip", "-o", "link"]).unwrap(), before);
    assert_eq!(c.ok(&["ip", "-o", "link"]).unwrap().lines().count(), 1);
    let list = lab.attach().json(&["list"]).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
}

/// A kernel without `bpf_loop` (before 5.17) gets the build whose flood walk
/// is unrolled, for at most 16 ports a row: the 17th eBPF endpoint of a
/// parent is refused before anything is made, naming the helper, the
/// kernel that lifts the limit and the backend without it. Here the engine
/// is told to load that build (on 5.10 it takes it anyway).
#[test]
fn past_the_compat_builds_flood_row_an_endpoint_is_refused_before_anything_is_made() {
    require_root();
    let lab = Lab::new().unwrap();
    let attach = lab.attach().with_env("ATTACH_EBPF_BUILD", "compat");
    let cs = lab.containers(17).unwrap();
    let add = |c: &Netns| {
        attach.run(&[
            "add",
            "macvlan",
            "--parent",
            NODE_IF,
            "--netns",
            c.name(),
            "--no-probe",
        ])
    };
    for c in &cs[..16] {
        let out = add(c).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let node_links = lab.node().ok(&["ip", "-o", "link"]).unwrap();
    let pins = std::fs::read_dir(lab.node_pin_dir()).unwrap().count();
    let out = add(&cs[16]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    for part in [
        "at most 16 eBPF endpoints",
        "bpf_loop",
        "5.17",
        "--backend native",
    ] {
        assert!(err.contains(part), "{part:?} not in: {err}");
    }
    assert_eq!(lab.node().ok(&["ip", "-o", "link"]).unwrap(), node_links);
    assert_eq!(std::fs::read_dir(lab.node_pin_dir()).unwrap().count(), pins);
    assert_eq!(cs[16].ok(&["ip", "-o", "link"]).unwrap().lines().count(), 1);
    let list = attach.json(&["list"]).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(16), "{list}");
    for c in &cs[..16] {
        attach.ok(&["del", "--netns", c.name()]).unwrap();
    }
}
