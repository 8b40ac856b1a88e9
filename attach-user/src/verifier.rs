//! Whether every program of the build this kernel gets passes its verifier:
//! each loaded once, with maps made for the purpose (their pins in a
//! directory of the check's own, removed at once; nothing attached; all
//! gone when the check returns). What `attach features`
//! reports, so that "works here" is the kernel's own word, not a guess from
//! version numbers.

use aya::{EbpfLoader, programs::Program};
use serde::Serialize;

use crate::{
    datapath::ebpf_object,
    error::{Error, Result},
};

/// One program and the verifier's answer.
#[derive(Debug, Serialize)]
pub struct ProgramCheck {
    pub program: String,
    /// `None`: accepted; else the verifier's reason (its log's last lines).
    pub refused: Option<String>,
    /// How long the load took, verifying included.
    pub load_ms: f64,
    /// Instructions the verifier processed (where the kernel says).
    pub verified_instructions: Option<u32>,
}

/// A bpffs directory of this process's for the maps' pins, removed with
/// whatever is pinned in it when dropped.
struct ScratchPins(std::path::PathBuf);

impl ScratchPins {
    fn new() -> Result<Self> {
        crate::datapath::Datapath::check_bpffs()?;
        let dir =
            std::path::PathBuf::from(format!("/sys/fs/bpf/attach-verify-{}", std::process::id()));
        // A directory of an earlier process of this pid, killed mid-check.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir)
            .map_err(|e| Error::system(format!("creating {}: {e}", dir.display())))?;
        Ok(Self(dir))
    }
}

impl Drop for ScratchPins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lines of a refusal's verifier log kept: the reason is at its end.
const REASON_LINES: usize = 4;

/// Loads every program of this kernel's build once.
pub fn check_programs() -> Result<Vec<ProgramCheck>> {
    let started = std::time::Instant::now();
    // The loader pins the object's by-name maps, by default at the root of
    // the bpffs: a directory of this process's takes them instead, gone as
    // soon as they are made (the maps live on while the programs hold them).
    let scratch = ScratchPins::new()?;
    let loaded = EbpfLoader::new()
        .default_map_pin_directory(&scratch.0)
        .load(ebpf_object());
    drop(scratch);
    let mut ebpf = loaded.map_err(|e| Error::from(e).context("loading the programs' object"))?;
    tracing::debug!("object and maps made in {:?}", started.elapsed());
    let mut out: Vec<ProgramCheck> = ebpf
        .programs_mut()
        .map(|(name, prog)| {
            tracing::debug!("verifying {name}");
            let started = std::time::Instant::now();
            let refused = load(prog).err().map(|e| reason(&e));
            tracing::debug!("{name}: {:?}", started.elapsed());
            let load_ms = started.elapsed().as_secs_f64() * 1e3;
            let verified_instructions = prog
                .info()
                .ok()
                .and_then(|i| i.verified_instruction_count());
            ProgramCheck {
                program: name.to_owned(),
                refused,
                load_ms,
                verified_instructions,
            }
        })
        .collect();
    out.sort_by(|a, b| a.program.cmp(&b.program));
    Ok(out)
}

fn load(prog: &mut Program) -> std::result::Result<(), aya::programs::ProgramError> {
    match prog {
        Program::SchedClassifier(p) => p.load(),
        Program::Xdp(p) => p.load(),
        Program::CgroupSkb(p) => p.load(),
        // Not a type this build has: shown in the report, not hidden.
        _ => Err(aya::programs::ProgramError::UnexpectedProgramType),
    }
}

/// The last lines of the verifier's log (where it says why), else the error.
fn reason(e: &aya::programs::ProgramError) -> String {
    if let aya::programs::ProgramError::LoadError { verifier_log, .. } = e {
        let log = verifier_log.to_string();
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = &lines[lines.len().saturating_sub(REASON_LINES)..];
        if !tail.is_empty() {
            return tail.join(" | ");
        }
    }
    e.to_string()
}
