//! Small kernel knobs with no netlink message: sysctls and ethtool ioctls.
//! Both act in the calling thread's network namespace.

use std::{io, os::fd::AsRawFd};

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

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ethtool(ifname: &str, v: &mut EthtoolValue) -> io::Result<()> {
    let sock =
        std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"))?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: (v as *mut EthtoolValue).cast(),
        _pad: [0; 16],
    };
    let n = ifname.len().min(libc::IFNAMSIZ - 1);
    req.name[..n].copy_from_slice(&ifname.as_bytes()[..n]);
    // SAFETY: valid socket, request struct and payload for SIOCETHTOOL.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
