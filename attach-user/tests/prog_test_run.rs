//! The datapath programs under BPF_PROG_TEST_RUN, frame by frame: the
//! macvlan's against the kernel's rules (shared/docs/semantics.md), the
//! switch's, ipvlan's, nested's and the router's in their modules; here,
//! what a test run's context may hold, the cost of a frame and the harness.
//!
//! Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) and bpffs on
//! /sys/fs/bpf. Each test runs in its own network namespace with real veth
//! devices (floods use `bpf_clone_redirect`, which really transmits), and its
//! own pinned maps, removed afterwards. A unicast redirect is run again for
//! real to see where the frame arrives (`Outcome::arrives_at`, common/live.rs;
//! docs/testing.md).

mod bridge;
mod common;
mod ipvlan;
mod macvlan;
mod nested;
mod router;

use attach::datapath::{PROG_RX, PROG_TX};
use attach_common::{
    Direction::{self, Rx as RX},
    EP_F_SPOOFCHK, EndpointStats, MODE_BRIDGE, Verdict,
};
use common::{frames::*, outcome::*, scenario::*, *};
use macvlan::{UNKNOWN, four_modes, ip4, udp_to};

// ---------------------------------------------------------------------------
// What the kernel accepts in a test run's context.

/// What this kernel (6.18) accepts in an XDP test run's `struct xdp_md`, and
/// how the program treats a multi-buffer frame.
#[test]
fn xdp_test_run_context_rules() {
    in_netns(|| {
        let mut lab = four_modes();
        let p = lab.parent();
        let f = udp_to(A, OUTSIDE);
        let n = f.len();
        let mut run = |ctx: &[u8], f: &[u8]| lab.try_xdp_ctx(ctx, f).map_err(|e| errno(&e));
        let refused = |r: Result<Outcome, i32>| r.expect_err("refused");

        run(&xdp_ctx(p, n), &f).unwrap().ret(XDP_REDIRECT);
        // data_end may not exceed the frame, metadata may not be given as
        // data_meta, there is no rx queue 1 on a veth, egress is output only,
        // the device must exist in the caller's netns, 14 bytes at least.
        let mut c = xdp_ctx(p, n);
        put_u32(&mut c, XDP_DATA_END, n as u32 + 1);
        assert_eq!(refused(run(&c, &f)), EINVAL, "data_end past the frame");
        let mut c = xdp_ctx(p, n);
        put_u32(&mut c, XDP_DATA_META, 4);
        assert_eq!(refused(run(&c, &f)), EINVAL, "data_meta");
        let mut c = xdp_ctx(p, n);
        put_u32(&mut c, XDP_RX_QUEUE_INDEX, 1);
        assert_eq!(refused(run(&c, &f)), EINVAL, "rx queue 1");
        let mut c = xdp_ctx(p, n);
        put_u32(&mut c, XDP_EGRESS_IFINDEX, p);
        assert_eq!(refused(run(&c, &f)), EINVAL, "egress_ifindex");
        assert_eq!(
            refused(run(&xdp_ctx(9999, n), &f)),
            ENODEV,
            "no such device"
        );
        assert_eq!(refused(run(&xdp_ctx(p, 13), &f[..13])), EINVAL, "13 bytes");

        // ingress_ifindex 0: the run happens on the loopback device.
        run(&xdp_ctx(0, n), &f)
            .unwrap()
            .ret(XDP_PASS)
            .nothing_counted();

        // `data` > 0: the first bytes are metadata, the frame follows.
        let mut with_meta = vec![0xee; 4];
        with_meta.extend_from_slice(&f);
        let mut c = xdp_ctx(p, with_meta.len());
        put_u32(&mut c, XDP_DATA, 4);
        run(&c, &with_meta)
            .unwrap()
            .ret(XDP_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .only(&[(0, rx_uc(len(&f)))]);

        // data_end < frame length: new in 6.18, a multi-buffer frame whose
        // linear part ends at data_end (the kernel does not check that the
        // program is frags-aware). With the header linear, it is switched,
        // but rx_bytes counts only the linear part.
        let mut c = xdp_ctx(p, n);
        put_u32(&mut c, XDP_DATA_END, 14);
        run(&c, &f)
            .unwrap()
            .ret(XDP_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .only(&[(0, rx_uc(14))]);
        // With the header not linear, the program cannot read it: passed on.
        put_u32(&mut c, XDP_DATA_END, 8);
        run(&c, &f).unwrap().ret(XDP_PASS).nothing_counted();
    });
}

/// What this kernel (6.18) accepts in a tc test run's `struct __sk_buff`.
#[test]
fn tc_test_run_context_rules() {
    in_netns(|| {
        let mut lab = four_modes();
        let p = lab.parent();
        let f = udp_to(A, OUTSIDE);
        let mut run = |ctx: &[u8], f: &[u8]| {
            lab.try_tc_ctx(PROG_RX, ctx, f, 1)
                .map(|o| o.0)
                .map_err(|e| errno(&e))
        };
        let refused = |r: Result<Outcome, i32>| r.expect_err("refused");

        run(&skb_ctx(p, 0), &f).unwrap().ret(TC_ACT_REDIRECT);
        // Only mark, priority, ingress_ifindex, ifindex, cb, tstamp,
        // wire_len, gso_* and hwtstamp may be set: not len, and not data_end
        // (no non-linear skb test runs on this kernel).
        let mut c = skb_ctx(p, 0);
        put_u32(&mut c, SKB_LEN, f.len() as u32);
        assert_eq!(refused(run(&c, &f)), EINVAL, "len");
        let mut c = skb_ctx(p, 0);
        put_u32(&mut c, SKB_DATA_END, 14);
        assert_eq!(refused(run(&c, &f)), EINVAL, "data_end");
        assert_eq!(refused(run(&skb_ctx(9999, 0), &f)), ENODEV, "no device");
        assert_eq!(refused(run(&skb_ctx(p, 0), &f[..13])), EINVAL, "13 bytes");
        // The frame must fit one page with the skb's head and tail room:
        // 4096 - NET_SKB_PAD (64) - skb_shared_info (320) = 3712 bytes.
        let big = udp_to(A, OUTSIDE)
            .into_iter()
            .chain(std::iter::repeat_n(0, 3712 - f.len()))
            .collect::<Vec<_>>();
        run(&skb_ctx(p, 0), &big)
            .unwrap()
            .ret(TC_ACT_REDIRECT)
            .only(&[(0, rx_uc(3712))]);
        let mut bigger = big.clone();
        bigger.push(0);
        assert_eq!(refused(run(&skb_ctx(p, 0), &bigger)), EINVAL, "3713 bytes");

        // ifindex 0 (or 1) runs on the loopback device: not a parent.
        for i in [0, 1] {
            run(&skb_ctx(i, 0), &f)
                .unwrap()
                .ret(TC_ACT_UNSPEC)
                .verdicts(&[(RX, Verdict::NotOurs, 1)])
                .only(&[]);
        }
    });
}

// ---------------------------------------------------------------------------
// Events.

/// Drops beyond what the event ring holds, with nobody reading it: every
/// one is either in the ring or counted as lost, in its direction.
#[test]
fn events_the_ring_has_no_room_for_are_counted() {
    in_netns(|| {
        let mut lab = Scenario::new()
            .parent()
            .endpoint_with(MODE_BRIDGE, A, EP_F_SPOOFCHK)
            .endpoint(MODE_BRIDGE, B)
            .build();
        let h = lab.eps[0].host_ifindex;
        // Twice what 256 KiB holds of 48-byte records.
        let repeat = 2 * attach_common::EVENTS_BYTES / 48;
        let lost_before = lab.dp.events_lost().unwrap();
        let (out, _) = lab
            .try_tc(PROG_TX, h, 0, &udp_to(B, UNKNOWN), repeat)
            .expect("test run with repeat");
        out.ret(TC_ACT_SHOT)
            .verdicts(&[(Direction::Tx, Verdict::DropSpoofed, u64::from(repeat))]);
        let lost = lab.dp.events_lost().unwrap() - lost_before;
        let mut ring = lab.dp.events().unwrap();
        let mut kept = 0u64;
        while let Some(item) = ring.next() {
            assert_eq!(item.len(), std::mem::size_of::<attach_common::Event>());
            kept += 1;
        }
        assert!(kept > 0 && lost > 0, "kept {kept}, lost {lost}");
        assert_eq!(kept + lost, u64::from(repeat), "kept {kept}, lost {lost}");
    });
}

// ---------------------------------------------------------------------------
// Cost, and the harness itself.

#[test]
fn rx_unicast_cost_per_packet() {
    in_netns(|| {
        let mut lab = four_modes();
        let p = lab.parent();
        let f = udp_to(B, OUTSIDE);
        let repeat = 100_000;
        let (out, per_run) = lab
            .try_tc(PROG_RX, p, 0, &f, repeat)
            .expect("test run with repeat");
        let r = u64::from(repeat);
        out.ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, r)])
            .only(&[(
                1,
                EndpointStats {
                    rx_packets: r,
                    rx_bytes: r * len(&f),
                    ..Default::default()
                },
            )]);
        // The kernel reports the mean time of one run.
        println!(
            "attach_rx unicast redirect: {} ns/packet over {repeat} runs",
            per_run.as_nanos()
        );
        let f = arp_request(OUTSIDE, ip4(1), ip4(2));
        let floods = 10_000;
        let (out, per_flood) = lab
            .try_tc(PROG_RX, p, 0, &f, floods)
            .expect("flood test run with repeat");
        // Every run flooded the broadcast to each of the four endpoints.
        let r = u64::from(floods);
        let each = EndpointStats {
            rx_packets: r,
            rx_bytes: r * len(&f),
            rx_broadcast: r,
            ..Default::default()
        };
        out.ret(TC_ACT_UNSPEC)
            .verdicts(&[(RX, Verdict::Flood, r)])
            .only(&[(0, each), (1, each), (2, each), (3, each)]);
        println!(
            "attach_rx broadcast to 4 endpoints (4 clones, really sent): {} ns/packet",
            per_flood.as_nanos()
        );
    });
}

