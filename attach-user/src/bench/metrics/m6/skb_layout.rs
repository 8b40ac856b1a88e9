//! Where this kernel keeps the `__sk_buff` fields a tc program reads, for
//! the emulated execution of tc paths (`emulate`). The verifier rewrites a
//! program's `__sk_buff` loads into loads from the `sk_buff` itself (and
//! from the device it points to), at offsets of the kernel's build; they
//! are learned here from the kernel's own rewrite: a one-load program per
//! field is loaded and its translated dump read back.

use std::{
    ffi::CString,
    os::fd::{FromRawFd as _, OwnedFd},
};

use super::graph::xlated_dump;

/// What a load from the context reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Len,
    Mark,
    Data,
    DataEnd,
    /// The device the frame is on (its ifindex is read through it).
    Dev,
}

/// Where the fields lie: (offset, load size, field) in the `sk_buff`, and
/// the ifindex's offset in the device.
#[derive(Clone, Debug, Default)]
pub struct SkbLayout {
    pub fields: Vec<(i64, usize, Field)>,
    pub dev_ifindex: Option<i64>,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;

fn bpf(cmd: libc::c_long, attr: &mut [u8]) -> std::io::Result<i64> {
    // SAFETY: `attr` is a zeroed bpf_attr prefix for `cmd` whose pointers
    // outlive the call; the kernel reads at most `attr.len()` bytes.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// One instruction's 8 bytes.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = dst | (src << 4);
    b[2..4].copy_from_slice(&off.to_le_bytes());
    b[4..8].copy_from_slice(&imm.to_le_bytes());
    b
}

/// The translated loads of `r2 = *(u32 *)(r1 + field)` in a tc program:
/// (offset, size, destination, base register) of each.
fn rewrite_of(field: i16) -> Result<Vec<(i64, usize, u8, u8)>, String> {
    let prog: Vec<u8> = [
        insn(0x61, 2, 1, field, 0),
        insn(0xb7, 0, 0, 0, 0),
        insn(0x95, 0, 0, 0, 0),
    ]
    .concat();
    let license = CString::new("GPL").expect("no NUL");
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_SCHED_CLS.to_ne_bytes());
    attr[4..8].copy_from_slice(&3u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(prog.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    let fd = bpf(BPF_PROG_LOAD, &mut attr)
        .map_err(|e| format!("loading a probe of __sk_buff field {field}: {e}"))?;
    // SAFETY: a file descriptor the kernel just gave us, owned here only.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut info = [0u8; 256];
    let mut attr = [0u8; 16];
    attr[0..4].copy_from_slice(&(std::os::fd::AsRawFd::as_raw_fd(&fd) as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(info.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map_err(|e| format!("the probe's id: {e}"))?;
    let id = u32::from_ne_bytes(info[4..8].try_into().expect("4 bytes"));
    let dump = xlated_dump(id).map_err(|e| e.to_string())?;
    drop(fd);
    Ok(dump
        .iter()
        .filter(|x| x.code & 0x07 == 0x01 && x.code & 0xe0 == 0x60)
        .map(|x| {
            let size = match x.code & 0x18 {
                0x00 => 4,
                0x08 => 2,
                0x10 => 1,
                _ => 8,
            };
            (i64::from(x.off), size, x.dst, x.src)
        })
        .collect())
}

/// This kernel's layout of the fields M6's tc paths read.
pub fn learn() -> Result<SkbLayout, String> {
    let mut l = SkbLayout::default();
    // `__sk_buff` offsets (the UAPI's, fixed).
    for (at, field) in [
        (0, Field::Len),
        (8, Field::Mark),
        (76, Field::Data),
        (80, Field::DataEnd),
    ] {
        match rewrite_of(at)?.as_slice() {
            [(off, size, _, 1)] => l.fields.push((*off, *size, field)),
            other => return Err(format!("__sk_buff field {at} rewritten as {other:?}")),
        }
    }
    // ifindex: the device, then its ifindex.
    match rewrite_of(40)?.as_slice() {
        [(dev, 8, d, 1), (ifindex, 4, _, s)] if s == d => {
            l.fields.push((*dev, 8, Field::Dev));
            l.dev_ifindex = Some(*ifindex);
        }
        other => return Err(format!("__sk_buff ifindex rewritten as {other:?}")),
    }
    Ok(l)
}
