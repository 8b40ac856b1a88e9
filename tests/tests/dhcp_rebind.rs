//! DHCP past T2, against dnsmasq on the wire: with its server gone, a lease
//! is rebound (RFC 2131 4.4.5) to another server on the wire, by `attach
//! reconcile` and by the agent; a server refusing the rebinding (DHCPNAK)
//! ends the lease. Servers give T1 3 s and T2 6 s, so each test takes
//! seconds.

use std::{
    thread,
    time::{Duration, Instant},
};

use attach_tests::{
    dhcp::{Agent, add},
    dnsmasq::Dnsmasq,
    lab::{EXT_IF, Lab, Netns, ping, require_root},
    refusal::text,
};
use serde_json::{Value, json};

/// The options of a server whose leases are to be rebound soon: T1 3 s,
/// T2 6 s (the lease itself is dnsmasq's shortest, 2 min), its DNS server
/// `dns`, and authoritative (it acknowledges a rebinding REQUEST for an
/// address it has no lease of on file: the other server's).
fn rebinding_server(dns: &str) -> Vec<String> {
    vec![
        "--dhcp-option=option:router,10.77.0.1".into(),
        format!("--dhcp-option=option:dns-server,{dns}"),
        "--dhcp-option=option:T1,3".into(),
        "--dhcp-option=option:T2,6".into(),
        "--dhcp-authoritative".into(),
    ]
}

fn start_server(lab: &Lab, ns: &Netns, iface: &str, name: &str, dns: &str) -> Dnsmasq {
    start_leasing(lab, ns, iface, name, dns, "10.77.0.100,10.77.0.150")
}

fn start_leasing(
    lab: &Lab,
    ns: &Netns,
    iface: &str,
    name: &str,
    dns: &str,
    range: &str,
) -> Dnsmasq {
    let options = rebinding_server(dns);
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    Dnsmasq::start_on(lab, ns, iface, name, range, &options).unwrap()
}

/// The host of a second server: 10.77.0.2 on interface `dhcpb0` (a
/// macvlan of the ext host's wire0) in a namespace of its own.
fn second_server_host(lab: &Lab) -> std::sync::Arc<Netns> {
    let ns = lab.container("dhcpb").unwrap();
    let ext = |argv: &[&str]| lab.ext().ok(argv).unwrap();
    ext(&[
        "ip", "link", "add", "dhcpb0", "link", EXT_IF, "type", "macvlan", "mode", "bridge",
    ]);
    ext(&["ip", "link", "set", "dhcpb0", "netns", ns.name()]);
    ns.ok(&["ip", "addr", "add", "10.77.0.2/24", "dev", "dhcpb0"])
        .unwrap();
    ns.ok(&["ip", "link", "set", "dhcpb0", "up"]).unwrap();
    ns
}

/// Waits (20 s at most) for `c`'s lease to name `server` with a renewal
/// after `since`, running `step` between looks; checks all along that the
/// container keeps address `addr`. Returns the lease.
fn wait_rebound(
    lab: &Lab,
    c: &Netns,
    addr: &str,
    server: &str,
    since: u64,
    mut step: impl FnMut(),
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let shown = c.ok(&["ip", "-4", "-o", "addr", "show", "eth0"]).unwrap();
        assert!(shown.contains(&format!("{addr}/24")), "{shown}");
        let lease = lab.record(c)["dhcp"].clone();
        if lease["server"] == server && lease["renewed_at"].as_u64().unwrap() > since {
            return lease;
        }
        assert!(
            Instant::now() < deadline,
            "the lease was not rebound to {server} within 20 s: {lease}"
        );
        step();
    }
}

