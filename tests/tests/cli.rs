//! The CLI's contract for bad input and failure.
//!
//! Every rejected `attach add` exits non-zero with the documented code
//! (2 invalid input, 3 not found, 4 conflict, 1 system; clap's own parse
//! errors exit 2), names the value at fault (on stderr in text mode; as
//! `{"error": {"kind", "message"}}` on stdout with `-o json`), and leaves the
//! node exactly as it was: [`snapshot`] before and after must be equal. Each
//! case runs on an empty node (so the first-endpoint path, which loads the
//! datapath, is rolled back too), beside a healthy eBPF attachment and beside
//! a healthy native one (which must keep working).
//!
//! Also: `del` is idempotent and survives a deleted namespace, `list -o json`
//! has the documented fields, NETNS can be a name, a path or a pid, and
//! `reset` removes everything.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use attach_tests::{
    kinds,
    lab::{Attach, EXT_V4, Lab, NETNS_PREFIX, NODE_IF, Netns, ping, require_root},
    reach::{Endpoint, Flavor, attach, mac_of},
    snapshot::{Bad, Scope, check_rejected, json_cmd, links, pin_dir, snapshot, state_dir},
};
use serde_json::{Value, json};

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

const INVALID: i32 = 2;
const NOT_FOUND: i32 = 3;
const CONFLICT: i32 = 4;
const SYSTEM: i32 = 1;

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

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_owned()
}

fn kind_of(code: i32) -> &'static str {
    match code {
        1 => "system",
        2 => "invalid_input",
        3 => "not_found",
        4 => "conflict",
        _ => "?",
    }
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
        let mode = if json_mode { "json" } else { "text" };
        let mut argv = args.clone();
        if json_mode {
            argv.splice(0..0, ["-o".to_owned(), "json".to_owned()]);
        }
        let out = run(lab, &argv);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let code = out.status.code();
        eprintln!(
            "{label} ({mode}): exit {code:?}: {}",
            if json_mode { &stdout } else { &stderr }
        );
        if code != Some(case.code) {
            bad.push(format!(
                "{label} ({mode}): exit {code:?}, want {}\nstdout: {stdout}\nstderr: {stderr}",
                case.code
            ));
        }
        if json_mode && !case.parse {
            match serde_json::from_str::<Value>(&stdout) {
                Ok(v) => {
                    let e = &v["error"];
                    let (kind, msg) = (e["kind"].as_str(), e["message"].as_str());
                    if kind != Some(kind_of(case.code)) || !msg.is_some_and(|m| m.contains(&names))
                    {
                        bad.push(format!(
                            "{label} (json): want error kind {} naming {names:?}, got {v}",
                            kind_of(case.code)
                        ));
                    }
                }
                Err(_) => bad.push(format!(
                    "{label} (json): stdout is not JSON: {stdout:?} (stderr: {stderr})"
                )),
            }
        } else {
            // Text mode, or clap's own error (its format whatever -o says).
            if !stderr.contains(&names) {
                bad.push(format!(
                    "{label} ({mode}): stderr does not name {names:?}: {stderr}"
                ));
            }
            if !stdout.is_empty() {
                bad.push(format!("{label} ({mode}): stdout on error: {stdout}"));
            }
        }
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
        if after != before {
            bad.push(format!(
                "{label} ({mode}) left the node changed:\n{}",
                before.diff(&after)
            ));
        }
    }
    bad
}

/// A do-nothing XDP program attached to a device of the node in generic
/// mode over netlink, as another tool would: our XDP link can then attach in
/// neither mode. Detached on drop.
struct ForeignXdp<'a> {
    node: &'a Netns,
    dev: &'static str,
}

