//! Every rejected `attach add macvlan` case, on an empty node and beside a
//! healthy eBPF or native attachment: the exit code, the value named, and
//! the node unchanged; and a passthru endpoint takes its parent alone.

use std::{path::Path, process::Output};

use attach_tests::{
    lab::{EXT_V4, Lab, NODE_IF, Netns, ping, require_root},
    reach::{Flavor, attach, mac_of},
    refusal::{CONFLICT, INVALID, NOT_FOUND, SYSTEM, judge},
    snapshot::{pin_dir, snapshot},
};
use serde_json::Value;

use crate::foreign_xdp::ForeignXdp;

// ---------------------------------------------------------------------------
// The failing cases

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Ebpf,
    Native,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Ebpf => "ebpf",
            Backend::Native => "native",
        }
    }
}

const BOTH: &[Backend] = &[Backend::Ebpf, Backend::Native];
const EBPF: &[Backend] = &[Backend::Ebpf];
const NATIVE: &[Backend] = &[Backend::Native];

/// What the node must already carry for a case to fail as expected.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Needs {
    Nothing,
    /// A healthy attachment (`{peer_*}`), any backend.
    Peer,
    /// A healthy eBPF attachment with the tc datapath.
    EbpfPeer,
    /// No eBPF attachment (so an eBPF add is the parent's first).
    NoEbpfPeer,
}

/// A bad `attach add macvlan`: extra arguments (`--parent eth1`, `--netns
/// {target}` and `--backend` are added unless given), the exit code, and the
/// text the error must contain. `{name}`s are filled from [`Ctx`].
struct Case {
    name: &'static str,
    args: &'static str,
    backends: &'static [Backend],
    needs: Needs,
    code: i32,
    names: &'static str,
    /// Rejected by the argument parser, before the engine: no JSON error.
    parse: bool,
    /// A foreign XDP program sits on this device (see [`ForeignXdp`]).
    foreign_xdp: Option<&'static str>,
}

const fn case(
    name: &'static str,
    args: &'static str,
    backends: &'static [Backend],
    code: i32,
    names: &'static str,
) -> Case {
    Case {
        name,
        args,
        backends,
        needs: Needs::Nothing,
        code,
        names,
        parse: false,
        foreign_xdp: None,
    }
}

impl Case {
    const fn needs(mut self, n: Needs) -> Case {
        self.needs = n;
        self
    }

    const fn parse(mut self) -> Case {
        self.parse = true;
        self
    }

    const fn foreign_xdp(mut self, dev: &'static str) -> Case {
        self.foreign_xdp = Some(dev);
        self
    }
}

/// A second parent, made in the node by [`bad_input`].
const PARENT2: &str = "eth2";

