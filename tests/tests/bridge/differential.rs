//! The eBPF switch against the Linux bridge: one matrix of ports, built on
//! each backend in a lab of its own, every row probed on both, and the two
//! backends' observations compared with each other, row by row. What the
//! kernel's bridge does is the reference; no row's answer is written here.

use attach_tests::{
    lab::require_root,
    reach::{attach_bridge, measure},
};

use super::*;

/// A second bridge (switch) of the node, with no wire.
const OTHER: &str = "brt2";

/// A plain port carrying the wire (the native bridge's NIC, or the switch's
/// uplink), two isolated ports, and a port of a second bridge (switch) with
/// no wire; the rows: each port to and from the external host and the node
/// (v4, v6, ARP, broadcast), and each port to each other (v4, v6, ARP, ND,
/// broadcast).
#[test]
fn the_ebpf_switch_reaches_what_the_linux_bridge_reaches() {
    require_root();
    let mut seen = Vec::new();
    for backend in BACKENDS {
        let lab = Lab::new().unwrap();
        node_bridge(&lab, backend, false);
        let up = wire(&lab, backend);
        let c1 = port(&lab, 1, backend, &up);
        let c2 = port(&lab, 2, backend, &["--isolated"]);
        let c3 = port(&lab, 3, backend, &["--isolated"]);
        if backend == "native" {
            lab.node()
                .ok(&[
                    "ip",
                    "link",
                    "add",
                    OTHER,
                    "type",
                    "bridge",
                    "stp_state",
                    "0",
                ])
                .unwrap();
            lab.node().ok(&["ip", "link", "set", OTHER, "up"]).unwrap();
        }
        let spoofchk: &[&str] = if backend == "native" {
            &["--spoofchk", "on"]
        } else {
            &[]
        };
        let c4 = attach_bridge(&lab, 4, OTHER, backend, spoofchk).unwrap();
        let m = measure(&lab, &[&c1, &c2, &c3, &c4]);
        eprintln!("{backend}:\n{m}");
        seen.push(m);
    }
    let (native, ebpf) = (&seen[0], &seen[1]);
    assert_eq!(BACKENDS, ["native", "ebpf"]);
    // The reference says something: rows on both sides of the isolation.
    let rows = native.rows();
    assert!(
        rows.iter().any(|r| r.reachable) && rows.iter().any(|r| !r.reachable),
        "the Linux bridge's matrix is all one answer:\n{native}"
    );
    assert_eq!(
        ebpf.rows().len(),
        rows.len(),
        "the backends were probed on different rows"
    );
    let diff = ebpf.diff(native);
    assert!(
        diff.is_empty(),
        "the eBPF switch (got) differs from the Linux bridge (want):\n{diff}\n\
         Linux bridge:\n{native}\neBPF switch:\n{ebpf}"
    );
}
