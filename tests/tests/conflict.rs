//! Address conflict detection: an address another host on the wire answers
//! for is refused (exit 4, naming the address and the MAC that answered)
//! before anything is made; a free one attaches; --no-probe skips the check.

use attach_tests::{
    lab::{EXT_IF, EXT_V4, EXT_V6, Lab, NODE_IF, require_root},
    refusal::text,
    snapshot::snapshot,
};

fn ext_mac(lab: &Lab) -> String {
    let line = lab
        .ext()
        .ok(&["ip", "-br", "link", "show", EXT_IF])
        .unwrap();
    line.split_whitespace().nth(2).unwrap().to_owned()
}

/// `attach add KIND --parent NODE_IF --netns C --ip IP [extra]`.
fn add(lab: &Lab, kind: &str, netns: &str, ip: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "add", kind, "--parent", NODE_IF, "--netns", netns, "--ip", ip,
    ];
    args.extend_from_slice(extra);
    lab.attach().run(&args).unwrap()
}

#[test]
fn an_address_of_another_host_is_refused_before_anything_is_made() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = lab.container("c1").unwrap();
    let empty = snapshot(&lab, &[&c]);
    let mac = ext_mac(&lab);
    for (kind, ip, addr) in [
        ("macvlan", format!("{EXT_V4}/24"), EXT_V4),
        ("macvlan", format!("{EXT_V6}/64"), EXT_V6),
        ("ipvlan", format!("{EXT_V4}/24"), EXT_V4),
    ] {
        let out = add(&lab, kind, c.name(), &ip, &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{kind} {ip}: {err}");
        assert!(
            err.contains(&format!("address {addr} is in use")) && err.contains(&mac),
            "{kind} {ip}: {err}"
        );
        assert_eq!(snapshot(&lab, &[&c]), empty, "{kind} {ip} left something");
    }
}

#[test]
fn a_free_address_attaches_and_no_probe_skips_the_check() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = lab.container("c1").unwrap();
    let empty = snapshot(&lab, &[&c]);
    let out = add(&lab, "macvlan", c.name(), "10.77.0.61/24", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
    // Skipped on request: the duplicate is the user's to own.
    let out = add(
        &lab,
        "macvlan",
        c.name(),
        &format!("{EXT_V4}/24"),
        &["--no-probe"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
    assert_eq!(snapshot(&lab, &[&c]), empty);
}