#[rustfmt::skip]
const CASES: &[Case] = &[
    case("garbage MAC", "--mac zz:00:00:00:00:01", BOTH, INVALID, "zz:00:00:00:00:01").parse(),
    case("multicast MAC", "--mac 01:00:5e:00:00:01", BOTH, INVALID, "01:00:5e:00:00:01"),
    case("all-zero MAC", "--mac 00:00:00:00:00:00", BOTH, INVALID, "00:00:00:00:00:00"),
    case("CIDR without prefix", "--ip 10.0.0.1", BOTH, INVALID, "10.0.0.1").parse(),
    case("IPv4 prefix 33", "--ip 10.0.0.1/33", BOTH, INVALID, "10.0.0.1/33").parse(),
    case("IPv6 prefix 129", "--ip fd00::1/129", BOTH, INVALID, "fd00::1/129").parse(),
    case("IPv4 octet 300", "--ip 300.1.1.1/24", BOTH, INVALID, "300.1.1.1/24").parse(),
    case("address given twice", "--ip 10.77.0.60/24 --ip 10.77.0.60/25", BOTH, INVALID, "10.77.0.60"),
    case("IPv4 gateway, IPv6 address only", "--ip fd77::60/64 --gateway 10.77.0.1", BOTH, INVALID, "10.77.0.1"),
    case("IPv6 gateway, IPv4 address only", "--ip 10.77.0.60/24 --gateway fd77::1", BOTH, INVALID, "fd77::1"),
    case("gateway without address", "--gateway 10.77.0.1", BOTH, INVALID, "10.77.0.1"),
    case("the peer's MAC", "--mac {peer_mac}", BOTH, CONFLICT, "{peer_mac}").needs(Needs::Peer),
    case("the parent's own MAC", "--mac {parent_mac}", BOTH, CONFLICT, "{parent_mac}"),
    case("the peer's IPv4 address", "--ip {peer_v4}/25", BOTH, CONFLICT, "{peer_v4}").needs(Needs::Peer),
    case("the node's own address on the parent", "--ip 10.77.0.254/24", BOTH, CONFLICT, "10.77.0.254"),
    case("the peer's IPv6 address", "--ip {peer_v6}/64", BOTH, CONFLICT, "{peer_v6}").needs(Needs::Peer),
    case("passthru beside others", "--mode passthru", BOTH, CONFLICT, "passthru").needs(Needs::Peer),
    case("missing parent", "--parent nope0", BOTH, NOT_FOUND, "nope0"),
    case("loopback as parent", "--parent lo", BOTH, INVALID, "parent lo"),
    case("a host-side veth as parent", "--parent {peer_host}", BOTH, INVALID, "{peer_host}").needs(Needs::EbpfPeer),
    case("missing netns name", "--netns no-such-ns", BOTH, NOT_FOUND, "no-such-ns"),
    case("missing netns path", "--netns /run/netns/no-such-ns-{tag}", BOTH, NOT_FOUND, "/run/netns/no-such-ns-{tag}"),
    case("missing netns pid", "--netns {dead_pid}", BOTH, NOT_FOUND, "{dead_pid}"),
    case("a file, not a netns", "--netns /etc/hostname", BOTH, INVALID, "/etc/hostname"),
    case("ifname taken in the container", "--netns {busy}", BOTH, CONFLICT, "eth0"),
    case("ifname already attached", "--netns {peer_ns}", BOTH, CONFLICT, "eth0").needs(Needs::Peer),
    case("ifname of 16 characters", "--ifname abcdefghijklmnop", BOTH, INVALID, "abcdefghijklmnop"),
    case("ifname with a slash", "--ifname a/b", BOTH, INVALID, "a/b"),
    case("MTU above the parent's", "--mtu 9000", BOTH, INVALID, "9000"),
    case("MTU below IPv6's minimum", "--ip fd77::60/64 --mtu 1200", BOTH, INVALID, "1200"),
    case("--datapath with native", "--datapath xdp", NATIVE, INVALID, "--datapath"),
    case("--host-access with native", "--host-access", NATIVE, INVALID, "--host-access"),
    case("--spoofchk on with native", "--spoofchk on", NATIVE, INVALID, "--spoofchk"),
    case("--host-access with passthru", "--mode passthru --host-access", EBPF, INVALID, "--host-access"),
    case("xdp beside tc on one parent", "--datapath xdp", EBPF, CONFLICT, "tc datapath").needs(Needs::EbpfPeer),
    case("IPv4 network address", "--ip 10.67.0.0/24", BOTH, INVALID, "10.67.0.0/24"),
    case("IPv4 broadcast address", "--ip 10.67.0.255/24", BOTH, INVALID, "10.67.0.255/24"),
    case("IPv4-mapped IPv6 address", "--ip ::ffff:10.67.0.50/120", BOTH, INVALID, "::ffff:10.67.0.50/120"),
    case("IPv4 link-local address", "--ip 169.254.7.8/16", BOTH, INVALID, "169.254.7.8/16"),
    case("IPv6 link-local address", "--ip fe80::7/64", BOTH, INVALID, "fe80::7/64"),
    case("gateway outside the subnet", "--ip 10.77.0.50/24 --gateway 192.168.9.1", BOTH, INVALID, "192.168.9.1"),
    case("IPv6 gateway outside the subnet", "--ip fd77::50/64 --gateway fd78::1", BOTH, INVALID, "fd78::1"),
    case("gateway is the own address", "--ip 10.77.0.50/24 --gateway 10.77.0.50", BOTH, INVALID, "10.77.0.50"),
    case("MTU above any interface's", "--mtu 65536", BOTH, INVALID, "65536"),
    // Fails late: the veth is made, named and moved; its IPv4 address is
    // added, the IPv6 one refused (IPv6 is off in that container).
    case("IPv6 off in the container", "--netns {nov6} --ip 10.77.0.50/24 --ip fd77::50/64", BOTH, SYSTEM, "fd77::50/64"),
    case("IPv6 off in the container, xdp", "--netns {nov6} --datapath xdp --ip 10.77.0.50/24 --ip fd77::50/64", EBPF, SYSTEM, "fd77::50/64")
        .needs(Needs::NoEbpfPeer),
    // Fails last: veth, maps, endpoint, transmit program, unicast filter,
    // parent entry and tc programs on the parent all exist by then.
    case("XDP slot of the parent taken", "--datapath xdp --ip 10.77.0.50/24", EBPF, SYSTEM, "XDP")
        .needs(Needs::NoEbpfPeer)
        .foreign_xdp(NODE_IF),
    // The same on a second parent: beside the peer's, whose maps, programs
    // and unicast filter must stay.
    case("XDP slot of a second parent taken", "--parent eth2 --datapath xdp --ip 10.77.0.50/24", EBPF, SYSTEM, "XDP")
        .foreign_xdp(PARENT2),
];

