//! The demo: builds a lab of network namespaces (an external host on a
//! switch, a node with a parent NIC, containers), attaches containers in every
//! macvlan mode with the kernel's macvlan and with our eBPF datapath (tc and
//! xdp), and shows who reaches whom; then ipvlan, bridge ports (a Linux
//! bridge and our eBPF switch), router (routed endpoints, eBPF and kernel
//! forwarding), nested (containers in VMs on VLANs, two engines), and the
//! host, container and sriov kinds. Everything is removed at the end.

mod check;
mod dhcp;
mod other_kinds;
mod sections;

use std::time::Instant;

use anyhow::Result;
use check::MISMATCHES;
use other_kinds::other_kinds;
use sections::{bridge, host_access, ipvlan, nested, router};

use attach_tests::{
    lab::{Lab, Matrix, require_root},
    reach::{Flavor, attach, detach, measure},
};

const USAGE: &str = "usage: attach-demo [--mode bridge|vepa|private|passthru]...
                   [--only macvlan|host-access|ipvlan|bridge|router|nested|host|container|sriov|dhcp]...

Builds a lab of network namespaces, attaches containers in each macvlan mode
with native macvlan and with attach's eBPF datapath (tc and xdp), and prints
the reachability of each, then shows --host-access, ipvlan in l2, l3 and
l3s, bridge ports (a Linux bridge, our eBPF switch), router endpoints (eBPF and
kernel forwarding), nested containers in VMs on VLANs, the host, container
and sriov kinds, and DHCP leases with conflict detection (--only: just those
sections). Needs root; cleans up.";

fn main() -> Result<()> {
    let mut modes: Vec<String> = Vec::new();
    let mut only: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mode" => modes.push(args.next().unwrap_or_default()),
            "--only" => only.push(args.next().unwrap_or_default()),
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
    let shows = |section: &str| only.is_empty() || only.iter().any(|o| o == section);
    if !shows("macvlan") {
        modes.clear();
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
    if shows("host-access") {
        host_access()?;
    }
    if shows("ipvlan") {
        ipvlan(&lab)?;
    }
    if shows("bridge") {
        bridge()?;
    }
    if shows("router") {
        router()?;
    }
    if shows("nested") {
        nested()?;
    }
    if ["host", "container", "sriov"].iter().any(|s| shows(s)) {
        other_kinds(&shows)?;
    }
    if shows("dhcp") {
        dhcp::dhcp()?;
    }
    let mismatches = std::mem::take(&mut *MISMATCHES.lock().unwrap());
    let ok = all_same && mismatches.is_empty();
    if !mismatches.is_empty() {
        println!("\nNot as shown:");
        for m in &mismatches {
            println!("  {m}");
        }
    }
    println!(
        "\n{} in {:.0?}: every eBPF matrix {} native macvlan's; {} other check(s) failed.",
        if ok { "Done" } else { "FAILED" },
        started.elapsed(),
        if all_same { "equals" } else { "does NOT equal" },
        mismatches.len()
    );
    if !ok {
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
