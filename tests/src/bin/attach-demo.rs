//! The demo: builds a lab of network namespaces (an external host on a
//! switch, a node with a parent NIC, containers), attaches containers in every
//! macvlan mode with the kernel's macvlan and with our eBPF datapath (tc and
//! xdp), and shows who reaches whom; then the host, container and sriov
//! kinds in action. Everything is removed at the end.

use std::time::Instant;

use anyhow::{Context as _, Result};
use attach_tests::{
    cgroup::Cgroup,
    kinds::{STANDIN, listen_in, ping_from, standin, wait_link_gone},
    lab::{
        EXT_V4, EXT_V6, Lab, LabOptions, Matrix, NETNS_PREFIX, NODE_IF, Netns, Proto, ping,
        require_root,
    },
    reach::{Flavor, attach, attach_ipvlan, detach, mac_of, measure},
};

const USAGE: &str = "usage: attach-demo [--mode bridge|vepa|private|passthru]...

Builds a lab of network namespaces, attaches containers in each macvlan mode
with native macvlan and with attach's eBPF datapath (tc and xdp), and prints
the reachability of each, then shows --host-access, ipvlan in l2, l3 and
l3s, and the host, container and sriov kinds (--no-kinds skips those three).
Needs root; cleans up.";

fn main() -> Result<()> {
    let mut modes: Vec<String> = Vec::new();
    let mut kinds = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mode" => modes.push(args.next().unwrap_or_default()),
            "--no-kinds" => kinds = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if modes.is_empty() {
        modes = ["bridge", "vepa", "private", "passthru"]
            .map(String::from)
            .to_vec();
    }
    require_root();
    let started = Instant::now();
    println!(
        "Lab: ext (10.77.0.1) -- switch (hairpin: reflects frames) -- node eth1 (10.77.0.254)"
    );
    println!("     containers c1, c2 (10.77.0.11, .12) attached to eth1\n");
    let lab = Lab::new()?;
    let mut all_same = true;
    for mode in &modes {
        let n = if mode == "passthru" { 1 } else { 2 };
        let mut results: Vec<(Flavor, Matrix)> = Vec::new();
        for flavor in Flavor::ALL {
            eprintln!("  ... {mode} on {}", flavor.name());
            let eps: Vec<_> = (1..=n)
                .map(|i| attach(&lab, i, mode, flavor, &[]))
                .collect::<Result<_>>()?;
            if flavor == Flavor::EbpfXdp && mode == "bridge" {
                println!("`attach list` in the node, eBPF/xdp bridge endpoints:");
                println!("{}\n", lab.attach().ok(&["list"])?);
            }
            results.push((flavor, measure(&lab, &eps.iter().collect::<Vec<_>>())));
            for ep in &eps {
                detach(&lab, ep)?;
            }
        }
        all_same &= report(mode, &results);
    }
    host_access()?;
    ipvlan(&lab)?;
    if kinds {
        other_kinds()?;
    }
    println!(
        "\n{} in {:.0?}: every eBPF matrix {} native macvlan's.",
        if all_same { "Done" } else { "FAILED" },
        started.elapsed(),
        if all_same { "equals" } else { "does NOT equal" }
    );
    if !all_same {
        std::process::exit(1);
    }
    Ok(())
}

/// Prints the native matrix and how each eBPF flavor compares to it.
fn report(mode: &str, results: &[(Flavor, Matrix)]) -> bool {
    let (_, native) = &results[0];
    let mut same = true;
    let verdicts: Vec<String> = results[1..]
        .iter()
        .map(|(f, m)| {
            let diff = m.diff(native);
            same &= diff.is_empty();
            if diff.is_empty() {
                format!("{} identical", f.name())
            } else {
                format!("{} DIFFERS:\n{diff}", f.name())
            }
        })
        .collect();
    println!(
        "== {mode} mode: native macvlan vs eBPF — {}",
        verdicts.join(", ")
    );
    println!("   {}", explain(mode));
    println!("{native}");
    same
}

