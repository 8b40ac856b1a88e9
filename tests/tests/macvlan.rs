//! Differential tests: each macvlan mode is attached with the kernel's own
//! macvlan, then with our eBPF datapath (tc, then xdp), in the same lab; the
//! reachability matrices must be equal. A few rows are also checked against
//! the kernel rules directly, so two equally broken backends cannot pass.

use attach_tests::{
    lab::{Lab, LabOptions, Matrix, Proto, require_root},
    reach::{Flavor, attach, detach, measure},
};

/// Attaches containers 1..=n in `mode` with each flavor in turn and returns
/// the matrices, native first.
fn matrices(lab: &Lab, mode: &str, n: u8, extra: &[&str]) -> Vec<(Flavor, Matrix)> {
    Flavor::ALL
        .iter()
        .map(|&flavor| {
            let eps: Vec<_> = (1..=n)
                .map(|i| attach(lab, i, mode, flavor, extra).unwrap())
                .collect();
            let m = measure(lab, &eps.iter().collect::<Vec<_>>());
            for ep in &eps {
                detach(lab, ep).unwrap();
            }
            eprintln!("{mode} on {}:\n{m}", flavor.name());
            (flavor, m)
        })
        .collect()
}

/// Every eBPF matrix equals the native one.
fn assert_same_as_native(all: &[(Flavor, Matrix)]) -> &Matrix {
    let (_, native) = &all[0];
    for (flavor, m) in &all[1..] {
        let diff = m.diff(native);
        assert!(
            diff.is_empty(),
            "{} differs from native macvlan:\n{diff}\nnative:\n{native}\n{}:\n{m}",
            flavor.name(),
            flavor.name()
        );
    }
    native
}

fn expect(m: &Matrix, from: &str, to: &str, proto: Proto, want: bool) {
    assert_eq!(
        m.get(from, to, proto),
        Some(want),
        "{from} -> {to} {proto}: want {}\n{m}",
        if want { "reachable" } else { "unreachable" }
    );
}

#[test]
fn bridge_matches_native() {
    require_root();
    let lab = Lab::new().unwrap();
    let all = matrices(&lab, "bridge", 2, &[]);
    let m = assert_same_as_native(&all);
    for p in [Proto::V4, Proto::V6, Proto::Arp, Proto::Ndisc, Proto::Bcast] {
        expect(m, "c1", "c2", p, true);
    }
    expect(m, "c1", "ext", Proto::V4, true);
    expect(m, "ext", "c2", Proto::V6, true);
    expect(m, "ext", "c1", Proto::Bcast, true);
}

#[test]
fn vepa_matches_native_with_a_reflecting_switch() {
    require_root();
    let lab = Lab::new().unwrap();
    let all = matrices(&lab, "vepa", 2, &[]);
    let m = assert_same_as_native(&all);
    // The hairpin switch sends c1's frames back: VEPA peers meet through it.
    expect(m, "c1", "c2", Proto::V4, true);
    expect(m, "c1", "c2", Proto::Bcast, true);
    expect(m, "c1", "ext", Proto::V6, true);
}

#[test]
fn private_matches_native() {
    require_root();
    let lab = Lab::new().unwrap();
    let all = matrices(&lab, "private", 2, &[]);
    let m = assert_same_as_native(&all);
    // Reflected broadcasts go back to their sender only: no ARP between peers.
    expect(m, "c1", "c2", Proto::Arp, false);
    expect(m, "c1", "c2", Proto::V4, false);
    expect(m, "c1", "c2", Proto::Bcast, false);
    expect(m, "c1", "ext", Proto::V4, true);
    expect(m, "ext", "c2", Proto::Bcast, true);
}

#[test]
fn passthru_matches_native() {
    require_root();
    let lab = Lab::new().unwrap();
    let all = matrices(&lab, "passthru", 1, &[]);
    let m = assert_same_as_native(&all);
    expect(m, "c1", "ext", Proto::V4, true);
    expect(m, "ext", "c1", Proto::V6, true);
}

#[test]
fn vepa_and_bridge_without_reflection_match_native() {
    require_root();
    let lab = Lab::with_options(LabOptions { hairpin: false }).unwrap();
    let vepa = matrices(&lab, "vepa", 2, &[]);
    let m = assert_same_as_native(&vepa);
    expect(m, "c1", "c2", Proto::V4, false);
    expect(m, "c1", "c2", Proto::Bcast, false);
    // The most common complaint about macvlan: the node cannot reach it.
    expect(m, "node", "c1", Proto::V4, false);
    expect(m, "c1", "node", Proto::V6, false);

    let bridge = matrices(&lab, "bridge", 2, &[]);
    let m = assert_same_as_native(&bridge);
    expect(m, "c1", "c2", Proto::V4, true);
    expect(m, "node", "c2", Proto::V4, false);
}

/// `--host-access` is the one intended difference from native macvlan.
#[test]
fn host_access_lets_the_node_reach_its_endpoints() {
    require_root();
    let lab = Lab::with_options(LabOptions { hairpin: false }).unwrap();
    for flavor in [Flavor::EbpfTc, Flavor::EbpfXdp] {
        for mode in ["bridge", "vepa", "private"] {
            let c1 = attach(&lab, 1, mode, flavor, &["--host-access"]).unwrap();
            let m = measure(&lab, &[&c1]);
            detach(&lab, &c1).unwrap();
            for p in [Proto::V4, Proto::V6] {
                expect(&m, "node", "c1", p, true);
                expect(&m, "c1", "node", p, true);
                expect(&m, "c1", "ext", p, true);
                expect(&m, "ext", "c1", p, true);
            }
        }
    }
}

/// Modes are per endpoint: the kernel mixes them on one port, and so do we.
#[test]
fn mixed_modes_on_one_parent_match_native() {
    require_root();
    let lab = Lab::new().unwrap();
    let modes = ["bridge", "vepa", "private"];
    let mut results = Vec::new();
    for flavor in Flavor::ALL {
        let eps: Vec<_> = modes
            .iter()
            .enumerate()
            .map(|(i, mode)| attach(&lab, i as u8 + 1, mode, flavor, &[]).unwrap())
            .collect();
        let m = measure(&lab, &eps.iter().collect::<Vec<_>>());
        for ep in &eps {
            detach(&lab, ep).unwrap();
        }
        eprintln!("mixed on {}:\n{m}", flavor.name());
        results.push((flavor, m));
    }
    let m = assert_same_as_native(&results);
    // bridge -> vepa leaves by the wire and comes back; vepa's reflected
    // broadcast reaches bridge and vepa ports only; private's, no one.
    expect(m, "c1", "c2", Proto::V4, true);
    expect(m, "c2", "c1", Proto::Arp, true);
    expect(m, "c2", "c3", Proto::Arp, false);
    expect(m, "c3", "c1", Proto::Arp, false);
}
