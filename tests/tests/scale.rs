//! A parent with more eBPF endpoints than a flood row once held (256):
//! broadcasts reach endpoints far apart in the row, from the wire and from
//! an endpoint, and keep reaching the rest after endpoints in the middle of
//! the row leave (each leaving one's place taken by the row's last).

use std::sync::Arc;

use attach_tests::lab::{EXT_IF, Lab, NODE_IF, Netns, broadcast_reaches, require_root};

/// More than 256, few enough to run in about a minute.
const N: usize = 300;

fn add(lab: &Lab, c: &Netns, ip: Option<&str>) {
    let mut argv = vec![
        "add",
        "macvlan",
        "--parent",
        NODE_IF,
        "--netns",
        c.name(),
        "--no-probe",
    ];
    if let Some(ip) = ip {
        argv.extend(["--ip", ip]);
    }
    lab.attach().ok(&argv).unwrap();
}

/// Checks that a broadcast from the wire and one from `cs[0]` reach each
/// container of `cs` at `idx`.
fn broadcasts_reach(lab: &Lab, cs: &[Arc<Netns>], idx: &[usize]) {
    for &i in idx {
        let to = &cs[i];
        assert!(
            broadcast_reaches(lab.ext(), EXT_IF, to, "eth0"),
            "a broadcast from the wire did not reach c{}",
            i + 1
        );
        assert!(
            broadcast_reaches(&cs[0], "eth0", to, "eth0"),
            "a broadcast from c1 did not reach c{}",
            i + 1
        );
    }
}

#[test]
fn a_parent_floods_to_300_ebpf_endpoints_also_after_deletes_from_the_middle() {
    require_root();
    let lab = Lab::new().unwrap();
    let cs = lab.containers(N).unwrap();
    let (v4, _) = Lab::container_ip(1);
    add(&lab, &cs[0], Some(&v4));
    for c in &cs[1..] {
        add(&lab, c, None);
    }
    let list = lab.attach().json(&["list"]).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(N), "{list}");
    // The row's second, middle, 257th and last places.
    broadcasts_reach(&lab, &cs, &[1, N / 2, 256, N - 1]);

    // Out of the middle: each place is taken by the row's last endpoint,
    // c300 first.
    let gone: Vec<usize> = (100..110).collect();
    for &i in &gone {
        lab.attach().ok(&["del", "--netns", cs[i].name()]).unwrap();
    }
    let list = lab.attach().json(&["list"]).unwrap();
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(N - gone.len()),
        "{list}"
    );
    // The moved ones (the last ten), one beside the holes, and the rest.
    broadcasts_reach(&lab, &cs, &[N - 1, N - 10, 99, 110, 1, 256]);
    for &i in &gone[..2] {
        assert!(
            !cs[i].ok(&["ip", "-o", "link"]).unwrap().contains("eth0"),
            "c{} still has its interface",
            i + 1
        );
    }
    lab.attach().ok(&["check", "--all"]).unwrap();
}