fn explain(mode: &str) -> &'static str {
    match mode {
        "bridge" => {
            "endpoints meet locally; the node is reached only because the switch reflects frames"
        }
        "vepa" => {
            "everything leaves by the wire; endpoints meet because the switch reflects frames"
        }
        "private" => {
            "reflected broadcasts return to their sender only: no ARP, so no traffic, between c1 and c2"
        }
        "passthru" => "one endpoint takes the parent's MAC and all its unicast",
        _ => "",
    }
}

/// ipvlan (eBPF only: no native driver to compare with) in l2, l3 and l3s.
fn ipvlan(lab: &Lab) -> Result<()> {
    for (mode, why) in [
        (
            "l2",
            "endpoints share the parent's MAC and meet by IP; ARP and broadcasts work among them",
        ),
        (
            "l3",
            "NOARP endpoints; the node routes for them and answers ARP/ND from the wire for them",
        ),
        (
            "l3s",
            "as l3, through the node's netfilter; the node itself still cannot reach them",
        ),
    ] {
        eprintln!("  ... ipvlan {mode}");
        let c1 = attach_ipvlan(lab, 1, mode, "bridge", &[])?;
        let c2 = attach_ipvlan(lab, 2, mode, "bridge", &[])?;
        let m = measure(lab, &[&c1, &c2]);
        detach(lab, &c1)?;
        detach(lab, &c2)?;
        println!("\n== ipvlan {mode} (bridge flag), eBPF");
        println!("   {why}");
        println!("{m}");
    }
    Ok(())
}

/// Native macvlan cannot reach the node; `--host-access` can.
fn host_access() -> Result<()> {
    println!("== --host-access (switch without hairpin: nothing reflects frames)");
    let lab = Lab::with_options(LabOptions { hairpin: false })?;
    let cases: [(&str, Flavor, &[&str]); 3] = [
        ("native macvlan", Flavor::Native, &[]),
        ("eBPF", Flavor::EbpfTc, &[]),
        ("eBPF --host-access", Flavor::EbpfTc, &["--host-access"]),
    ];
    println!(
        "{:<20} {:<12} {:<12} {:<12}",
        "bridge endpoint", "node->c1 v4", "c1->node v6", "c1->ext v4"
    );
    for (name, flavor, extra) in cases {
        let c1 = attach(&lab, 1, "bridge", flavor, extra)?;
        let m = measure(&lab, &[&c1]);
        detach(&lab, &c1)?;
        let yes = |from, to, p| {
            if m.get(from, to, p) == Some(true) {
                "yes"
            } else {
                "no"
            }
        };
        println!(
            "{:<20} {:<12} {:<12} {:<12}",
            name,
            yes("node", "c1", Proto::V4),
            yes("c1", "node", Proto::V6),
            yes("c1", "ext", Proto::V4)
        );
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

/// The kinds that are not macvlan: host, container, sriov.
fn other_kinds() -> Result<()> {
    let lab = Lab::new()?;
    println!("\n== host: the container shares the node's namespace");
    host(&lab)?;
    println!("\n== container: b joins a's namespace, held by the engine");
    container(&lab)?;
    println!(
        "\n== sriov: a device of the node moves into the container (veth stand-in: no SR-IOV here)"
    );
    sriov(&lab)?;
    Ok(())
}

fn host(lab: &Lab) -> Result<()> {
    let cg = Cgroup::new(lab.tag(), "web")?;
    let cgroup = cg.path().display().to_string();
    let node = lab.node().name().to_owned();
    // A service of the node already has tcp/18080.
    let _busy = listen_in(lab.node(), 18080, 15353)?;
    println!("$ attach add host --netns <node> --cgroup {cgroup} --ports tcp/18080,tcp/19090");
    let out = lab.attach().run(&[
        "add",
        "host",
        "--netns",
        &node,
        "--cgroup",
        &cgroup,
        "--ports",
        "tcp/18080,tcp/19090",
    ])?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stderr));
    let v4 = cg.run(
        lab.node(),
        &["ping", "-4", "-c", "3", "-i", "0.2", "-W", "1", EXT_V4],
    );
    let v6 = cg.run(
        lab.node(),
        &["ping", "-6", "-c", "3", "-i", "0.2", "-W", "1", EXT_V6],
    );
    let stats = lab.attach().json(&["stats"])?;
    let c = &stats["attachments"][0]["counters"];
    println!(
        "a process of its cgroup pings ext: v4 {}, v6 {}; attach stats counts {} packets out, {} in ({} bytes out)",
        yes(v4),
        yes(v6),
        c["tx_packets"],
        c["rx_packets"],
        c["tx_bytes"]
    );
    lab.attach().ok(&["del", "--netns", &node])?;
    Ok(())
}

