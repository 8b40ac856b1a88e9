//! M6's cross-check of its instruction bound: one execution of an XDP or
//! tc program's translated instructions (the dump the bound is searched on),
//! on the path's own frame, with the maps as the kernel holds them, counting
//! the instructions it executes.
//!
//! No hardware counter or breakpoint reaches a JIT image on the kernels the
//! bench runs on (no PMU in a VM, no kernel breakpoints without kprobes),
//! so the count comes from stepping the translated program here: registers
//! are numbers or pointers into a region (the frame, the stack, the XDP
//! context, a map's element), every load from a map reads the element the
//! kernel holds, the devmap redirect looks its key up in the device map,
//! a hash map's lookup reads the kernel's element, and `bpf_redirect_peer`
//! returns TC_ACT_REDIRECT (a tc context's fields: `skb_layout`). Its verdict must be the
//! one `BPF_PROG_TEST_RUN` returned on the same frame (the caller checks),
//! and its count must lie within the searched bound: a path the search
//! missed, or an execution longer than the bound, shows as a count above it.
//! Anything else the program meets (another helper, a subprogram, an
//! instruction class the XDP programs do not use) ends the emulation with
//! the reason, never with a guess.

use std::collections::HashMap;

use aya::maps::MapType;

use super::{
    graph::Insn,
    kernel_maps::Maps,
    skb_layout::{Field, SkbLayout},
};

/// The program's context: an XDP frame's `xdp_buff`, or a tc frame's
/// `sk_buff` (its fields where this kernel keeps them).
#[derive(Clone, Copy, Debug)]
pub enum Context<'a> {
    Xdp,
    Tc(&'a SkbLayout),
}

/// What one emulated execution did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Execution {
    /// Translated instructions executed (a 64-bit immediate load counts 2,
    /// as in the program's translated size and in the bound).
    pub insns: u32,
    /// The program's return value.
    pub verdict: u32,
    /// The device map key a redirect asked for, if it made one.
    pub redirect_key: Option<u32>,
}

/// Where a pointer points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Region {
    Ctx,
    Packet,
    Stack,
    Rxq,
    Dev,
    /// A map itself (`map[id:N]`); an array's elements follow its header.
    Map(u32),
    /// One element of an array map (`id`, index), or a per-CPU array's
    /// element on this CPU.
    Elem(u32, u32),
    /// The value of a hash map's element, as found by a lookup (its
    /// number among the lookups made); at offset 0 is the value, before it
    /// the element's header and key.
    Found(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Val {
    Num(u64),
    Ptr(Region, i64),
}

struct Machine<'a> {
    reg: [Val; 11],
    stack: [u8; 512],
    /// Pointers spilled to the stack, by offset.
    spills: HashMap<i64, Val>,
    frame: Vec<u8>,
    ifindex: u32,
    ctx: Context<'a>,
    maps: &'a mut Maps,
}