impl<'a> ForeignXdp<'a> {
    fn attach(lab: &'a Lab, dev: &'static str) -> ForeignXdp<'a> {
        #[repr(C)]
        struct ProgLoad {
            prog_type: u32,
            insn_cnt: u32,
            insns: u64,
            license: u64,
            log_level: u32,
            log_size: u32,
            log_buf: u64,
            kern_version: u32,
            prog_flags: u32,
            prog_name: [u8; 16],
        }
        #[repr(C)]
        struct ObjPin {
            pathname: u64,
            bpf_fd: u32,
            file_flags: u32,
        }
        const BPF_PROG_LOAD: libc::c_long = 5;
        const BPF_OBJ_PIN: libc::c_long = 6;
        const BPF_PROG_TYPE_XDP: u32 = 6;
        // r0 = XDP_PASS; exit
        let insns: [u64; 2] = [
            u64::from_le_bytes([0xb7, 0, 0, 0, 2, 0, 0, 0]),
            u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
        ];
        let license = c"GPL";
        let mut name = [0u8; 16];
        name[..9].copy_from_slice(b"atl_xpass");
        let attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: 2,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 0,
            log_size: 0,
            log_buf: 0,
            kern_version: 0,
            prog_flags: 0,
            prog_name: name,
        };
        // SAFETY: a valid bpf_attr prefix for BPF_PROG_LOAD; pointers live.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const ProgLoad,
                std::mem::size_of::<ProgLoad>(),
            )
        };
        assert!(
            fd >= 0,
            "loading an XDP program: {}",
            std::io::Error::last_os_error()
        );
        let pin = format!("/sys/fs/bpf/{NETNS_PREFIX}-{}-xdp", lab.tag());
        let cpin = std::ffi::CString::new(pin.clone()).unwrap();
        let attr = ObjPin {
            pathname: cpin.as_ptr() as u64,
            bpf_fd: fd as u32,
            file_flags: 0,
        };
        // SAFETY: a valid bpf_attr prefix for BPF_OBJ_PIN; pointers live.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_OBJ_PIN,
                &attr as *const ObjPin,
                std::mem::size_of::<ObjPin>(),
            )
        };
        let err = std::io::Error::last_os_error();
        // SAFETY: closing the fd we were given.
        unsafe { libc::close(fd as i32) };
        assert_eq!(r, 0, "pinning the XDP program at {pin}: {err}");
        let attached = lab.node().ok(&[
            "bpftool",
            "net",
            "attach",
            "xdpgeneric",
            "pinned",
            &pin,
            "dev",
            dev,
        ]);
        fs::remove_file(&pin).unwrap();
        attached.unwrap();
        ForeignXdp {
            node: lab.node(),
            dev,
        }
    }
}

impl Drop for ForeignXdp<'_> {
    fn drop(&mut self) {
        let _ = self
            .node
            .exec(&["bpftool", "net", "detach", "xdpgeneric", "dev", self.dev]);
    }
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

// ---------------------------------------------------------------------------
// del, list, NETNS forms, reset

/// The field names `list -o json` promises.
const FIELDS: [&str; 11] = [
    "netns",
    "ifname",
    "kind",
    "mode",
    "backend",
    "datapath",
    "parent",
    "mac",
    "ips",
    "mtu",
    "host_ifname",
];

