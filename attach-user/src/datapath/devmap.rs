//! The XDP device map (`attach_devs`, a DEVMAP_HASH from port ifindex to
//! `struct bpf_devmap_val`) through the bpf syscall itself. aya's typed
//! `DevMapHash` takes the value's size from a probe of its own, which says
//! 4 bytes on some kernels (5.10) where the map the object makes holds 8,
//! and then refuses the map ("invalid value size 4, expected 8"). The
//! kernel reads and writes as many bytes as the map holds: the first four
//! are the device's ifindex either way.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::maps::{Map, MapData};

use crate::error::{Error, Result};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;

/// `union bpf_attr` for the element commands.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    /// The value, or the next key for `BPF_MAP_GET_NEXT_KEY`.
    value: u64,
    flags: u64,
}

/// `struct bpf_devmap_val`: the device, and no program of its own.
#[repr(C)]
#[derive(Default)]
struct DevVal {
    ifindex: u32,
    prog: u32,
}

fn bpf(cmd: libc::c_long, attr: &mut ElemAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid bpf_attr of its size for these commands;
    // the pointers in it outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut ElemAttr,
            std::mem::size_of::<ElemAttr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn data(map: &Map) -> Result<&MapData> {
    match map {
        Map::DevMapHash(d) => Ok(d),
        _ => Err(Error::system("attach_devs is not a device map")),
    }
}

fn attr(map: &MapData, key: &u32) -> ElemAttr {
    ElemAttr {
        map_fd: map.fd().as_fd().as_raw_fd() as u32,
        key: key as *const u32 as u64,
        ..Default::default()
    }
}

/// Makes `key` redirect to device `ifindex`.
pub fn put(map: &Map, key: u32, ifindex: u32) -> Result<()> {
    let value = DevVal { ifindex, prog: 0 };
    let mut a = attr(data(map)?, &key);
    a.value = &value as *const DevVal as u64;
    bpf(BPF_MAP_UPDATE_ELEM, &mut a)
        .map_err(|e| Error::system(format!("device map entry {key}: {e}")))
}

/// The device `key` redirects to, if it has an entry.
pub fn get(map: &Map, key: u32) -> Result<Option<u32>> {
    let mut value = DevVal::default();
    let mut a = attr(data(map)?, &key);
    a.value = &mut value as *mut DevVal as u64;
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut a) {
        Ok(()) => Ok(Some(value.ifindex)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(Error::system(format!("device map entry {key}: {e}"))),
    }
}

/// Removes `key`'s entry; a missing one is no error.
pub fn remove(map: &Map, key: u32) -> Result<()> {
    let mut a = attr(data(map)?, &key);
    match bpf(BPF_MAP_DELETE_ELEM, &mut a) {
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(Error::system(format!(
            "removing device map entry {key}: {e}"
        ))),
        _ => Ok(()),
    }
}

/// Every key with an entry.
pub fn keys(map: &Map) -> Result<Vec<u32>> {
    let fd = data(map)?.fd().as_fd().as_raw_fd() as u32;
    let mut out = Vec::new();
    let mut prev: Option<u32> = None;
    loop {
        let mut next = 0u32;
        let mut a = ElemAttr {
            map_fd: fd,
            // None: the first key.
            key: prev.as_ref().map_or(0, |k| k as *const u32 as u64),
            value: &mut next as *mut u32 as u64,
            ..Default::default()
        };
        match bpf(BPF_MAP_GET_NEXT_KEY, &mut a) {
            Ok(()) => {
                out.push(next);
                prev = Some(next);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(Error::system(format!("listing the device map: {e}"))),
        }
    }
}
