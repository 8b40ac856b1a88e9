//! The instruction-graph search behind M6's instruction counts: a
//! program's translated instructions (`bpftool prog dump xlated`), and the
//! longest run of them one execution of a decision path can take.

use std::{
    collections::HashMap as StdHashMap,
    process::{Command, Stdio},
};

use crate::error::{Error, Result};

/// One translated instruction.
#[derive(Clone, Debug)]
pub struct Insn {
    pub pc: usize,
    pub code: u8,
    pub off: i16,
    pub imm: i32,
    pub dst: u8,
    pub src: u8,
    /// A 64-bit immediate load's value (`imm` and the next slot's `imm`).
    pub imm64: u64,
    /// 2 for a 64-bit immediate load, else 1 (as counted in the xlated size).
    pub slots: u32,
    pub disasm: String,
}

fn hex(v: &serde_json::Value) -> u8 {
    v.as_str()
        .and_then(|s| u8::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0)
}

/// `bpftool prog dump xlated id <id>`: the instructions as the kernel runs them.
pub(super) fn xlated_dump(id: u32) -> Result<Vec<Insn>> {
    let out = Command::new("bpftool")
        .args([
            "-j",
            "prog",
            "dump",
            "xlated",
            "id",
            &id.to_string(),
            "opcodes",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::system(format!("cannot run bpftool: {e}")))?;
    if !out.status.success() {
        return Err(Error::system(format!(
            "bpftool prog dump xlated id {id}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::system(format!("bpftool output: {e}")))?;
    let mut pc = 0;
    let mut insns = Vec::new();
    for e in v.as_array().map(Vec::as_slice).unwrap_or_default() {
        let op = &e["opcodes"];
        let code = hex(&op["code"]);
        let b = |k: &str, i: usize| hex(&op[k][i]);
        let off = i16::from_le_bytes([b("off", 0), b("off", 1)]);
        let imm = i32::from_le_bytes([b("imm", 0), b("imm", 1), b("imm", 2), b("imm", 3)]);
        let slots = if code == 0x18 { 2 } else { 1 };
        let hi = u32::from_le_bytes([b("imm", 8), b("imm", 9), b("imm", 10), b("imm", 11)]);
        insns.push(Insn {
            pc,
            code,
            off,
            imm,
            dst: hex(&op["dst_reg"]),
            src: hex(&op["src_reg"]),
            imm64: u64::from(imm as u32) | (u64::from(hi) << 32),
            slots,
            disasm: e["disasm"].as_str().unwrap_or_default().to_owned(),
        });
        pc += slots as usize;
    }
    Ok(insns)
}

/// The longest run of instructions from the entry to an `exit` of the main
/// program that passes a call matching `through` (if given), no call or map
/// load matching `avoid`, no subprogram call (the flood loop's callback) and
/// not the non-linear header fallback (`bpf_skb_load_bytes`, `bpf_skb_pull_data`).
///
/// An execution that does not loop visits each instruction at most once,
/// so it is a simple path of the control-flow graph: the longest such path
/// bounds it. LLVM shares code between branches, which makes cycles in the
/// graph that no execution follows; paths are therefore searched as simple
/// paths within each strongly connected component, and memoised between
/// components. `None` if the search is too large.
pub fn longest_path(insns: &[Insn], through: Option<&str>, avoid: &[&str]) -> Option<u32> {
    search(insns, through, avoid, false).map(|(n, _)| n)
}

/// [`longest_path`], and with `want_path` the path it was found on: the
/// `pc` of each instruction, in order.
pub(super) fn search(
    insns: &[Insn],
    through: Option<&str>,
    avoid: &[&str],
    want_path: bool,
) -> Option<(u32, Vec<usize>)> {
    let at: StdHashMap<usize, usize> = insns.iter().enumerate().map(|(i, x)| (x.pc, i)).collect();
    // Subprograms start where calls `pc+N` point; the main program ends at
    // the first of them.
    // (The dump's opcodes hide a subprogram call's offset; its text has it.)
    let end = insns
        .iter()
        .filter(|x| x.code == 0x85)
        .filter_map(|x| {
            let rest = &x.disasm[x.disasm.find("pc+")? + 3..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            Some(x.pc + digits.parse::<usize>().ok()? + 1)
        })
        .min()
        .unwrap_or(usize::MAX);
    let n = insns.iter().take_while(|x| x.pc < end).count();
    let is_call = |x: &Insn| x.code == 0x85;
    let blocked: Vec<bool> = insns[..n]
        .iter()
        .map(|x| {
            let map_load = x.code == 0x18;
            (is_call(x) || map_load)
                && (x.disasm.contains("call pc+")
                    || x.disasm.contains("bpf_skb_load_bytes")
                    || x.disasm.contains("bpf_skb_pull_data")
                    || avoid.iter().any(|a| x.disasm.contains(a)))
        })
        .collect();
    let marks: Vec<bool> = insns[..n]
        .iter()
        .map(|x| is_call(x) && through.is_some_and(|t| x.disasm.contains(t)))
        .collect();
    let exit: Vec<bool> = insns[..n]
        .iter()
        .map(|x| x.code & 7 == 5 && x.code & 0xf0 == 0x90)
        .collect();
    let succ: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            let x = &insns[i];
            if blocked[i] {
                return vec![];
            }
            let class = x.code & 7;
            let next = x.pc + x.slots as usize;
            let jump = |off: i64| (x.pc as i64 + off + 1) as usize;
            let pcs: Vec<usize> = if class == 5 || class == 6 {
                match x.code & 0xf0 {
                    0x90 => vec![],
                    0x80 => vec![next],
                    0x00 if class == 5 => vec![jump(i64::from(x.off))],
                    0x00 => vec![jump(i64::from(x.imm))],
                    _ => vec![next, jump(i64::from(x.off))],
                }
            } else {
                vec![next]
            };
            pcs.into_iter()
                .filter_map(|pc| at.get(&pc).copied())
                .filter(|&j| j < n && !blocked[j])
                .collect()
        })
        .collect();
    if n == 0 || blocked[0] {
        return None;
    }
    let comp = sccs(&succ);
    let mut w = Walk {
        insns,
        succ: &succ,
        comp: &comp,
        marks: &marks,
        exit: &exit,
        need: through.is_some(),
        memo: StdHashMap::new(),
        visited: vec![false; n],
        steps: 0,
    };
    let v = w.fresh(0, false);
    let longest = (w.steps <= Walk::MAX_STEPS).then_some(v).flatten()?;
    let mut path = Vec::new();
    if want_path {
        w.trace(0, false, &mut path);
    }
    Some((longest, path.into_iter().map(|i| insns[i].pc).collect()))
}

struct Walk<'a> {
    insns: &'a [Insn],
    succ: &'a [Vec<usize>],
    comp: &'a [usize],
    marks: &'a [bool],
    exit: &'a [bool],
    need: bool,
    memo: StdHashMap<(usize, bool), Option<u32>>,
    visited: Vec<bool>,
    steps: u64,
}

impl Walk<'_> {
    const MAX_STEPS: u64 = 20_000_000;

    /// Longest path from `v` entering its component afresh (memoised: what
    /// follows cannot revisit anything before it outside this component).
    fn fresh(&mut self, v: usize, seen: bool) -> Option<u32> {
        if let Some(r) = self.memo.get(&(v, seen)) {
            return *r;
        }
        let r = self.walk(v, seen);
        self.memo.insert((v, seen), r);
        r
    }

    fn walk(&mut self, v: usize, seen: bool) -> Option<u32> {
        self.steps += 1;
        if self.steps > Self::MAX_STEPS {
            return None;
        }
        let seen = seen || self.marks[v];
        let slots = self.insns[v].slots;
        if self.exit[v] {
            return (seen || !self.need).then_some(slots);
        }
        self.visited[v] = true;
        let best = self.best_successor(v, seen);
        self.visited[v] = false;
        best.map(|(b, _)| b + slots)
    }

    /// The successor of `v` (marked visited) with the longest path on, and
    /// that path's length; ties go to the later successor.
    fn best_successor(&mut self, v: usize, seen: bool) -> Option<(u32, usize)> {
        let mut best: Option<(u32, usize)> = None;
        for k in 0..self.succ[v].len() {
            let s = self.succ[v][k];
            let r = if self.comp[s] == self.comp[v] {
                if self.visited[s] {
                    continue;
                }
                self.walk(s, seen)
            } else {
                self.fresh(s, seen)
            };
            if let Some(r) = r
                && best.is_none_or(|(b, _)| r >= b)
            {
                best = Some((r, s));
            }
        }
        best
    }

    /// Follows the longest path from `v` (as [`Walk::walk`] found it),
    /// appending its instructions to `out`.
    fn trace(&mut self, v: usize, seen: bool, out: &mut Vec<usize>) {
        out.push(v);
        if self.exit[v] {
            return;
        }
        let seen = seen || self.marks[v];
        // Left marked: the rest of the path is not to come back here.
        self.visited[v] = true;
        if let Some((_, s)) = self.best_successor(v, seen) {
            self.trace(s, seen, out);
        }
    }
}

/// Strongly connected components (Tarjan, iterative): a component id per node.
fn sccs(succ: &[Vec<usize>]) -> Vec<usize> {
    let n = succ.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut comp = vec![usize::MAX; n];
    let mut next_index = 0;
    let mut ncomp = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, next successor to look at)
        let mut call: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut k)) = call.last_mut() {
            if *k < succ[v].len() {
                let w = succ[v][*k];
                *k += 1;
                if index[w] == usize::MAX {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                call.pop();
                if let Some(&(u, _)) = call.last() {
                    low[u] = low[u].min(low[v]);
                }
                if low[v] == index[v] {
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp[w] = ncomp;
                        if w == v {
                            break;
                        }
                    }
                    ncomp += 1;
                }
            }
        }
    }
    comp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insn(pc: usize, code: u8, off: i16, disasm: &str) -> Insn {
        Insn {
            pc,
            code,
            off,
            imm: 0,
            dst: 0,
            src: 0,
            imm64: 0,
            slots: if code == 0x18 { 2 } else { 1 },
            disasm: disasm.into(),
        }
    }

    #[test]
    fn longest_path_through_a_call() {
        // 0: if r1 == 0 goto 3;  1: call bpf_redirect_peer#1;  2: goto 5
        // 3: r0 = 1 (ldimm64, 2 slots);  5: exit
        let p = vec![
            insn(0, 0x15, 2, "if"),
            insn(1, 0x85, 0, "call bpf_redirect_peer#1"),
            insn(2, 0x05, 2, "goto pc+2"),
            insn(3, 0x18, 0, "r0 = 1"),
            insn(5, 0x95, 0, "exit"),
        ];
        assert_eq!(longest_path(&p, Some("redirect_peer"), &[]), Some(4));
        assert_eq!(
            search(&p, Some("redirect_peer"), &[], true),
            Some((4, vec![0, 1, 2, 5]))
        );
        // Not through the call: the branch with the 64-bit load (2 slots).
        assert_eq!(
            search(&p, None, &["redirect_peer"], true),
            Some((4, vec![0, 3, 5]))
        );
        assert_eq!(longest_path(&p, None, &[]), Some(4));
        assert_eq!(longest_path(&p, None, &["redirect_peer"]), Some(4));
        assert_eq!(longest_path(&p, Some("bpf_loop"), &[]), None);
    }

    #[test]
    fn subprograms_are_not_the_main_program() {
        // 0: if r1 == 0 goto 2;  1: call pc+2 (subprogram at 4);  2: r0 = 0
        // 3: exit;  4: r0 = 1 (subprogram);  5: exit
        let mut call = insn(1, 0x85, 0, "call pc+2#bpf_prog_x_flood_one");
        call.imm = 1; // as the dump shows it
        let p = vec![
            insn(0, 0x15, 1, "if"),
            call,
            insn(2, 0xb7, 0, "r0 = 0"),
            insn(3, 0x95, 0, "exit"),
            insn(4, 0xb7, 0, "r0 = 1"),
            insn(5, 0x95, 0, "exit"),
        ];
        assert_eq!(longest_path(&p, None, &[]), Some(3));
    }

    #[test]
    fn shared_code_is_counted_once_per_path() {
        // 0: if r1 == 0 goto 3;  1: r2 = 1;  2: goto 4;  3: r2 = 2
        // 4: if r3 != 0 goto 1 (a cycle in the graph);  5: exit
        let p = vec![
            insn(0, 0x15, 2, "if"),
            insn(1, 0xb7, 0, "r2 = 1"),
            insn(2, 0x05, 1, "goto pc+1"),
            insn(3, 0xb7, 0, "r2 = 2"),
            insn(4, 0x55, -4, "if r3 != 0 goto pc-4"),
            insn(5, 0x95, 0, "exit"),
        ];
        // Longest simple path: 0 3 4 1 2 (4 again is a revisit) … the
        // simple paths to exit are 0 1 2 4 5 and 0 3 4 5: 5 instructions.
        assert_eq!(longest_path(&p, None, &[]), Some(5));
        assert_eq!(search(&p, None, &[], true), Some((5, vec![0, 1, 2, 4, 5])));
    }
}