/// Past T2 with its server gone, a lease is rebound to any server on the
/// wire (RFC 2131 4.4.5): a REQUEST broadcast from the leased address, the
/// ACK of another (authoritative) dnsmasq taken, with its identifier, DNS
/// server and times; by `attach reconcile`, then by the agent back to the
/// first server. The container keeps its address throughout, and `del`
/// releases the lease to the server that has it last.
#[test]
fn past_t2_a_lease_is_rebound_to_another_server() {
    require_root();
    let lab = Lab::new().unwrap();
    // Server B: 10.77.0.2 on the same wire (a macvlan of the ext host's
    // wire0, in a namespace of its own).
    let b_ns = second_server_host(&lab);

    let a = start_server(&lab, lab.ext(), EXT_IF, "", "10.77.0.53");
    let c = lab.container("c1").unwrap();
    let (rec, _) = add(&lab, "macvlan", c.name());
    let addr = rec["dhcp"]["address"].as_str().unwrap().to_owned();
    let first = rec["dhcp"].clone();
    assert_eq!(first["server"], "10.77.0.1", "{rec}");
    assert_eq!(
        (&first["t1"], &first["t2"]),
        (&json!(3), &json!(6)),
        "{rec}"
    );
    let id = first["client_id"].as_str().unwrap().to_owned();
    // Server A goes; B, which has never heard of the lease, comes.
    drop(a);
    let b = start_server(&lab, &b_ns, "dhcpb0", "b", "10.77.0.54");

    // `attach reconcile`: renewals to A go unanswered, past T2 B rebinds.
    let mut said = String::new();
    let since = first["renewed_at"].as_u64().unwrap();
    let rebound = wait_rebound(&lab, &c, &addr, "10.77.0.2", since, || {
        said += &lab.attach().ok(&["reconcile"]).unwrap();
    });
    assert!(
        said.contains("rebound to 10.77.0.2 until 20")
            && said.contains(&format!("lease of {addr} from 10.77.0.1 not renewed by T2")),
        "{said}"
    );
    assert_eq!(rebound["address"], json!(addr), "{rebound}");
    assert_eq!(rebound["dns"], json!(["10.77.0.54"]), "{rebound}");
    assert_eq!(rebound["acquired_at"], first["acquired_at"], "{rebound}");
    let at = |l: &Value, k: &str| l[k].as_u64().unwrap();
    assert!(at(&rebound, "renewed_at") >= since + 6, "{rebound}");
    assert!(
        at(&rebound, "expires_at") > at(&first, "expires_at"),
        "{rebound}"
    );
    // B's MAC, as the container's neighbour table has it.
    let link = b_ns.ok(&["ip", "-o", "link", "show", "dhcpb0"]).unwrap();
    let b_mac = link
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap();
    assert_eq!(rebound["server_mac"], b_mac, "{rebound}");
    b.wait_for(
        || b.leases().contains(&format!(" {addr} ")) && b.leases().contains(&id),
        "B to record the rebound lease",
    );
    lab.attach().ok(&["check", "--netns", c.name()]).unwrap();
    let listed = lab.attach().ok(&["list"]).unwrap();
    assert!(
        listed.contains(&format!("lease of {addr} from 10.77.0.2, expires 20")),
        "{listed}"
    );
    assert!(ping(&c, "10.77.0.2"), "{addr} cannot reach B");

    // The agent does the same: B goes, A comes back (its lease file gone).
    drop(b);
    let a = start_server(&lab, lab.ext(), EXT_IF, "a2", "10.77.0.53");
    let _agent = Agent::start(&lab);
    let since = at(&rebound, "renewed_at");
    let back = wait_rebound(&lab, &c, &addr, "10.77.0.1", since, || {
        thread::sleep(Duration::from_millis(300));
    });
    assert_eq!(back["dns"], json!(["10.77.0.53"]), "{back}");
    assert!(
        at(&back, "expires_at") > at(&rebound, "expires_at"),
        "{back}"
    );
    lab.attach().ok(&["check", "--netns", c.name()]).unwrap();

    // del releases the lease to the server that has it now.
    a.wait_for(|| a.leases().contains(&id), "A to record the rebound lease");
    let out = lab.attach().run(&["del", "--netns", c.name()]).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    a.wait_for(|| !a.leases().contains(&id), "the release to A");
}

/// A server that answers the rebinding with a DHCPNAK (authoritative, the
/// address outside what it leases) ends the lease: the record says so,
/// `check` names it as expired with the server's reason, later passes
/// leave it, `del` releases nothing.
#[test]
fn a_rebinding_refused_ends_the_lease() {
    require_root();
    let lab = Lab::new().unwrap();
    let b_ns = second_server_host(&lab);
    let a = start_server(&lab, lab.ext(), EXT_IF, "", "10.77.0.53");
    let c = lab.container("c1").unwrap();
    let (rec, _) = add(&lab, "macvlan", c.name());
    let addr = rec["dhcp"]["address"].as_str().unwrap().to_owned();
    drop(a);
    let b = start_leasing(
        &lab,
        &b_ns,
        "dhcpb0",
        "b",
        "10.77.0.54",
        "10.77.0.200,10.77.0.210",
    );
    let mut said = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let ended = loop {
        let lease = lab.record(&c)["dhcp"].clone();
        if !lease["refused"].is_null() {
            break lease;
        }
        assert!(
            Instant::now() < deadline,
            "no DHCPNAK ended the lease within 20 s: {lease}\n{said}\n{}",
            b.log()
        );
        said += &lab.attach().ok(&["reconcile"]).unwrap();
    };
    assert!(
        said.contains("ended: DHCP server 10.77.0.2 refused"),
        "{said}"
    );
    assert!(b.log().contains("DHCPNAK"), "{}", b.log());
    assert_eq!(ended["server"], "10.77.0.2", "{ended}");
    let out = lab.attach().run(&["check", "--netns", c.name()]).unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "check passed an ended lease");
    assert!(
        err.contains(&format!("lease of {addr} from 10.77.0.2 expired at "))
            && err.contains("(the server refused it: DHCPNAK"),
        "{err}"
    );
    // Over: not asked for again, not released.
    let again = lab.attach().ok(&["reconcile"]).unwrap();
    assert!(!again.contains("lease of"), "{again}");
    assert_eq!(lab.record(&c)["dhcp"], ended);
    let out = lab.attach().run(&["del", "--netns", c.name()]).unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success() && !err.contains("warning"), "{err}");
    assert!(!b.log().contains("DHCPRELEASE"), "{}", b.log());
}