fn bytes_to_u64(b: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    v[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(v)
}

impl Machine<'_> {
    fn load(&mut self, at: Val, off: i16, size: usize) -> Result<Val, String> {
        let Val::Ptr(region, base) = at else {
            return Err(format!("load through a number {at:?}"));
        };
        let o = base + i64::from(off);
        let slice = |buf: &[u8], o: i64| -> Result<u64, String> {
            let s = usize::try_from(o).map_err(|_| format!("{region:?}{o}: out of bounds"))?;
            buf.get(s..s + size)
                .map(bytes_to_u64)
                .ok_or_else(|| format!("{region:?}+{o} ({size} bytes): out of bounds"))
        };
        Ok(match region {
            Region::Ctx => {
                let end = Val::Ptr(Region::Packet, self.frame.len() as i64);
                match self.ctx {
                    Context::Xdp => match (o, size) {
                        (0, 8) | (16, 8) => Val::Ptr(Region::Packet, 0),
                        (8, 8) => end,
                        (32, 8) => Val::Ptr(Region::Rxq, 0),
                        _ => return Err(format!("xdp_buff field {o} ({size} bytes)")),
                    },
                    Context::Tc(l) => match l.fields.iter().find(|f| (f.0, f.1) == (o, size)) {
                        // As BPF_PROG_TEST_RUN's context: no mark.
                        Some((_, _, Field::Mark)) => Val::Num(0),
                        Some((_, _, Field::Len)) => Val::Num(self.frame.len() as u64),
                        Some((_, _, Field::Data)) => Val::Ptr(Region::Packet, 0),
                        Some((_, _, Field::DataEnd)) => end,
                        Some((_, _, Field::Dev)) => Val::Ptr(Region::Dev, 0),
                        None => return Err(format!("sk_buff field {o} ({size} bytes)")),
                    },
                }
            }
            Region::Rxq if o == 0 && size == 8 => Val::Ptr(Region::Dev, 0),
            // The only device field the context rewrites read is the
            // receiving device's ifindex (XDP's; tc's where it was learned).
            Region::Dev
                if size == 4
                    && match self.ctx {
                        Context::Xdp => true,
                        Context::Tc(l) => l.dev_ifindex == Some(o),
                    } =>
            {
                Val::Num(u64::from(self.ifindex))
            }
            Region::Packet => Val::Num(slice(&self.frame, o)?),
            Region::Stack => {
                if size == 8
                    && let Some(v) = self.spills.get(&o)
                {
                    return Ok(*v);
                }
                Val::Num(slice(&self.stack, o + 512)?)
            }
            Region::Map(id) => {
                let (t, _, value_size) = self.maps.info(id)?;
                let b = *self
                    .maps
                    .base
                    .get(&id)
                    .ok_or_else(|| format!("a load from map {id}'s header"))?;
                match t {
                    // An element of a per-CPU array: its pointer for this CPU.
                    MapType::PerCpuArray if size == 8 && (o - b) % 8 == 0 => {
                        Val::Ptr(Region::Elem(id, ((o - b) / 8) as u32), 0)
                    }
                    MapType::Array => {
                        let stride = i64::from(value_size.next_multiple_of(8));
                        let (i, f) = ((o - b) / stride, (o - b) % stride);
                        let e = self.maps.elem(id, i as u32)?;
                        Val::Num(slice(e, f)?)
                    }
                    _ => return Err(format!("a load from map {id} of type {t:?}")),
                }
            }
            Region::Elem(id, i) => {
                let e = self.maps.elem(id, i)?;
                Val::Num(slice(e, o)?)
            }
            Region::Found(n) => Val::Num(slice(&self.maps.found[n], o)?),
            Region::Rxq | Region::Dev => return Err(format!("{region:?}+{o} ({size} bytes)")),
        })
    }

    fn store(&mut self, at: Val, off: i16, size: usize, v: Val) -> Result<(), String> {
        let Val::Ptr(region, base) = at else {
            return Err(format!("store through a number {at:?}"));
        };
        let o = base + i64::from(off);
        let n = match v {
            Val::Num(n) => n,
            Val::Ptr(..) if region == Region::Stack && size == 8 => {
                self.spills.insert(o, v);
                return Ok(());
            }
            Val::Ptr(..) => return Err(format!("a pointer stored to {region:?}")),
        };
        if region == Region::Stack {
            self.spills.remove(&o);
        }
        let bytes = n.to_le_bytes();
        let buf: &mut [u8] = match region {
            Region::Stack => &mut self.stack,
            Region::Packet => &mut self.frame,
            Region::Elem(id, i) => self.maps.elem(id, i)?,
            Region::Found(n) => &mut self.maps.found[n],
            Region::Map(id) => {
                // An array element through the map's pointer.
                let (_, _, value_size) = self.maps.info(id)?;
                let b = *self.maps.base.get(&id).ok_or("a store to a map header")?;
                let stride = i64::from(value_size.next_multiple_of(8));
                let (i, f) = ((o - b) / stride, (o - b) % stride);
                let e = self.maps.elem(id, i as u32)?;
                let f = f as usize;
                e.get_mut(f..f + size)
                    .ok_or("a store out of an element")?
                    .copy_from_slice(&bytes[..size]);
                return Ok(());
            }
            _ => return Err(format!("a store to {region:?}")),
        };
        let s = if region == Region::Stack { o + 512 } else { o };
        let s = usize::try_from(s).map_err(|_| "a store out of bounds")?;
        buf.get_mut(s..s + size)
            .ok_or("a store out of bounds")?
            .copy_from_slice(&bytes[..size]);
        Ok(())
    }

    /// The helpers an XDP delivery calls: `bpf_redirect_map` on a device
    /// map and a hash map's lookup (the verifier calls their
    /// implementations directly). `then` is the instructions after the call.
    fn call(&mut self, x: &Insn, then: &[Insn], redirect: &mut Option<u32>) -> Result<(), String> {
        if x.disasm.contains("__htab_map_lookup_elem") {
            return self.htab_lookup(then);
        }
        if x.disasm.contains("call bpf_skb_load_bytes#") {
            // Copies frame bytes to the stack: 0, or -EFAULT past the end.
            let (Val::Num(off), to, Val::Num(len)) = (self.reg[2], self.reg[3], self.reg[4]) else {
                return Err(format!("bpf_skb_load_bytes with {:?}", &self.reg[1..5]));
            };
            let (off, len) = (off as usize, len as usize);
            let ok = off.checked_add(len).is_some_and(|e| e <= self.frame.len());
            if ok {
                for k in 0..len {
                    let b = Val::Num(u64::from(self.frame[off + k]));
                    self.store(to, k as i16, 1, b)?;
                }
            }
            self.reg[0] = Val::Num(if ok { 0 } else { (-14i64) as u64 });
            for r in 1..=5 {
                self.reg[r] = Val::Num(0);
            }
            return Ok(());
        }
        if x.disasm.contains("call bpf_redirect_peer#") || x.disasm.contains("call bpf_redirect#") {
            // TC_ACT_REDIRECT; where to is the ifindex asked for.
            let Val::Num(ifindex) = self.reg[1] else {
                return Err(format!("redirect to {:?}", self.reg[1]));
            };
            *redirect = Some(ifindex as u32);
            self.reg[0] = Val::Num(7);
            for r in 1..=5 {
                self.reg[r] = Val::Num(0);
            }
            return Ok(());
        }
        if !x.disasm.contains("map_redirect") {
            return Err(format!("call not emulated: {}", x.disasm));
        }
        let (Val::Ptr(Region::Map(id), 0), Val::Num(key), Val::Num(flags)) =
            (self.reg[1], self.reg[2], self.reg[3])
        else {
            return Err(format!("redirect with {:?}", &self.reg[1..4]));
        };
        let key = key as u32;
        let found = self.maps.lookup(id, &key.to_ne_bytes())?.is_some();
        *redirect = Some(key);
        // XDP_REDIRECT, or the action in the flags' low bits.
        self.reg[0] = Val::Num(if found { 4 } else { flags & 3 });
        for r in 1..=5 {
            self.reg[r] = Val::Num(0);
        }
        Ok(())
    }
}