fn host_links(lab: &Lab) -> Vec<String> {
    links(lab.node())
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| n.starts_with("atk"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn list_json_has_the_documented_fields() {
    require_root();
    let lab = Lab::new().unwrap();
    let out = lab.attach().ok(&["-o", "json", "list"]).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!([]),
        "empty list: {out}"
    );
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let c2 = attach(&lab, 2, "vepa", Flavor::Native, &["--mtu", "1400"]).unwrap();
    let list = lab.attach().json(&["list"]).unwrap();
    let list = list.as_array().expect("list is an array");
    assert_eq!(list.len(), 2, "{list:?}");
    for r in list {
        let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        for f in FIELDS {
            assert!(keys.contains(&f), "field {f} missing from {r}");
        }
    }
    let by_ns = |ns: &Netns| list.iter().find(|r| r["netns"] == ns.name()).unwrap();
    let (r1, r2) = (by_ns(&c1.ns), by_ns(&c2.ns));
    assert_eq!(r1["ifname"], "eth0");
    assert_eq!(r1["kind"], "macvlan");
    assert_eq!(r1["mode"], "bridge");
    assert_eq!(r1["backend"], "ebpf");
    assert_eq!(r1["datapath"], "tc");
    assert_eq!(r1["parent"], NODE_IF);
    assert_eq!(r1["mac"], mac_of(1));
    assert_eq!(r1["ips"], json!(["10.77.0.11/24", "fd77::11/64"]));
    assert_eq!(r1["mtu"], 1500);
    assert!(
        r1["host_ifname"].as_str().unwrap().starts_with("atk"),
        "{r1}"
    );
    assert_eq!(r2["mode"], "vepa");
    assert_eq!(r2["backend"], "native");
    assert_eq!(r2["datapath"], Value::Null);
    assert_eq!(r2["mac"], mac_of(2));
    assert_eq!(r2["mtu"], 1400);
    assert_eq!(r2["host_ifname"], Value::Null);
    // The text table has a row per attachment.
    let table = lab.attach().ok(&["list"]).unwrap();
    assert!(
        table.contains(c1.ns.name()) && table.contains(c2.ns.name()),
        "{table}"
    );
}

#[test]
fn del_is_idempotent() {
    require_root();
    let lab = Lab::new().unwrap();
    let never = lab.container("never").unwrap();
    let empty = snapshot(&lab, &[&never]);
    for flavor in [Flavor::EbpfTc, Flavor::Native, Flavor::EbpfXdp] {
        let c = attach(&lab, 1, "bridge", flavor, &[]).unwrap();
        let ns = c.ns.name();
        let first = lab.attach().json(&["del", "--netns", ns]).unwrap();
        assert_eq!(first["detached"]["netns"], ns, "{first}");
        let second = lab.attach().json(&["del", "--netns", ns]).unwrap();
        assert_eq!(second, json!({"detached": null}), "{}", flavor.name());
        let third = lab
            .attach()
            .ok(&["del", "--netns", ns, "--ifname", "eth0"])
            .unwrap();
        assert_eq!(third.trim(), format!("nothing attached as eth0 in {ns}"));
        let fourth = lab.attach().ok(&["del", "--netns", ns]).unwrap();
        assert_eq!(fourth.trim(), format!("nothing attached in {ns}"));
        assert!(links(&c.ns).iter().all(|l| l["ifname"] == "lo"));
        assert_eq!(
            snapshot(&lab, &[&never]),
            empty,
            "after del ({})",
            flavor.name()
        );
    }
    // Never attached: a live namespace, another ifname, a missing namespace.
    for args in [
        vec!["del", "--netns", never.name()],
        vec!["del", "--netns", never.name(), "--ifname", "net1"],
        vec!["del", "--netns", "no-such-ns"],
        vec!["del", "--netns", "/run/netns/no-such-ns"],
    ] {
        let out = lab.attach().run(&args).unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = lab
        .attach()
        .run(&[
            "del",
            "--netns",
            never.name(),
            "--ifname",
            "abcdefghijklmnop",
        ])
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "del with a 16-character ifname");
    assert!(text(&out.stderr).contains("abcdefghijklmnop"));
    // Without a target: invalid input, saying what to give.
    for cmd in ["del", "check"] {
        let out = lab.attach().run(&[cmd]).unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(err.contains("give --netns, or --tap with --vlan"), "{err}");
    }
    assert_eq!(snapshot(&lab, &[&never]), empty);
}

/// The container's namespace is deleted before `del`: the record, the host
/// veth, its map entries, and (with the last eBPF attachment) the pins go.
#[test]
fn del_after_the_netns_is_deleted() {
    require_root();
    let lab = Lab::new().unwrap();
    let empty = snapshot(&lab, &[]);
    let stay = attach(&lab, 1, "bridge", Flavor::EbpfTc, &[]).unwrap();
    let (v4, _) = Lab::container_ip(2);
    let gone = Netns::named(&format!("{NETNS_PREFIX}-{}-gone", lab.tag())).unwrap();
    let gone_name = gone.name().to_owned();
    let add = |ifname: &str, backend: &str, mac: &str, ip: &str| {
        lab.attach()
            .ok(&[
                "add",
                "macvlan",
                "--parent",
                NODE_IF,
                "--netns",
                &gone_name,
                "--ifname",
                ifname,
                "--backend",
                backend,
                "--mac",
                mac,
                "--ip",
                ip,
            ])
            .unwrap();
    };
    add("eth0", "ebpf", &mac_of(2), &v4);
    add("eth1", "native", &mac_of(3), "10.77.0.13/24");
    let list = lab.attach().json(&["list"]).unwrap();
    let host = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["netns"] == gone_name.as_str() && r["ifname"] == "eth0")
        .and_then(|r| r["host_ifname"].as_str())
        .unwrap()
        .to_owned();
    assert!(host_links(&lab).contains(&host));
    drop(gone);

    for ifname in ["eth0", "eth1"] {
        let out = lab
            .attach()
            .json(&["del", "--netns", &gone_name, "--ifname", ifname])
            .unwrap();
        assert_eq!(out["detached"]["ifname"], ifname, "{out}");
    }
    let list = lab.attach().json(&["list"]).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["netns"], stay.ns.name());
    assert!(!host_links(&lab).contains(&host), "{host} is still there");
    let pins = pin_dir(&lab);
    for map in ["attach_eps", "attach_ports", "attach_devs"] {
        let dump = json_cmd(
            Command::new("bpftool")
                .args(["-j", "map", "dump", "pinned"])
                .arg(pins.join(map)),
            map,
        );
        assert_eq!(dump.as_array().unwrap().len(), 1, "{map}: {dump}");
    }
    assert!(ping(&stay.ns, EXT_V4), "the other attachment broke");

    // The last eBPF attachment, its namespace gone: the pins go too.
    let gone = Netns::named(&format!("{NETNS_PREFIX}-{}-gone2", lab.tag())).unwrap();
    let gone_name = gone.name().to_owned();
    lab.attach()
        .ok(&["del", "--netns", stay.ns.name()])
        .unwrap();
    lab.attach()
        .ok(&[
            "add", "macvlan", "--parent", NODE_IF, "--netns", &gone_name, "--ip", &v4,
        ])
        .unwrap();
    drop(gone);
    let out = lab.attach().json(&["del", "--netns", &gone_name]).unwrap();
    assert_eq!(out["detached"]["netns"], gone_name.as_str(), "{out}");
    let out = lab.attach().json(&["del", "--netns", &gone_name]).unwrap();
    assert_eq!(out, json!({"detached": null}));
    let after = snapshot(&lab, &[]);
    assert_eq!(after, empty, "\n{}", empty.diff(&after));
}

