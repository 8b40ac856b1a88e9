//! The demo: builds a lab of network namespaces (an external host on a
//! switch, a node with a parent NIC, containers), attaches containers in every
//! macvlan mode with the kernel's macvlan and with our eBPF datapath (tc and
//! xdp), and shows who reaches whom; then ipvlan, and bridge ports on a Linux
//! bridge and on our eBPF switch. Everything is removed at the end.

use std::time::Instant;

use anyhow::Result;
use attach_tests::{
    lab::{Lab, LabOptions, Matrix, Proto, require_root},
    reach::{Flavor, attach, attach_bridge, attach_ipvlan, detach, measure},
};

const USAGE: &str = "usage: attach-demo [--mode bridge|vepa|private|passthru]...

Builds a lab of network namespaces, attaches containers in each macvlan mode
with native macvlan and with attach's eBPF datapath (tc and xdp), and prints
the reachability of each, then shows --host-access, ipvlan in l2, l3 and
l3s, and bridge ports (a Linux bridge, our eBPF switch). Needs root; cleans up.";

fn main() -> Result<()> {
    let mut modes: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mode" => modes.push(args.next().unwrap_or_default()),
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
    bridge()?;
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

/// bridge: ports of a Linux bridge whose other port is the node's second
/// NIC, and of our eBPF switch with that NIC as its uplink; then what the
/// ports' options promise, on the switch.
fn bridge() -> Result<()> {
    for backend in ["native", "ebpf"] {
        eprintln!("  ... bridge {backend}");
        let lab = Lab::new()?;
        lab.add_nic("eth2")?;
        let extra: &[&str] = if backend == "native" {
            lab.node().ok(&[
                "ip",
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "stp_state",
                "0",
            ])?;
            lab.node()
                .ok(&["ip", "link", "set", "eth2", "master", "br0"])?;
            lab.node().ok(&["ip", "link", "set", "br0", "up"])?;
            &["--spoofchk", "on"]
        } else {
            &["--uplink", "eth2"]
        };
        let c1 = attach_bridge(&lab, 1, "br0", backend, extra)?;
        let c2 = attach_bridge(&lab, 2, "br0", backend, &[])?;
        let m = measure(&lab, &[&c1, &c2]);
        println!(
            "\n== bridge, {backend}: {}",
            if backend == "native" {
                "ports of Linux bridge br0 of the node, whose other port is its NIC eth2"
            } else {
                "ports of our eBPF switch br0, uplink eth2 (the node reaches them over the wire, from eth1)"
            }
        );
        println!("{m}");
        if backend == "ebpf" {
            let c3 = attach_bridge(&lab, 3, "br0", backend, &["--vlan", "10"])?;
            let c4 = attach_bridge(&lab, 4, "br0", backend, &["--vlan", "10"])?;
            let c5 = attach_bridge(&lab, 5, "br0", backend, &["--isolated"])?;
            let c6 = attach_bridge(&lab, 6, "br0", backend, &["--isolated"])?;
            let yes = |b: bool| if b { "yes" } else { "no" };
            println!("   c3, c4 in VLAN 10; c5, c6 isolated:");
            for (a, b, why) in [
                (&c3, &c4, "same VLAN"),
                (&c3, &c1, "VLAN 10 -> untagged"),
                (&c5, &c6, "isolated -> isolated"),
                (&c5, &c1, "isolated -> non-isolated"),
            ] {
                println!(
                    "   {} -> {} v4: {:<3} ({why})",
                    a.label,
                    b.label,
                    yes(attach_tests::lab::ping(&a.ns, &b.v4))
                );
            }
            for c in [&c3, &c4, &c5, &c6] {
                detach(&lab, c)?;
            }
        }
        detach(&lab, &c1)?;
        detach(&lab, &c2)?;
    }
    Ok(())
}