/// Values the cases refer to as `{name}`.
struct Ctx(Vec<(String, String)>);

impl Ctx {
    fn fill(&self, s: &str) -> String {
        let mut s = s.to_owned();
        for (k, v) in &self.0 {
            s = s.replace(&format!("{{{k}}}"), v);
        }
        assert!(!s.contains('{'), "unfilled placeholder in {s:?}");
        s
    }
}

fn run(lab: &Lab, args: &[String]) -> Output {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.attach().run(&argv).unwrap()
}

/// Runs `case` with `backend`, in text then JSON mode, and returns what
/// broke the contract.
fn check(lab: &Lab, ctx: &Ctx, case: &Case, backend: Backend, seen: &[&Netns]) -> Vec<String> {
    let mut args: Vec<String> = ["add", "macvlan", "--backend", backend.name()]
        .map(String::from)
        .to_vec();
    if !case.args.contains("--parent ") {
        args.extend(["--parent".into(), NODE_IF.into()]);
    }
    if !case.args.contains("--netns ") {
        args.extend(["--netns".into(), ctx.fill("{target}")]);
    }
    args.extend(ctx.fill(case.args).split_whitespace().map(String::from));
    let names = ctx.fill(case.names);
    let label = format!(
        "[{} / {}] attach {}",
        case.name,
        backend.name(),
        args.join(" ")
    );
    let mut bad = Vec::new();

    let _xdp = case.foreign_xdp.map(|dev| ForeignXdp::attach(lab, dev));
    let before = snapshot(lab, seen);
    for json_mode in [false, true] {
        let mut argv = args.clone();
        if json_mode {
            argv.splice(0..0, ["-o".to_owned(), "json".to_owned()]);
        }
        let out = run(lab, &argv);
        bad.extend(judge(
            &label, json_mode, &out, case.code, case.parse, &names,
        ));
        let code = out.status.code();
        if code == Some(0) {
            // Unexpected success: undo it, so the next cases start clean.
            let pick = |flag: &str, default: &str| {
                args.iter()
                    .position(|a| a == flag)
                    .map_or(default.to_owned(), |i| args[i + 1].clone())
            };
            let (netns, ifname) = (pick("--netns", ""), pick("--ifname", "eth0"));
            run(
                lab,
                &["del", "--netns", &netns, "--ifname", &ifname].map(String::from),
            );
        }
        let after = snapshot(lab, seen);
        let mode = if json_mode { "json" } else { "text" };
        if after != before {
            bad.push(format!(
                "{label} ({mode}) left the node changed:\n{}",
                before.diff(&after)
            ));
        }
    }
    bad
}

/// A pid no process has.
fn dead_pid() -> u32 {
    (1..)
        .map(|i| 4_194_304 - i)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap()
}