/// NETNS as a pid (of a process inside the container) and as a path.
#[test]
fn netns_as_a_pid_and_as_a_path() {
    require_root();
    let lab = Lab::new().unwrap();
    let c1 = lab.container("c1").unwrap();
    let c2 = lab.container("c2").unwrap();
    let empty = snapshot(&lab, &[&c1, &c2]);

    let mut sleeper = c1.command(&["sleep", "60"]).spawn().unwrap();
    let pid = sleeper.id().to_string();
    let want = fs::metadata(c1.path()).unwrap().ino();
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::metadata(format!("/proc/{pid}/ns/net"))
        .map(|m| m.ino())
        .ok()
        != Some(want)
    {
        assert!(
            Instant::now() < deadline,
            "pid {pid} never entered {}",
            c1.name()
        );
        thread::sleep(Duration::from_millis(10));
    }
    let result = std::panic::catch_unwind(|| {
        let (v4, _) = Lab::container_ip(1);
        let rec = lab
            .attach()
            .json(&[
                "add", "macvlan", "--parent", NODE_IF, "--netns", &pid, "--ip", &v4,
            ])
            .unwrap();
        assert_eq!(rec["netns"], pid.as_str());
        assert!(ping(&c1, EXT_V4), "attached by pid");
        assert!(links(&c1).iter().any(|l| l["ifname"] == "eth0"));
        let out = lab.attach().json(&["del", "--netns", &pid]).unwrap();
        assert_eq!(out["detached"]["netns"], pid.as_str(), "{out}");
    });
    // That exact process, nothing else.
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }

    let path = c2.path().display().to_string();
    let (v4, _) = Lab::container_ip(2);
    for backend in ["ebpf", "native"] {
        let rec = lab
            .attach()
            .json(&[
                "add",
                "macvlan",
                "--parent",
                NODE_IF,
                "--netns",
                &path,
                "--ip",
                &v4,
                "--backend",
                backend,
            ])
            .unwrap();
        assert_eq!(rec["netns"], path.as_str());
        assert!(ping(&c2, EXT_V4), "attached by path ({backend})");
        // Added by path, found by name.
        let out = lab.attach().json(&["del", "--netns", c2.name()]).unwrap();
        assert_eq!(out["detached"]["netns"], path.as_str(), "{out}");
    }
    let after = snapshot(&lab, &[&c1, &c2]);
    assert_eq!(after, empty, "\n{}", empty.diff(&after));
}

