//! Small kernel knobs with no netlink message (sysctls and interface ioctls,
//! both acting in the calling thread's network namespace), and the one bpf
//! command aya does not wrap.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

use crate::error::{Error, Result};

/// Writes `/proc/sys/net/...` (per-namespace: resolved against the calling
/// thread's namespace when opened).
pub fn sysctl_set(key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value)
        .map_err(|e| Error::system(format!("cannot set {key}={value}: {e}")))
}

pub fn sysctl_get(key: &str) -> Result<String> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    Ok(std::fs::read_to_string(&path)
        .map_err(|e| Error::system(format!("cannot read {key}: {e}")))?
        .trim()
        .to_owned())
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;

/// `struct ifreq`: an interface name and the request's 24-byte union.
#[repr(C)]
struct IfReq<U> {
    name: [u8; libc::IFNAMSIZ],
    ifru: U,
}

/// ioctl `op` on interface `ifname` (in the calling thread's namespace)
/// with the union `ifru`; returns the union as the kernel left it and the
/// ioctl's value (some commands answer with flags).
fn ifreq_ioctl<U>(ifname: &str, op: libc::c_ulong, ifru: U) -> io::Result<(U, i32)> {
    let sock =
        std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"))?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        ifru,
    };
    let n = ifname.len().min(libc::IFNAMSIZ - 1);
    req.name[..n].copy_from_slice(&ifname.as_bytes()[..n]);
    // SAFETY: valid socket; `req` is the ifreq `op` expects.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), op, &mut req) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((req.ifru, ret))
}