impl Machine<'_> {
    /// The kernel's inlined hash lookup returns the element, and the
    /// program adds the value's offset in it (`if r0 == 0 goto +1; r0 +=
    /// K`): the pointer returned is K before the value.
    fn htab_lookup(&mut self, then: &[Insn]) -> Result<(), String> {
        let k = match then {
            [j, add, ..] if j.code == 0x15 && add.code == 0x07 && add.dst == 0 => add.imm,
            _ => return Err("a hash lookup without its value offset after it".into()),
        };
        let Val::Ptr(Region::Map(id), 0) = self.reg[1] else {
            return Err(format!("a hash lookup in {:?}", self.reg[1]));
        };
        let (_, key_size, _) = self.maps.info(id)?;
        let mut key = Vec::new();
        for b in 0..key_size {
            let Val::Num(v) = self.load(self.reg[2], b as i16, 1)? else {
                return Err("a pointer in a hash key".into());
            };
            key.push(v as u8);
        }
        self.reg[0] = match self.maps.lookup(id, &key)? {
            Some(v) => {
                self.maps.found.push(v);
                Val::Ptr(Region::Found(self.maps.found.len() - 1), -i64::from(k))
            }
            None => Val::Num(0),
        };
        for r in 1..=5 {
            self.reg[r] = Val::Num(0);
        }
        Ok(())
    }
}

