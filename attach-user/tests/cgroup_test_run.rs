//! The `host` kind's cgroup_skb counters under BPF_PROG_TEST_RUN: each
//! loaded instance counts into the slot it was loaded with, ingress as `rx`,
//! egress as `tx`, lengths from the network header, and never drops.
//!
//! Needs root and bpffs on /sys/fs/bpf; runs in a network namespace of its
//! own, with its own pinned maps, removed afterwards.

use std::path::PathBuf;

use attach::datapath::{Datapath, PROG_CG_EG, PROG_CG_IN};
use attach_common::CgroupStats;
use aya::programs::{TestRun, TestRunOptions};

/// cgroup_skb: let the packet through.
const ALLOW: u32 = 1;
const ETH_HLEN: u64 = 14;

/// An Ethernet frame carrying an IPv4/UDP packet of `len` bytes in all.
fn frame(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    let ip_len = (len - 14) as u16;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f
}

struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        if let Err(e) = Datapath::remove_pins(&self.0) {
            eprintln!("cleanup: {e}");
        }
    }
}

fn in_netns(f: impl FnOnce() + Send + 'static) {
    let t = std::thread::spawn(move || {
        // SAFETY: plain syscall; changes only this thread's namespace.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        f()
    });
    if let Err(p) = t.join() {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn each_instance_counts_into_its_own_slot() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "needs root");
    in_netns(|| {
        let dir = PathBuf::from(format!("/sys/fs/bpf/attach-test-cg-{}", std::process::id()));
        let _pins = Pins(dir.clone());
        let mut five = Datapath::open_counting(&dir, 5).unwrap();
        five.zero_cgroup_stats(5).unwrap();
        five.zero_cgroup_stats(7).unwrap();
        let mut seven = Datapath::open_counting(&dir, 7).unwrap();
        let run = |dp: &mut Datapath, prog: &str, f: &[u8], repeat: u32| {
            dp.cgroup_program(prog)
                .unwrap()
                .test_run(TestRunOptions {
                    data_in: Some(f),
                    repeat,
                    ..Default::default()
                })
                .unwrap()
                .return_value
        };
        let (small, big) = (frame(98), frame(1514));
        assert_eq!(run(&mut five, PROG_CG_IN, &small, 3), ALLOW);
        assert_eq!(run(&mut five, PROG_CG_EG, &big, 2), ALLOW);
        assert_eq!(run(&mut seven, PROG_CG_EG, &small, 1), ALLOW);
        let s5 = five.cgroup_stats(5).unwrap();
        let s7 = five.cgroup_stats(7).unwrap();
        assert_eq!(
            s5,
            CgroupStats {
                rx_packets: 3,
                rx_bytes: 3 * (98 - ETH_HLEN),
                tx_packets: 2,
                tx_bytes: 2 * (1514 - ETH_HLEN),
            }
        );
        assert_eq!(
            s7,
            CgroupStats {
                tx_packets: 1,
                tx_bytes: 98 - ETH_HLEN,
                ..Default::default()
            }
        );
        // Slots nobody loaded stay at zero.
        assert_eq!(five.cgroup_stats(0).unwrap(), CgroupStats::default());
    });
}