/// Every case that applies, on a node with `peer` attached (or none).
fn bad_input(peer_flavor: Option<Flavor>) {
    require_root();
    let lab = Lab::new().unwrap();
    let target = lab.container("t").unwrap();
    // A container whose eth0 exists already (no dummy driver here: a veth).
    let busy = lab.container("busy").unwrap();
    busy.ok(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ])
    .unwrap();
    // A second parent NIC in the node (a veth whose peer stays there too).
    for cmd in [
        &[
            "ip", "link", "add", PARENT2, "type", "veth", "peer", "name", "eth2p",
        ][..],
        &["ip", "link", "set", "eth2p", "up"],
        &["ip", "link", "set", PARENT2, "up"],
    ] {
        lab.node().ok(cmd).unwrap();
    }
    let nov6 = lab.container_without_ipv6("nov6").unwrap();
    let empty = snapshot(&lab, &[&target, &busy, &nov6]);
    assert_eq!(empty.0["pins"], Value::Null, "a new node has no pins");

    let peer = peer_flavor.map(|f| attach(&lab, 1, "bridge", f, &[]).unwrap());
    let mut seen: Vec<&Netns> = vec![&target, &busy, &nov6];
    let parent_mac = empty.0["parent"]["address"].as_str().unwrap().to_owned();
    let mut vars = vec![
        ("target", target.name().to_owned()),
        ("busy", busy.name().to_owned()),
        ("nov6", nov6.name().to_owned()),
        ("parent_mac", parent_mac),
        ("tag", lab.tag().to_owned()),
        ("dead_pid", dead_pid().to_string()),
    ];
    if let Some(p) = &peer {
        seen.push(p.ns.as_ref());
        assert!(ping(&p.ns, EXT_V4), "the peer does not reach {EXT_V4}");
        let list = lab.attach().json(&["list"]).unwrap();
        let host = list[0]["host_ifname"].as_str().unwrap_or("-").to_owned();
        vars.extend([
            ("peer_ns", p.ns.name().to_owned()),
            ("peer_mac", mac_of(1)),
            ("peer_v4", p.v4.clone()),
            ("peer_v6", p.v6.clone()),
            ("peer_host", host),
        ]);
    }
    if peer_flavor.is_some_and(|f| f != Flavor::Native) {
        assert!(
            pin_dir(&lab).join("attach_eps").exists(),
            "no pins in {}",
            pin_dir(&lab).display()
        );
    }
    let ctx = Ctx(vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
    let ebpf_peer = peer_flavor.is_some_and(|f| f != Flavor::Native);

    let mut bad = Vec::new();
    let mut ran = 0;
    for case in CASES {
        let applies = match case.needs {
            Needs::Nothing => true,
            Needs::Peer => peer.is_some(),
            Needs::EbpfPeer => ebpf_peer,
            Needs::NoEbpfPeer => !ebpf_peer,
        };
        if !applies {
            continue;
        }
        for &backend in case.backends {
            ran += 1;
            bad.extend(check(&lab, &ctx, case, backend, &seen));
            if let Some(p) = &peer
                && !ping(&p.ns, EXT_V4)
            {
                bad.push(format!(
                    "[{} / {}]: the peer no longer reaches {EXT_V4}",
                    case.name,
                    backend.name()
                ));
            }
        }
    }
    eprintln!("{ran} failing adds checked");

    if let Some(p) = &peer {
        lab.attach().ok(&["del", "--netns", p.ns.name()]).unwrap();
        let after = snapshot(&lab, &[&target, &busy, &nov6]);
        if after != empty {
            bad.push(format!(
                "detaching the peer did not bring the node back:\n{}",
                empty.diff(&after)
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} broken:\n\n{}",
        bad.len(),
        bad.join("\n\n")
    );
}

#[test]
fn bad_input_on_an_empty_node() {
    bad_input(None);
}

#[test]
fn bad_input_beside_an_ebpf_attachment() {
    bad_input(Some(Flavor::EbpfTc));
}

#[test]
fn bad_input_beside_a_native_attachment() {
    bad_input(Some(Flavor::Native));
}

/// A passthru endpoint takes its parent alone: a second one, or any other
/// endpoint, is refused and changes nothing; detaching it puts the parent's
/// MAC and promiscuity back.
#[test]
fn passthru_takes_the_parent_alone() {
    require_root();
    let lab = Lab::new().unwrap();
    let target = lab.container("t").unwrap();
    #[rustfmt::skip]
    let cases = [
        case("a second passthru", "--mode passthru", BOTH, CONFLICT, "passthru"),
        case("bridge beside passthru", "--mode bridge", BOTH, CONFLICT, "passthru"),
        case("passthru MAC beside passthru", "--mode passthru --mac 02:a7:00:00:00:42", BOTH, CONFLICT, "passthru"),
    ];
    let mut bad = Vec::new();
    for flavor in [Flavor::Native, Flavor::EbpfTc] {
        let pt_ns = lab.container("c5").unwrap();
        let before = snapshot(&lab, &[&target, &pt_ns]);
        let pt = attach(&lab, 5, "passthru", flavor, &[]).unwrap();
        assert!(ping(&pt.ns, EXT_V4), "passthru ({})", flavor.name());
        let ctx = Ctx(vec![("target".into(), target.name().to_owned())]);
        for c in &cases {
            for &backend in c.backends {
                bad.extend(check(&lab, &ctx, c, backend, &[&target, &pt_ns]));
            }
        }
        assert!(ping(&pt.ns, EXT_V4), "passthru ({}) after", flavor.name());
        lab.attach().ok(&["del", "--netns", pt_ns.name()]).unwrap();
        let after = snapshot(&lab, &[&target, &pt_ns]);
        if after != before {
            bad.push(format!(
                "passthru ({}) attached and detached changed the node:\n{}",
                flavor.name(),
                before.diff(&after)
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}