/// `reset` detaches everything, removes every host-side veth (leftovers
/// too) and the node's pins and state.
#[test]
fn reset_removes_everything() {
    require_root();
    let lab = Lab::new().unwrap();
    let cs: Vec<_> = (1..=4)
        .map(|i| lab.container(&format!("c{i}")).unwrap())
        .collect();
    let seen: Vec<&Netns> = cs.iter().map(|c| c.as_ref()).collect();
    let empty = snapshot(&lab, &seen);
    let _eps: Vec<Endpoint> = vec![
        attach(&lab, 1, "bridge", Flavor::EbpfXdp, &[]).unwrap(),
        attach(&lab, 2, "vepa", Flavor::EbpfXdp, &["--host-access"]).unwrap(),
        attach(&lab, 3, "private", Flavor::Native, &[]).unwrap(),
        attach(&lab, 4, "bridge", Flavor::Native, &[]).unwrap(),
    ];
    // A host-side veth a crashed attach could have left.
    lab.node()
        .ok(&[
            "ip",
            "link",
            "add",
            "atk00deadbeef",
            "type",
            "veth",
            "peer",
            "name",
            "lefto",
        ])
        .unwrap();
    assert!(pin_dir(&lab).exists());
    assert!(state_dir(&lab).exists());

    let out = lab.attach().json(&["reset"]).unwrap();
    assert_eq!(out["detached"].as_array().map(Vec::len), Some(4), "{out}");
    assert_eq!(lab.attach().json(&["list"]).unwrap(), json!([]));
    assert_eq!(host_links(&lab), Vec::<String>::new());
    assert!(
        !pin_dir(&lab).exists(),
        "{} remains",
        pin_dir(&lab).display()
    );
    assert!(
        !state_dir(&lab).exists(),
        "{} remains",
        state_dir(&lab).display()
    );
    let after = snapshot(&lab, &seen);
    assert_eq!(after, empty, "\n{}", empty.diff(&after));
    // And again, on nothing.
    lab.attach().ok(&["reset"]).unwrap();
}

/// Runs `attach <args>` at the end of the command line `wrapper`; the exit
/// status is not checked.
fn wrapped<S: AsRef<std::ffi::OsStr>>(wrapper: &[S], args: &[&str]) -> Output {
    Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .arg(Attach::bin().unwrap())
        .args(args)
        .output()
        .unwrap()
}

