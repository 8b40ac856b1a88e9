//! Differential tests: each macvlan mode is attached with the kernel's own
//! macvlan, then with our eBPF datapath (tc, then xdp), in the same lab; the
//! reachability matrices must be equal. A few rows are also checked against
//! the kernel rules directly, so two equally broken backends cannot pass.

use std::{net::UdpSocket, time::Duration};

use attach_tests::{
    lab::{Lab, LabOptions, Matrix, Netns, Proto, require_root},
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

/// Packets of one IP version the container's IP layer took in, and the
/// datagrams they carried (`InReceives` counts a chain once, the ECN
/// counters each datagram in it).
fn ip_passes_and_segments(ns: &Netns, v6: bool) -> (u64, u64) {
    let sum = |text: &str, prefix: &str, names: &[&str]| -> u64 {
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
        // /proc/net/snmp and netstat: a names row, then a values row;
        // /proc/net/snmp6: "name value" lines.
        let pairs: Vec<(&str, &str)> = if v6 {
            rows.iter()
                .filter_map(|l| l.split_once(char::is_whitespace))
                .collect()
        } else {
            rows[0]
                .split_whitespace()
                .zip(rows[1].split_whitespace())
                .collect()
        };
        let found: Vec<u64> = pairs
            .iter()
            .filter(|(n, _)| names.contains(n))
            .map(|(_, v)| v.trim().parse().unwrap())
            .collect();
        assert_eq!(found.len(), names.len(), "{names:?} in {prefix}");
        found.iter().sum()
    };
    let ecn = ["InNoECTPkts", "InECT1Pkts", "InECT0Pkts", "InCEPkts"];
    if v6 {
        let t = ns.ok(&["cat", "/proc/net/snmp6"]).unwrap();
        let ecn6: Vec<String> = ecn.iter().map(|n| format!("Ip6{n}")).collect();
        let ecn6: Vec<&str> = ecn6.iter().map(String::as_str).collect();
        (
            sum(&t, "Ip6InReceives", &["Ip6InReceives"]),
            sum(&t, "Ip6In", &ecn6),
        )
    } else {
        let snmp = ns.ok(&["cat", "/proc/net/snmp"]).unwrap();
        let netstat = ns.ok(&["cat", "/proc/net/netstat"]).unwrap();
        (
            sum(&snmp, "Ip:", &["InReceives"]),
            sum(&netstat, "IpExt:", &ecn),
        )
    }
}

/// A UDP socket on `to` in `ns` with room for a burst whatever each
/// datagram's truesize, reads timing out after 2 s.
fn receiver(ns: &Netns, to: std::net::SocketAddr) -> UdpSocket {
    ns.run(move || {
        let s = UdpSocket::bind(to)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let size: libc::c_int = 8 << 20;
        // SAFETY: a valid socket and option value.
        let r = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        anyhow::ensure!(
            r == 0,
            "SO_RCVBUFFORCE: {}",
            std::io::Error::last_os_error()
        );
        Ok(s)
    })
    .unwrap()
}

const PER_BURST: u32 = 50;

/// Datagram `i`: its number, then a pattern. GRO chains datagrams of one
/// length (and a shorter one that ends the chain): each burst has a length
/// of its own and ends with a short one.
fn datagram(i: u32) -> Vec<u8> {
    let len = if i % PER_BURST == PER_BURST - 1 {
        12
    } else {
        64 + (i / PER_BURST) as usize * 151 % 1200
    };
    let mut d = i.to_be_bytes().to_vec();
    d.extend((4..len).map(|j| (i as usize + j) as u8));
    d
}

/// The xdp datapath turns fraglist GRO on in the container: bursts of one
/// flow are chained (fewer passes through the IP layer than datagrams),
/// and every datagram still reaches its socket whole and in order, over
/// IPv4 and IPv6.
#[test]
fn xdp_endpoints_chain_udp_bursts_and_deliver_every_datagram_whole() {
    require_root();
    const BURSTS: u32 = 8;
    let lab = Lab::new().unwrap();
    let c1 = attach(&lab, 1, "bridge", Flavor::EbpfXdp, &[]).unwrap();
    let features = c1.ns.ok(&["ethtool", "-k", "eth0"]).unwrap();
    for f in ["generic-receive-offload: on", "rx-gro-list: on"] {
        assert!(features.contains(f), "want {f}:\n{features}");
    }
    // The container's NAPI waits 1 ms after each poll, so that a burst
    // queues up and is polled at once, as under load (`ip netns exec`
    // mounts the namespace's own /sys).
    let defer = "echo 2 > /sys/class/net/eth0/napi_defer_hard_irqs && \
                 echo 1000000 > /sys/class/net/eth0/gro_flush_timeout";
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", c1.ns.name(), "sh", "-c", defer])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    for (to, v6) in [
        (format!("{}:5555", c1.v4), false),
        (format!("[{}]:5556", c1.v6), true),
    ] {
        let to: std::net::SocketAddr = to.parse().unwrap();
        let rx = receiver(&c1.ns, to);
        let from = if v6 { "[::]:0" } else { "0.0.0.0:0" };
        let tx = lab.ext().run(move || Ok(UdpSocket::bind(from)?)).unwrap();
        let before = ip_passes_and_segments(&c1.ns, v6);
        let mut buf = [0u8; 2048];
        // A burst at a time, read before the next: the socket's buffer holds it.
        for b in 0..BURSTS {
            let burst = b * PER_BURST..(b + 1) * PER_BURST;
            for i in burst.clone() {
                tx.send_to(&datagram(i), to).unwrap();
            }
            for i in burst {
                let (n, _) = rx
                    .recv_from(&mut buf)
                    .unwrap_or_else(|e| panic!("datagram {i} to {to}: {e}"));
                assert_eq!(&buf[..n], datagram(i), "datagram {i} to {to}");
            }
        }
        let after = ip_passes_and_segments(&c1.ns, v6);
        let (passes, segments) = (after.0 - before.0, after.1 - before.1);
        eprintln!("to {to}: {segments} datagrams in {passes} passes through the IP layer");
        assert!(
            segments >= u64::from(BURSTS * PER_BURST),
            "{to}: {segments}"
        );
        assert!(
            passes * 2 <= segments,
            "{to}: {segments} datagrams took {passes} passes: not chained"
        );
    }
    detach(&lab, &c1).unwrap();
}