/// The harness sees where a redirect really goes: with a wrong ifindex in
/// A's map value (B's host veth), the counters keyed by that value say A,
/// and `arrives_at` finds the frame in B's container (tc and XDP).
#[test]
fn a_wrong_redirect_target_is_seen() {
    in_netns(|| {
        let mut lab = four_modes();
        let mut wrong = lab.eps[0];
        wrong.host_ifindex = lab.eps[1].host_ifindex;
        lab.dp.put_endpoint(&wrong).expect("put_endpoint");
        let f = udp_to(A, OUTSIDE);
        let tc = lab.rx(&f);
        tc.ret(TC_ACT_REDIRECT)
            .verdicts(&[(RX, Verdict::ToEndpoint, 1)])
            .only(&[(0, rx_uc(len(&f)))]);
        let xdp = lab.xdp(&f);
        xdp.ret(XDP_REDIRECT).only(&[(0, rx_uc(len(&f)))]);
        for out in [tc, xdp] {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                out.arrives_at(&mut lab, Target::Endpoint(0));
            }));
            let msg = r.expect_err("arrives_at must fail");
            let msg = msg
                .downcast_ref::<String>()
                .expect("a formatted panic message");
            assert!(
                msg.contains("arrived: Endpoint(1) (h2peer)"),
                "{}: {msg}",
                out.what
            );
        }
    });
}

#[test]
fn pin_dirs_are_removed_even_on_panic() {
    let (tx, rx) = std::sync::mpsc::channel();
    let r = std::panic::catch_unwind(move || {
        in_netns(move || {
            let lab = Scenario::new().parent().endpoint(MODE_BRIDGE, A).build();
            let dir = lab.dp.dir().to_owned();
            assert!(dir.join("attach_eps").exists(), "maps pinned in {dir:?}");
            tx.send(dir).unwrap();
            panic!("deliberate");
        })
    });
    assert!(r.is_err());
    let dir = rx.recv().unwrap();
    assert!(!dir.exists(), "{dir:?} left behind");
}