fn alu(op: u8, a: u64, b: u64, wide: bool, off: i16) -> Result<u64, String> {
    let (a, b) = if wide {
        (a, b)
    } else {
        (a & 0xffff_ffff, b & 0xffff_ffff)
    };
    let shift_mask = if wide { 63 } else { 31 };
    let r = match op {
        0x00 => a.wrapping_add(b),
        0x10 => a.wrapping_sub(b),
        0x20 => a.wrapping_mul(b),
        0x30 if off == 0 => a.checked_div(b).unwrap_or(0),
        0x40 => a | b,
        0x50 => a & b,
        0x60 => a << (b & shift_mask),
        0x70 => a >> (b & shift_mask),
        0x80 => a.wrapping_neg(),
        0x90 if off == 0 => a.checked_rem(b).unwrap_or(a),
        0xa0 => a ^ b,
        0xb0 => match (off, wide) {
            (0, _) => b,
            (8, _) => b as i8 as i64 as u64,
            (16, _) => b as i16 as i64 as u64,
            (32, true) => b as i32 as i64 as u64,
            _ => return Err(format!("mov with off {off}")),
        },
        0xc0 if wide => ((a as i64) >> (b & 63)) as u64,
        0xc0 => ((a as i32) >> (b & 31)) as u32 as u64,
        _ => return Err(format!("ALU op {op:#x} (off {off})")),
    };
    Ok(if wide { r } else { r & 0xffff_ffff })
}

fn cond(op: u8, a: u64, b: u64, wide: bool) -> Result<bool, String> {
    let (a, b) = if wide {
        (a, b)
    } else {
        (a & 0xffff_ffff, b & 0xffff_ffff)
    };
    let (sa, sb) = if wide {
        (a as i64, b as i64)
    } else {
        (i64::from(a as i32), i64::from(b as i32))
    };
    Ok(match op {
        0x10 => a == b,
        0x20 => a > b,
        0x30 => a >= b,
        0x40 => a & b != 0,
        0x50 => a != b,
        0x60 => sa > sb,
        0x70 => sa >= sb,
        0xa0 => a < b,
        0xb0 => a <= b,
        0xc0 => sa < sb,
        0xd0 => sa <= sb,
        _ => return Err(format!("jump op {op:#x}")),
    })
}

/// Compares two values: numbers as numbers, pointers into one region by
/// offset, a pointer with zero as a non-null address.
fn compare(op: u8, a: Val, b: Val, wide: bool) -> Result<bool, String> {
    match (a, b) {
        (Val::Num(a), Val::Num(b)) => cond(op, a, b, wide),
        (Val::Ptr(ra, a), Val::Ptr(rb, b)) if ra == rb => cond(op, a as u64, b as u64, true),
        (Val::Ptr(..), Val::Num(0)) => cond(op, 1, 0, true),
        (Val::Num(0), Val::Ptr(..)) => cond(op, 0, 1, true),
        _ => Err(format!("comparison of {a:?} with {b:?}")),
    }
}

/// Runs the main program of `insns` (an XDP program's translated dump) on
/// `frame` arriving on `ifindex`.
pub fn run_xdp(insns: &[Insn], frame: &[u8], ifindex: u32) -> Result<Execution, String> {
    run(insns, frame, ifindex, Context::Xdp)
}

