//! Whether every program of the build this kernel gets passes its verifier:
//! each loaded once, with maps made for the purpose (nothing pinned, nothing
//! attached, all gone when the check returns). What `attach features`
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

/// Lines of a refusal's verifier log kept: the reason is at its end.
const REASON_LINES: usize = 4;

/// Loads every program of this kernel's build once.
pub fn check_programs() -> Result<Vec<ProgramCheck>> {
    let started = std::time::Instant::now();
    let mut ebpf = EbpfLoader::new()
        .load(ebpf_object())
        .map_err(|e| Error::from(e).context("loading the programs' object"))?;
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
