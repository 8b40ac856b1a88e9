//! What only the kernel matrix can test (`cargo xtask vm-test`, Debian's
//! 5.10, 6.1 and 6.12 kernels): our ipvlan against the kernel's own ipvlan
//! driver, which the development kernel lacks. Every mode and flag is
//! attached with the driver (`--backend native`), then with our eBPF
//! ipvlan, in the same lab; the reachability matrices must be equal but for
//! the deviations docs/datapath.md lists, each named below.
//!
//! Not run by a plain `cargo test` (`test = false` in Cargo.toml): without
//! the driver it could only fail.

use attach_tests::{
    lab::{Lab, Matrix, Proto, require_root},
    reach::{Endpoint, attach_ipvlan, detach, measure},
};

/// Attaches c1, c2 in `mode` with `flag` and `backend`, measures, detaches.
fn matrix(lab: &Lab, mode: &str, flag: &str, backend: &str) -> Matrix {
    let extra = ["--backend", backend];
    let eps: Vec<Endpoint> = (1..=2)
        .map(|i| {
            attach_ipvlan(lab, i, mode, flag, &extra)
                .unwrap_or_else(|e| panic!("ipvlan {mode} {flag} {backend}: {e:#}"))
        })
        .collect();
    let m = measure(lab, &eps.iter().collect::<Vec<_>>());
    for ep in &eps {
        detach(lab, ep).unwrap();
    }
    eprintln!("ipvlan {mode} {flag} ({backend}):\n{m}");
    m
}

/// Whether a row on which ours and the driver differ is a documented
/// deviation: "the node answers ARP/ND for l3/l3s endpoints" (the kernel
/// needs an upstream route to the node instead). So, in l3 and l3s only,
/// the external host reaches an endpoint, and a ping from the endpoint to
/// the external host gets its answer, where with the driver neither does.
fn deviation(mode: &str, from: &str, to: &str, proto: Proto, ours: bool) -> bool {
    let answered_for = mode != "l2" && ours && matches!(proto, Proto::V4 | Proto::V6);
    answered_for && (from == "ext" || to == "ext")
}

fn compare(mode: &str, flag: &str) {
    require_root();
    let lab = Lab::new().unwrap();
    let kernel = matrix(&lab, mode, flag, "native");
    let ours = matrix(&lab, mode, flag, "ebpf");
    let mut unexplained = Vec::new();
    for row in kernel.rows() {
        let got = ours.get(&row.from, &row.to, row.proto);
        if got == Some(row.reachable) {
            continue;
        }
        let documented = got.is_some_and(|g| deviation(mode, &row.from, &row.to, row.proto, g));
        if !documented {
            unexplained.push(format!(
                "{} -> {} {}: driver {}, ours {}",
                row.from,
                row.to,
                row.proto,
                row.reachable,
                got.map_or("not measured".to_owned(), |g| g.to_string())
            ));
        }
    }
    assert_eq!(
        kernel.rows().len(),
        ours.rows().len(),
        "both measured the same rows"
    );
    assert!(
        unexplained.is_empty(),
        "ipvlan {mode} {flag}: ours differs from the kernel's driver beyond the documented \
         deviations:\n{}\ndriver:\n{kernel}\nours:\n{ours}",
        unexplained.join("\n")
    );
}

#[test]
fn l2_bridge_matches_the_driver() {
    compare("l2", "bridge");
}

#[test]
fn l2_private_matches_the_driver() {
    compare("l2", "private");
}

#[test]
fn l2_vepa_matches_the_driver() {
    compare("l2", "vepa");
}

#[test]
fn l3_bridge_matches_the_driver() {
    compare("l3", "bridge");
}

#[test]
fn l3_private_matches_the_driver() {
    compare("l3", "private");
}

#[test]
fn l3s_bridge_matches_the_driver() {
    compare("l3s", "bridge");
}

/// The driver really is the kernel's: the container's interface is an
/// ipvlan device of the recorded mode.
#[test]
fn the_native_backend_is_the_kernels_ipvlan() {
    require_root();
    let lab = Lab::new().unwrap();
    let ep = attach_ipvlan(&lab, 1, "l3", "private", &["--backend", "native"]).unwrap();
    let details = ep.ns.ok(&["ip", "-d", "link", "show", "eth0"]).unwrap();
    assert!(
        details.contains("ipvlan") && details.contains("mode l3") && details.contains("private"),
        "eth0 is not a kernel ipvlan l3 private:\n{details}"
    );
    detach(&lab, &ep).unwrap();
    let left = ep.ns.ok(&["ip", "-o", "link", "show"]).unwrap();
    assert!(
        !left.contains("eth0"),
        "del leaves no ipvlan behind:\n{left}"
    );
}
