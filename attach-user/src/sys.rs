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

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq`: an interface name and the request's 24-byte union.
#[repr(C)]
struct IfReq<U> {
    name: [u8; libc::IFNAMSIZ],
    ifru: U,
}

/// ioctl `op` on interface `ifname` (in the calling thread's namespace)
/// with the union `ifru`; returns the union as the kernel left it.
fn ifreq_ioctl<U>(ifname: &str, op: libc::c_ulong, ifru: U) -> io::Result<U> {
    let sock =
        std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"))?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        ifru,
    };
    let n = ifname.len().min(libc::IFNAMSIZ - 1);
    req.name[..n].copy_from_slice(&ifname.as_bytes()[..n]);
    // SAFETY: valid socket; `req` is the ifreq `op` expects.
    if unsafe { libc::ioctl(sock.as_raw_fd(), op, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(req.ifru)
}

/// The ifreq union of SIOCETHTOOL: a pointer to the command.
#[repr(C)]
struct EthtoolPtr {
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ethtool(ifname: &str, v: &mut EthtoolValue) -> io::Result<()> {
    let ptr = EthtoolPtr {
        data: (v as *mut EthtoolValue).cast(),
        _pad: [0; 16],
    };
    ifreq_ioctl(ifname, SIOCETHTOOL, ptr).map(drop)
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
    let current = ifreq_ioctl(ifname, SIOCGIFHWADDR, zero)?;
    ifreq_ioctl(ifname, SIOCSIFHWADDR, current).map(drop)
}

/// Turns generic receive offload on or off (`ethtool -K IF gro on|off`).
pub fn set_gro(ifname: &str, on: bool) -> Result<()> {
    let mut v = EthtoolValue {
        cmd: ETHTOOL_SGRO,
        data: on as u32,
    };
    ethtool(ifname, &mut v).map_err(|e| {
        Error::system(format!(
            "cannot set GRO {} on {ifname}: {e}",
            if on { "on" } else { "off" }
        ))
    })
}

pub fn gro(ifname: &str) -> Result<bool> {
    let mut v = EthtoolValue {
        cmd: ETHTOOL_GGRO,
        data: 0,
    };
    ethtool(ifname, &mut v)
        .map_err(|e| Error::system(format!("cannot read GRO of {ifname}: {e}")))?;
    Ok(v.data != 0)
}

/// `BPF_MAP_UPDATE_BATCH`'s part of `union bpf_attr`.
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