fn container(lab: &Lab) -> Result<()> {
    let a = Netns::named(&format!("{NETNS_PREFIX}-{}-a", lab.tag()))?;
    let a_name = a.name().to_owned();
    let (v4, v6) = Lab::container_ip(1);
    let rec = lab.attach().json(&[
        "add",
        "macvlan",
        "--parent",
        NODE_IF,
        "--netns",
        &a_name,
        "--ip",
        &v4,
        "--ip",
        &v6,
        "--mac",
        &mac_of(1),
    ])?;
    let veth = rec["host_ifname"]
        .as_str()
        .context("host_ifname")?
        .to_owned();
    let b_name = format!("{NETNS_PREFIX}-{}-b", lab.tag());
    let b = std::path::PathBuf::from(format!("/run/netns/{b_name}"));
    println!("$ attach add container --netns b --join a   (a has an eBPF macvlan endpoint)");
    lab.attach()
        .ok(&["add", "container", "--netns", &b_name, "--join", &a_name])?;
    println!(
        "b -> ext through a's eth0: v4 {}, v6 {}",
        yes(ping_from(&b, EXT_V4)),
        yes(ping_from(&b, EXT_V6))
    );
    drop(a);
    println!(
        "a exits (its namespace file is deleted); b -> ext still: v4 {}, v6 {}",
        yes(ping_from(&b, EXT_V4)),
        yes(ping_from(&b, EXT_V6))
    );
    lab.attach().ok(&["del", "--netns", &b_name])?;
    println!(
        "b detaches, the last user: the namespace is freed (a's veth {veth} leaves the node): {}",
        yes(wait_link_gone(lab, &veth))
    );
    lab.attach().ok(&["del", "--netns", &a_name])?;
    Ok(())
}

fn sriov(lab: &Lab) -> Result<()> {
    standin(lab)?;
    let c1 = lab.container("c1")?;
    let (v4, v6) = Lab::container_ip(21);
    println!("$ attach add sriov --device {STANDIN} --netns c1 --ip {v4} --ip {v6} --mtu 1400");
    lab.attach().ok(&[
        "add",
        "sriov",
        "--device",
        STANDIN,
        "--netns",
        c1.name(),
        "--ip",
        &v4,
        "--ip",
        &v6,
        "--mtu",
        "1400",
    ])?;
    println!(
        "c1 -> ext through it: v4 {}, v6 {}; the node still has {STANDIN}: {}",
        yes(ping(&c1, EXT_V4)),
        yes(ping(&c1, EXT_V6)),
        if lab
            .node()
            .exec(&["ip", "link", "show", STANDIN])?
            .status
            .success()
        {
            "yes"
        } else {
            "no"
        }
    );
    lab.attach().ok(&["del", "--netns", c1.name()])?;
    let back = lab.node().ok(&["ip", "-o", "link", "show", STANDIN])?;
    println!(
        "detached: {STANDIN} is back in the node with MTU 1500: {}",
        yes(back.contains("mtu 1500"))
    );
    let c2 = lab.container("c2")?;
    let refused = lab.attach().run(&[
        "add",
        "sriov",
        "--device",
        STANDIN,
        "--netns",
        c2.name(),
        "--vlan",
        "100",
    ])?;
    println!(
        "$ attach add sriov --device {STANDIN} --netns c2 --vlan 100\n{} (exit {})",
        String::from_utf8_lossy(&refused.stderr).trim(),
        refused.status.code().unwrap_or(-1)
    );
    Ok(())
}
