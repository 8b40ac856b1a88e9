//! The maps an emulated execution (`emulate`) reads: each element as the
//! kernel holds it, looked up by the map's id through the bpf syscall when
//! first read, then kept (with the emulated program's writes) in this copy.

use std::{
    collections::HashMap,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::maps::{MapInfo, MapType};

/// The maps a program reads, as the kernel holds them, read on demand
/// (and written by the emulated program in this copy only).
#[derive(Default)]
pub(super) struct Maps {
    pub info: HashMap<u32, (MapType, u32, u32)>,
    /// The offset of an array's first element in the map (learned from the
    /// inlined lookup's `rX = map[id:N]; rX += K`).
    pub base: HashMap<u32, i64>,
    pub elems: HashMap<(u32, u32), Vec<u8>>,
    pub found: Vec<Vec<u8>>,
}

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;

#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

impl Maps {
    pub fn info(&mut self, id: u32) -> Result<(MapType, u32, u32), String> {
        if let Some(i) = self.info.get(&id) {
            return Ok(*i);
        }
        let m = MapInfo::from_id(id).map_err(|e| format!("map {id}: {e}"))?;
        let t = m.map_type().map_err(|e| format!("map {id}: {e}"))?;
        let i = (t, m.key_size(), m.value_size());
        self.info.insert(id, i);
        Ok(i)
    }

    /// The kernel's value of `key` in map `id` (this CPU's slot of a
    /// per-CPU map is the first; none of the programs' branches depends on
    /// a counter), `None` if it has no entry.
    pub fn lookup(&mut self, id: u32, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let (t, _, value_size) = self.info(id)?;
        let m = MapInfo::from_id(id).map_err(|e| format!("map {id}: {e}"))?;
        let fd = m.fd().map_err(|e| format!("map {id}: {e}"))?;
        let per_cpu = matches!(t, MapType::PerCpuArray | MapType::PerCpuHash);
        let cpus = if per_cpu {
            std::thread::available_parallelism().map_or(1, |n| n.get()) * 4 + 64
        } else {
            1
        };
        let mut value = vec![0u8; (value_size as usize).next_multiple_of(8) * cpus];
        let mut a = ElemAttr {
            map_fd: fd.as_fd().as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value: value.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: a valid bpf_attr for BPF_MAP_LOOKUP_ELEM; key and value
        // outlive the call and the value buffer holds every CPU's slot of
        // the possible CPUs (fewer than the buffer's).
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_ELEM,
                &mut a as *mut ElemAttr,
                std::mem::size_of::<ElemAttr>(),
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOENT) => Ok(None),
                _ => Err(format!("map {id}: lookup: {e}")),
            };
        }
        value.truncate(value_size as usize);
        Ok(Some(value))
    }

    pub fn elem(&mut self, id: u32, index: u32) -> Result<&mut Vec<u8>, String> {
        if !self.elems.contains_key(&(id, index)) {
            let v = self
                .lookup(id, &index.to_ne_bytes())?
                .ok_or_else(|| format!("map {id} has no element {index}"))?;
            self.elems.insert((id, index), v);
        }
        Ok(self.elems.get_mut(&(id, index)).expect("inserted"))
    }
}