/// `add macvlan` of `c` on the lab's parent, then `extra`.
fn add_macvlan<'a>(c: &'a Netns, extra: &[&'a str]) -> Vec<&'a str> {
    kinds::add_macvlan(NODE_IF, c, "10.77.0.11/24", extra)
}

/// Run as `ip netns exec NODE attach ...`, the process has a /sys of its own
/// without bpffs: an eBPF add fails before it makes anything (no rollback,
/// so no rollback warning) and says how to run it instead; a native add,
/// which needs no pins, works there.
#[test]
fn add_without_bpffs_fails_before_making_anything() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = lab.container("c1").unwrap();
    let empty = snapshot(&lab, &[&c]);
    let ip_netns_exec = ["ip", "netns", "exec", lab.node().name()];
    let out = wrapped(&ip_netns_exec, &add_macvlan(&c, &[]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bpffs is not mounted on /sys/fs/bpf")
            && err.contains("nsenter --net=/run/netns/NAME"),
        "{err}"
    );
    assert!(!err.contains("rollback"), "a rollback ran: {err}");
    assert_eq!(snapshot(&lab, &[&c]), empty);

    let out = wrapped(&ip_netns_exec, &add_macvlan(&c, &["--backend", "native"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
    assert_eq!(snapshot(&lab, &[&c]), empty);
}

/// Without CAP_NET_ADMIN and CAP_SYS_ADMIN a command is refused before it
/// starts, naming what the process lacks; `list` needs neither.
#[test]
fn unprivileged_commands_are_refused_up_front() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = lab.container("c1").unwrap();
    let empty = snapshot(&lab, &[&c]);
    let net = format!("--net={}", lab.node().path().display());
    let in_node = |setpriv: &[&str]| -> Vec<String> {
        ["nsenter", &net, "setpriv"]
            .iter()
            .chain(setpriv)
            .map(|s| s.to_string())
            .collect()
    };
    let as_nobody = in_node(&["--reuid=65534", "--regid=65534", "--clear-groups"]);
    let out = wrapped(&as_nobody, &add_macvlan(&c, &[]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "attach add needs CAP_NET_ADMIN and CAP_SYS_ADMIN (run it as root); \
             this process lacks CAP_NET_ADMIN and CAP_SYS_ADMIN"
        ),
        "{err}"
    );
    // Root without CAP_NET_ADMIN: only that is missing.
    let no_net_admin = in_node(&["--inh-caps=-all", "--bounding-set=-net_admin"]);
    let out = wrapped(&no_net_admin, &["del", "--netns", c.name()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("attach del needs") && err.ends_with("this process lacks CAP_NET_ADMIN"),
        "{err}"
    );
    assert_eq!(snapshot(&lab, &[&c]), empty);
    let out = wrapped(&as_nobody, &["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `--netns ""` would make the node itself the container: every kind
/// refuses it up front, naming the option, and makes nothing.
#[test]
fn empty_netns_is_refused_for_every_kind() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = lab.container("c1").unwrap();
    let scope = Scope {
        namespaces: vec![&c],
        cgroups: vec![],
    };
    let kinds: &[(&str, &[&str])] = &[
        ("macvlan", &["--parent", NODE_IF, "--ip", "10.77.0.60/24"]),
        ("ipvlan", &["--parent", NODE_IF, "--ip", "10.77.0.60/24"]),
        ("bridge", &["--bridge", "br-e", "--ip", "10.77.0.60/24"]),
        ("router", &["--ip", "10.88.0.60/32"]),
        ("nested", &["--uplink", NODE_IF, "--vlan", "100"]),
        ("host", &["--ports", "tcp/80"]),
        ("sriov", &["--device", "sr0"]),
        ("container", &["--join", c.name()]),
    ];
    let mut broken = Vec::new();
    for (kind, extra) in kinds {
        let mut args = vec!["add", kind, "--netns", ""];
        args.extend_from_slice(extra);
        let bad = Bad::new(&format!("{kind} --netns \"\""), &args, 2, "--netns \"\"");
        broken.extend(check_rejected(&lab, &scope, &bad));
    }
    // Nor may del or check name it, beside an attachment (of a real
    // container) that must stay.
    lab.attach().ok(&add_macvlan(&c, &[])).unwrap();
    for cmd in ["del", "check"] {
        let bad = Bad::new(
            &format!("{cmd} --netns \"\""),
            &[cmd, "--netns", ""],
            2,
            "--netns \"\"",
        );
        broken.extend(check_rejected(&lab, &scope, &bad));
    }
    lab.attach().ok(&["check", "--netns", c.name()]).unwrap();
    lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
    assert!(broken.is_empty(), "{}", broken.join("\n\n"));
}

/// Values the kernel would refuse with a bare "Invalid argument" are refused
/// up front, named: an MTU above 65535 (router, sriov, bridge), a router
/// uplink that is the loopback device.
#[test]
fn out_of_range_values_are_named() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = lab.container("c1").unwrap();
    let n = c.name();
    let scope = Scope {
        namespaces: vec![&c],
        cgroups: vec![],
    };
    let cases = [
        Bad::new(
            "router MTU 65536",
            &[
                "add",
                "router",
                "--netns",
                n,
                "--ip",
                "10.88.0.60/32",
                "--mtu",
                "65536",
            ],
            2,
            "MTU 65536",
        ),
        Bad::new(
            "router on loopback",
            &[
                "add",
                "router",
                "--netns",
                n,
                "--ip",
                "10.88.0.60/32",
                "--uplink",
                "lo",
            ],
            2,
            "--uplink lo",
        ),
        Bad::new(
            "sriov MTU 65536",
            &[
                "add", "sriov", "--device", "sr0", "--netns", n, "--mtu", "65536",
            ],
            2,
            "MTU 65536",
        ),
        Bad::new(
            "macvlan MTU 70000",
            &[
                "add", "macvlan", "--parent", NODE_IF, "--netns", n, "--mtu", "70000",
            ],
            2,
            "MTU 70000",
        ),
    ];
    let mut broken = Vec::new();
    for bad in &cases {
        broken.extend(check_rejected(&lab, &scope, bad));
    }
    assert!(broken.is_empty(), "{}", broken.join("\n\n"));
}

fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

/// Removes what [`the_nodes_state_is_roots_alone`] plants in the node's
/// state directory, also when it fails.
struct Planted(std::path::PathBuf);

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0.join("lock"));
        let _ = fs::remove_file(self.0.join("elsewhere"));
        let _ = fs::remove_dir(self.0.join("attachments"));
        let _ = fs::remove_dir(&self.0);
    }
}

/// The node's state directory, its records and its lock are root's alone
/// (another user could otherwise hold the lock and stall every add and del,
/// or read the records); modes an older build left wider are narrowed on
/// the next change; a symbolic link in place of the lock is refused, not
/// followed, naming it, and nothing is made.
#[test]
fn the_nodes_state_is_roots_alone() {
    require_root();
    let lab = Lab::new().unwrap();
    let (c1, c2) = (lab.container("c1").unwrap(), lab.container("c2").unwrap());
    let state = state_dir(&lab);
    let records = state.join("attachments");
    let lock = state.join("lock");
    let files = |dir: &Path| -> Vec<std::path::PathBuf> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect()
    };
    let assert_private = |when: &str| {
        assert_eq!(mode_of(&state), 0o700, "{when}: {}", state.display());
        assert_eq!(mode_of(&records), 0o700, "{when}: {}", records.display());
        assert_eq!(mode_of(&lock), 0o600, "{when}: {}", lock.display());
        let recs = files(&records);
        assert!(!recs.is_empty(), "{when}: no records");
        for f in recs.iter().chain(&files(&state)) {
            assert_eq!(mode_of(f), 0o600, "{when}: {}", f.display());
            assert_eq!(fs::metadata(f).unwrap().uid(), 0, "{when}: {}", f.display());
        }
    };

    lab.attach().ok(&add_macvlan(&c1, &[])).unwrap();
    assert_private("after the first add");
    // Another user can neither take the lock nor read a record.
    let nobody = |argv: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args(argv)
            .output()
            .unwrap()
    };
    let lock_s = lock.display().to_string();
    let out = nobody(&["flock", "-n", &lock_s, "true"]);
    assert!(!out.status.success(), "nobody took the lock");
    let rec = files(&records)[0].display().to_string();
    assert!(
        !nobody(&["cat", &rec]).status.success(),
        "nobody read {rec}"
    );
    // Nor list them: told why.
    let net = format!("--net={}", lab.node().path().display());
    let bin = Attach::bin().unwrap();
    let out = Command::new("nsenter")
        .args([
            &net,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ])
        .arg(&bin)
        .arg("list")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("root only") && err.contains(&state.display().to_string()),
        "{err}"
    );

    // As an older build left them: wide open. The next add narrows them.
    for (p, m) in [(&state, 0o755), (&records, 0o755), (&lock, 0o666)] {
        fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    }
    for f in files(&records) {
        fs::set_permissions(f, fs::Permissions::from_mode(0o644)).unwrap();
    }
    lab.attach()
        .ok(&kinds::add_macvlan(NODE_IF, &c2, "10.77.0.12/24", &[]))
        .unwrap();
    assert_private("after an add on wide modes");
    for c in [&c1, &c2] {
        lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
    }
    assert!(!state.exists(), "the state directory outlived its records");

    // A symbolic link planted as the lock: refused, not followed.
    let _planted = Planted(state.clone());
    fs::create_dir_all(&records).unwrap();
    let target = state.join("elsewhere");
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    let before = snapshot(&lab, &[&c1]);
    let out = lab.attach().run(&add_macvlan(&c1, &[])).unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&lock_s) && err.contains("symbolic link"),
        "{err}"
    );
    assert!(!target.exists(), "the lock's link was followed");
    assert_eq!(snapshot(&lab, &[&c1]), before);
}