/// The ifreq union of SIOCETHTOOL: a pointer to the command.
#[repr(C)]
struct EthtoolPtr {
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// SIOCETHTOOL with a command of any shape: `cmd` is a buffer of u32
/// words starting with the command number, as long as the command says.
/// Returns the ioctl's value.
fn ethtool(ifname: &str, cmd: &mut [u32]) -> io::Result<i32> {
    let ptr = EthtoolPtr {
        data: cmd.as_mut_ptr().cast(),
        _pad: [0; 16],
    };
    ifreq_ioctl(ifname, SIOCETHTOOL, ptr).map(|(_, ret)| ret)
}

const SIOCGIFHWADDR: libc::c_ulong = 0x8927;
const SIOCSIFHWADDR: libc::c_ulong = 0x8924;

/// The ifreq union of SIOC[GS]IFHWADDR: the hardware address.
#[repr(C)]
struct HwAddr {
    addr: libc::sockaddr,
    _pad: [u8; 8],
}

/// Sets the interface's MAC to the one it has (SIOCGIFHWADDR, then
/// SIOCSIFHWADDR): the kernel notifies an address change all the same.
pub fn renotify_mac(ifname: &str) -> io::Result<()> {
    // SAFETY: plain data, valid when zero.
    let zero: HwAddr = unsafe { std::mem::zeroed() };
    let (current, _) = ifreq_ioctl(ifname, SIOCGIFHWADDR, zero)?;
    ifreq_ioctl(ifname, SIOCSIFHWADDR, current).map(drop)
}

/// Turns generic receive offload on or off (`ethtool -K IF gro on|off`).
pub fn set_gro(ifname: &str, on: bool) -> Result<()> {
    ethtool(ifname, &mut [ETHTOOL_SGRO, on as u32])
        .map(drop)
        .map_err(|e| {
            Error::system(format!(
                "cannot set GRO {} on {ifname}: {e}",
                if on { "on" } else { "off" }
            ))
        })
}

pub fn gro(ifname: &str) -> Result<bool> {
    let mut v = [ETHTOOL_GGRO, 0];
    ethtool(ifname, &mut v)
        .map_err(|e| Error::system(format!("cannot read GRO of {ifname}: {e}")))?;
    Ok(v[1] != 0)
}

const ETHTOOL_GLINK: u32 = 0x0a;

/// Whether `ifname` has a carrier (`ethtool IF`: "Link detected"). Asking
/// also runs the kernel's pending link-state work for the device at once
/// (`ethtool_op_get_link` syncs the link watch): a veth whose carrier came
/// on because its peer went up has no transmit queue until that work has
/// run, and what it sends meanwhile is dropped.
pub fn link_detected(ifname: &str) -> Result<bool> {
    let mut v = [ETHTOOL_GLINK, 0];
    ethtool(ifname, &mut v)
        .map_err(|e| Error::system(format!("cannot read the link state of {ifname}: {e}")))?;
    Ok(v[1] != 0)
}

const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;
/// ETHTOOL_SFEATURES' positive answer: a bit asked for cannot change.
const ETHTOOL_F_UNSUPPORTED: i32 = 1;

/// Where a device feature sits in the kernel's feature bitmap.
struct FeatureBit {
    /// Its 32-bit block, and its mask in that block.
    block: usize,
    mask: u32,
    /// Blocks in the bitmap.
    blocks: usize,
}

/// The bit of the device feature called `name` (`ethtool -k` names, e.g.
/// `rx-gro-list`).
fn feature_bit(ifname: &str, name: &str) -> io::Result<FeatureBit> {
    // struct ethtool_sset_info: cmd, reserved, u64 mask, data[1].
    let mut info = [ETHTOOL_GSSET_INFO, 0, 1 << ETH_SS_FEATURES, 0, 0];
    ethtool(ifname, &mut info)?;
    let count = info[4] as usize;
    // struct ethtool_gstrings: cmd, string_set, len, then the strings.
    let mut strings = vec![0u32; 3 + count * ETH_GSTRING_LEN / 4];
    strings[..3].copy_from_slice(&[ETHTOOL_GSTRINGS, ETH_SS_FEATURES, count as u32]);
    ethtool(ifname, &mut strings)?;
    let bytes: Vec<u8> = strings[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
    let bit = bytes
        .chunks(ETH_GSTRING_LEN)
        .position(|s| s.split(|&b| b == 0).next() == Some(name.as_bytes()))
        .ok_or_else(|| io::Error::other(format!("this kernel has no feature {name}")))?;
    Ok(FeatureBit {
        block: bit / 32,
        mask: 1 << (bit % 32),
        blocks: count.div_ceil(32),
    })
}

/// Whether the feature at `f` is active on `ifname`.
fn feature_active(ifname: &str, f: &FeatureBit) -> io::Result<bool> {
    // struct ethtool_gfeatures: cmd, size, then per block available,
    // requested, active, never_changed.
    let mut g = vec![0u32; 2 + 4 * f.blocks];
    g[..2].copy_from_slice(&[ETHTOOL_GFEATURES, f.blocks as u32]);
    ethtool(ifname, &mut g)?;
    Ok(g[2 + 4 * f.block + 2] & f.mask != 0)
}

/// Whether the device feature `name` is active (`ethtool -k IF`).
pub fn feature(ifname: &str, name: &str) -> Result<bool> {
    feature_bit(ifname, name)
        .and_then(|f| feature_active(ifname, &f))
        .map_err(|e| Error::system(format!("cannot read {name} of {ifname}: {e}")))
}

/// Turns the device feature `name` on or off (`ethtool -K IF name on|off`),
/// and fails unless it then is.
pub fn set_feature(ifname: &str, name: &str, on: bool) -> Result<()> {
    let state = if on { "on" } else { "off" };
    let set = || -> io::Result<bool> {
        let f = feature_bit(ifname, name)?;
        // struct ethtool_sfeatures: cmd, size, then per block valid, requested.
        let mut s = vec![0u32; 2 + 2 * f.blocks];
        s[..2].copy_from_slice(&[ETHTOOL_SFEATURES, f.blocks as u32]);
        s[2 + 2 * f.block] = f.mask;
        s[2 + 2 * f.block + 1] = if on { f.mask } else { 0 };
        if ethtool(ifname, &mut s)? & ETHTOOL_F_UNSUPPORTED != 0 {
            return Err(io::Error::other("the device cannot change it"));
        }
        feature_active(ifname, &f)
    };
    let now =
        set().map_err(|e| Error::system(format!("{ifname}: cannot turn {name} {state}: {e}")))?;
    if now != on {
        return Err(Error::system(format!(
            "{ifname}: {name} stayed {} after turning it {state}",
            if on { "off" } else { "on" }
        )));
    }
    Ok(())
}

/// `BPF_MAP_*_BATCH`'s part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// Sets `keys[i]` to `values[i]` in map `fd` with one syscall. The kernel
/// stops at the first failure: an error may leave the first entries written.
pub fn bpf_update_batch<K: Copy, V: Copy>(
    fd: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "a value per key");
    if keys.is_empty() {
        return Ok(());
    }
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: keys.len() as u32,
        map_fd: fd.as_raw_fd() as u32,
        ..Default::default()
    };
    // SAFETY: `attr` points at `count` keys and values of the map's sizes
    // (the caller's types are the map's), all alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_BATCH,
            &mut attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Reads the first `keys.len()` entries of array map `fd` with one
/// syscall: their keys into `keys`, their values (each `value_len` bytes,
/// per CPU for a per-CPU map) into `values`. Returns how many were read.
pub fn bpf_lookup_batch(
    fd: BorrowedFd<'_>,
    keys: &mut [u32],
    values: &mut [u8],
    value_len: usize,
) -> io::Result<usize> {
    assert!(
        values.len() >= keys.len() * value_len,
        "room for every value"
    );
    let mut next = 0u32;
    let mut attr = BatchAttr {
        out_batch: &mut next as *mut u32 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: keys.len() as u32,
        map_fd: fd.as_raw_fd() as u32,
        ..Default::default()
    };
    // SAFETY: `attr` points at room for `count` keys and values of the
    // map's sizes and an array map's 4-byte batch token, alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_BATCH,
            &mut attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>() as u32,
        )
    };
    // ENOENT: the map's end was reached; `count` says how far.
    if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT) {
        return Err(io::Error::last_os_error());
    }
    Ok(attr.count as usize)
}