/// Runs the main program of `insns` (a translated dump) on `frame`
/// arriving on `ifindex`, with the context `ctx`.
pub fn run(insns: &[Insn], frame: &[u8], ifindex: u32, ctx: Context) -> Result<Execution, String> {
    let at: HashMap<usize, usize> = insns.iter().enumerate().map(|(i, x)| (x.pc, i)).collect();
    let mut maps = Maps::default();
    let mut m = Machine {
        reg: [Val::Num(0); 11],
        stack: [0; 512],
        spills: HashMap::new(),
        frame: frame.to_vec(),
        ifindex,
        ctx,
        maps: &mut maps,
    };
    m.reg[1] = Val::Ptr(Region::Ctx, 0);
    m.reg[10] = Val::Ptr(Region::Stack, 0);
    let mut redirect = None;
    let mut count = 0u32;
    let mut i = 0usize;
    for _ in 0..100_000 {
        let x = insns
            .get(i)
            .ok_or_else(|| format!("ran off the program at index {i}"))?;
        count += x.slots;
        let (dst, src) = (usize::from(x.dst), usize::from(x.src));
        let class = x.code & 0x07;
        let mut next = i + 1;
        match class {
            // ALU, ALU64
            0x04 | 0x07 => {
                let wide = class == 0x07;
                let op = x.code & 0xf0;
                if op == 0xd0 {
                    // Byte order: to little endian (this host's: a
                    // truncation), to big endian or unconditional (a swap).
                    let Val::Num(v) = m.reg[dst] else {
                        return Err(format!("{}: {:?}", x.disasm, m.reg[dst]));
                    };
                    let swap = wide || x.code & 0x08 != 0;
                    m.reg[dst] = Val::Num(match (x.imm, swap) {
                        (16, false) => v & 0xffff,
                        (32, false) => v & 0xffff_ffff,
                        (64, false) => v,
                        (16, true) => u64::from((v as u16).swap_bytes()),
                        (32, true) => u64::from((v as u32).swap_bytes()),
                        (64, true) => v.swap_bytes(),
                        _ => return Err(format!("byte swap of {} bits", x.imm)),
                    });
                    i += 1;
                    continue;
                }
                let b = if x.code & 0x08 != 0 {
                    m.reg[src]
                } else {
                    Val::Num(i64::from(x.imm) as u64)
                };
                m.reg[dst] = match (op, m.reg[dst], b) {
                    // A move, or a per-CPU pointer made this CPU's (off -1).
                    (0xb0, _, Val::Ptr(..)) if wide && matches!(x.off, 0 | -1) => b,
                    (0x00, Val::Ptr(r, o), Val::Num(n)) if wide => {
                        if let Region::Map(id) = r
                            && o == 0
                        {
                            m.maps.base.entry(id).or_insert(n as i64);
                        }
                        Val::Ptr(r, o.wrapping_add(n as i64))
                    }
                    (0x00, Val::Num(n), Val::Ptr(r, o)) if wide => {
                        Val::Ptr(r, o.wrapping_add(n as i64))
                    }
                    (0x10, Val::Ptr(r, o), Val::Num(n)) if wide => {
                        Val::Ptr(r, o.wrapping_sub(n as i64))
                    }
                    (0x10, Val::Ptr(ra, a), Val::Ptr(rb, b)) if wide && ra == rb => {
                        Val::Num(a.wrapping_sub(b) as u64)
                    }
                    (_, Val::Num(a), Val::Num(b)) => Val::Num(alu(op, a, b, wide, x.off)?),
                    (0xb0, _, Val::Num(b)) => Val::Num(alu(op, 0, b, wide, x.off)?),
                    (_, a, b) => return Err(format!("{}: {a:?} and {b:?}", x.disasm)),
                };
            }
            // LD: only the 64-bit immediate load.
            0x00 if x.code == 0x18 => {
                m.reg[dst] = match x.src {
                    0 => Val::Num(x.imm64),
                    // BPF_PSEUDO_MAP_FD: the kernel's dump puts the map's id.
                    1 => Val::Ptr(Region::Map(x.imm as u32), 0),
                    // BPF_PSEUDO_MAP_VALUE: element 0 of an array, at an offset.
                    2 => Val::Ptr(Region::Elem(x.imm as u32, 0), (x.imm64 >> 32) as i64),
                    s => return Err(format!("64-bit load of kind {s}: {}", x.disasm)),
                };
            }
            // LDX MEM, STX MEM, ST MEM
            0x01..=0x03 if x.code & 0xe0 == 0x60 => {
                let size = match x.code & 0x18 {
                    0x00 => 4,
                    0x08 => 2,
                    0x10 => 1,
                    _ => 8,
                };
                match class {
                    0x01 => m.reg[dst] = m.load(m.reg[src], x.off, size)?,
                    0x03 => m.store(m.reg[dst], x.off, size, m.reg[src])?,
                    _ => m.store(m.reg[dst], x.off, size, Val::Num(i64::from(x.imm) as u64))?,
                }
            }
            // JMP, JMP32
            0x05 | 0x06 => {
                let op = x.code & 0xf0;
                let to = x.pc as i64 + i64::from(x.off) + 1;
                let jump = match op {
                    0x00 => true,
                    0x80 if x.src == 1 => return Err("a subprogram call".into()),
                    0x80 => {
                        m.call(x, &insns[i + 1..], &mut redirect)?;
                        false
                    }
                    0x90 => {
                        let Val::Num(verdict) = m.reg[0] else {
                            return Err(format!("exit with {:?}", m.reg[0]));
                        };
                        return Ok(Execution {
                            insns: count,
                            verdict: verdict as u32,
                            redirect_key: redirect,
                        });
                    }
                    _ => {
                        let b = if x.code & 0x08 != 0 {
                            m.reg[src]
                        } else {
                            Val::Num(i64::from(x.imm) as u64)
                        };
                        compare(op, m.reg[dst], b, class == 0x05)?
                    }
                };
                if jump {
                    next = usize::try_from(to)
                        .ok()
                        .and_then(|pc| at.get(&pc).copied())
                        .ok_or_else(|| format!("a jump to {to}, not an instruction"))?;
                }
            }
            _ => return Err(format!("instruction not emulated: {}", x.disasm)),
        }
        i = next;
    }
    Err("no exit within 100000 instructions".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insn(pc: usize, code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            pc,
            code,
            off,
            imm,
            dst,
            src,
            imm64: imm as u32 as u64,
            slots: 1,
            disasm: format!("({code:02x})"),
        }
    }

    /// r0 = 2; the header's bounds; r0 = first byte & 1; exit.
    fn program() -> Vec<Insn> {
        vec![
            insn(0, 0xb7, 0, 0, 0, 2),
            insn(1, 0x79, 2, 1, 8, 0),
            insn(2, 0x79, 3, 1, 0, 0),
            insn(3, 0xbf, 4, 3, 0, 0),
            insn(4, 0x07, 4, 0, 0, 14),
            insn(5, 0x2d, 4, 2, 2, 0),
            insn(6, 0x71, 0, 3, 0, 0),
            insn(7, 0x57, 0, 0, 0, 1),
            insn(8, 0x95, 0, 0, 0, 0),
        ]
    }

    #[test]
    fn counts_the_instructions_the_frame_takes() {
        let mut frame = vec![0u8; 64];
        frame[0] = 0x03;
        let x = run_xdp(&program(), &frame, 7).unwrap();
        assert_eq!((x.insns, x.verdict, x.redirect_key), (9, 1, None));
        // A frame shorter than the header jumps over the load.
        let x = run_xdp(&program(), &frame[..10], 7).unwrap();
        assert_eq!((x.insns, x.verdict), (7, 2));
    }

    #[test]
    fn swaps_bytes_to_network_order() {
        let p = [
            insn(0, 0xb7, 0, 0, 0, 0x1234),
            insn(1, 0xdc, 0, 0, 0, 16),
            insn(2, 0x95, 0, 0, 0, 0),
        ];
        let x = run_xdp(&p, &[0u8; 64], 7).unwrap();
        assert_eq!((x.insns, x.verdict), (3, 0x3412));
    }

    #[test]
    fn stops_at_what_it_cannot_emulate() {
        let mut p = program();
        p[6] = Insn {
            disasm: "(85) call bpf_ringbuf_output#1".into(),
            ..insn(6, 0x85, 0, 0, 0, 1)
        };
        let e = run_xdp(&p, &[0u8; 64], 7).unwrap_err();
        assert!(e.contains("bpf_ringbuf_output"), "{e}");
        // A load past the frame's end is refused, not guessed.
        p[6] = insn(6, 0x71, 0, 3, 70, 0);
        let e = run_xdp(&p, &[0u8; 64], 7).unwrap_err();
        assert!(e.contains("out of bounds"), "{e}");
    }
}