/// `attach completions SHELL` and `attach man [COMMAND]` are made from the
/// command line itself and need no privileges: run as nobody, each prints a
/// script or page that knows `attach add`; an unknown shell or command is
/// refused naming it.
#[test]
fn completions_and_manual_pages() {
    require_root();
    let bin = Attach::bin().unwrap();
    let as_nobody = |args: &[&str]| -> Output {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin)
            .args(args)
            .output()
            .unwrap()
    };
    for (args, want) in [
        (
            &["completions", "bash"][..],
            &["attach", "add", "macvlan", "--parent"][..],
        ),
        (
            &["completions", "zsh"],
            &["#compdef attach", "add", "macvlan", "--parent"],
        ),
        (
            &["completions", "fish"],
            &["complete -c attach", "add", "macvlan", "parent"],
        ),
        (
            &["man"],
            &[".TH attach", "attach add macvlan", "attach add router"],
        ),
        (
            &["man", "add", "macvlan"],
            &[".TH attach-add-macvlan", "attach add macvlan", "parent"],
        ),
    ] {
        let out = as_nobody(args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "attach {args:?}: {stderr}");
        assert!(stderr.is_empty(), "attach {args:?}: {stderr}");
        for w in want {
            assert!(stdout.contains(w), "attach {args:?}: no {w:?} in\n{stdout}");
        }
    }
    let out = as_nobody(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("tcsh"), "{}", text(&out.stderr));
    let out = as_nobody(&["man", "add", "teleport"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("\"teleport\""),
        "{}",
        text(&out.stderr)
    );
}