/// Keeps a short-lived command's large allocations on the heap, and the
/// heap from being trimmed: for a process that reads the node's records
/// once and exits (`add`, `del`, the CNI plugin), not for a daemon.
///
/// glibc serves an allocation of 128 KiB and more (the records index, the
/// vector of a thousand records, their sort buffer) with an mmap of its
/// own, faulted in page by page and unmapped when freed; the next one is
/// faulted in again. On the heap, freed memory is reused. With a thousand
/// attachments on the node this took 805 page faults instead of 976 for
/// `attach list` and about a millisecond of CPU off an `add` (of 12-13).
pub fn short_lived_heap() {
    // SAFETY: mallopt only sets allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread in a network namespace of its own (gone with
    /// the thread) holding a veth pair `t0`/`t1`. Needs root.
    fn with_veth(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(move || {
            // SAFETY: plain syscall; only this thread moves.
            assert_eq!(
                unsafe { libc::unshare(libc::CLONE_NEWNET) },
                0,
                "needs root"
            );
            // A child forked from this thread starts in its namespace.
            let ok = std::process::Command::new("ip")
                .args(["link", "add", "t0", "type", "veth", "peer", "name", "t1"])
                .status()
                .expect("ip");
            assert!(ok.success());
            f();
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn features_are_read_and_set_by_name() {
        with_veth(|| {
            assert!(!feature("t0", "rx-gro-list").unwrap());
            set_feature("t0", "rx-gro-list", true).unwrap();
            assert!(feature("t0", "rx-gro-list").unwrap());
            // Its neighbours in the bitmap are left as they were.
            assert!(!feature("t1", "rx-gro-list").unwrap());
            assert!(feature("t0", "tx-checksum-ip-generic").unwrap());
            set_feature("t0", "rx-gro-list", false).unwrap();
            assert!(!feature("t0", "rx-gro-list").unwrap());
        });
    }

    #[test]
    fn bad_feature_requests_say_what_failed() {
        with_veth(|| {
            let e = set_feature("t0", "no-such-feature", true).unwrap_err();
            assert!(e.to_string().contains("no feature no-such-feature"), "{e}");
            // Fixed on a veth: the kernel refuses to change it.
            let e = set_feature("t0", "loopback", true).unwrap_err();
            assert!(
                e.to_string()
                    .contains("t0: cannot turn loopback on: the device cannot change it"),
                "{e}"
            );
            let e = feature("nope0", "rx-gro-list").unwrap_err();
            assert!(
                e.to_string().contains("cannot read rx-gro-list of nope0"),
                "{e}"
            );
        });
    }

    #[test]
    fn gro_is_read_and_set() {
        with_veth(|| {
            set_gro("t0", false).unwrap();
            assert!(!gro("t0").unwrap());
            set_gro("t0", true).unwrap();
            assert!(gro("t0").unwrap());
        });
    }

    /// The ifreq union of SIOC[GS]IFFLAGS, padded to the union's 24 bytes.
    #[repr(C)]
    struct Flags {
        flags: libc::c_short,
        _pad: [u8; 22],
    }

    fn flags(ifname: &str) -> libc::c_int {
        let none = Flags {
            flags: 0,
            _pad: [0; 22],
        };
        let (f, _) = ifreq_ioctl(ifname, libc::SIOCGIFFLAGS, none).unwrap();
        libc::c_int::from(f.flags) & 0xffff
    }

    fn set_up(ifname: &str, up: bool) {
        let f = if up {
            flags(ifname) | libc::IFF_UP
        } else {
            flags(ifname) & !libc::IFF_UP
        };
        let f = Flags {
            flags: f as libc::c_short,
            _pad: [0; 22],
        };
        ifreq_ioctl(ifname, libc::SIOCSIFFLAGS, f).unwrap();
    }

    #[test]
    fn asking_for_the_link_state_settles_a_peer_that_just_got_its_carrier() {
        with_veth(|| {
            set_up("t1", true);
            // The kernel's work usually runs within microseconds: many
            // tries, so that one would catch it still pending.
            for i in 0..50 {
                set_up("t0", false);
                // t1's carrier comes on now, its operational state (and
                // transmit queue) only in the kernel's deferred work...
                set_up("t0", true);
                assert!(link_detected("t1").unwrap());
                // ...which asking ran at once.
                assert_ne!(
                    flags("t1") & libc::IFF_RUNNING,
                    0,
                    "try {i}: t1 not running"
                );
            }
            let e = link_detected("nope0").unwrap_err();
            assert!(e.to_string().contains("link state of nope0"), "{e}");
        });
    }
}
