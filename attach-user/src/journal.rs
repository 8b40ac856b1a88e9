//! The intent of an `add` under way: written before the add makes anything
//! (the planned record: its names, MAC, addresses, parent), removed once its
//! record is saved or its failure rolled back. An engine killed in between
//! (SIGKILL, a crash) leaves the journal behind, and with it what the add
//! had made so far; `check` names it and `reconcile`, `reset` and the next
//! `add` or `del` roll it back.
//!
//! The adder holds an exclusive flock on its journal for as long as it
//! runs: a journal whose lock can be taken is one whose process is gone.

use std::{
    fs::{self, File},
    io::Write,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    model::Attachment,
};

/// The journals' directory, in a node's state directory.
const DIR: &str = "pending";

#[derive(Serialize, Deserialize)]
struct Intent {
    pid: u32,
    record: Attachment,
}

/// The journal of this process's add; its lock is held until dropped.
pub struct Journal {
    path: PathBuf,
    _file: File,
}

/// A journal left by an add whose process is gone.
pub struct Pending {
    pub path: PathBuf,
    /// Its file name.
    pub name: String,
    pub pid: Option<u32>,
    /// What the add set out to make; `None` when the journal was left half
    /// written (the add had made nothing yet).
    pub record: Option<Attachment>,
}

fn dir_of(state_dir: &Path) -> PathBuf {
    state_dir.join(DIR)
}

fn flock(file: &File, how: libc::c_int) -> std::io::Result<()> {
    // SAFETY: valid fd.
    if unsafe { libc::flock(file.as_raw_fd(), how) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Journal {
    /// Writes the intent to make `planned`, locked, before anything is made.
    pub fn begin(state_dir: &Path, planned: &Attachment) -> Result<Journal> {
        let dir = dir_of(state_dir);
        fs::create_dir_all(&dir)
            .map_err(|e| Error::system(format!("cannot create {}: {e}", dir.display())))?;
        let name = planned.record_name();
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut file = File::create(&tmp)?;
        flock(&file, libc::LOCK_EX)?;
        let intent = Intent {
            pid: std::process::id(),
            record: planned.clone(),
        };
        file.write_all(serde_json::to_string(&intent)?.as_bytes())?;
        // Renamed whole into place: a journal is never seen half written
        // under its name (a temporary one of a gone process is).
        fs::rename(&tmp, &path)?;
        Ok(Journal { path, _file: file })
    }

    /// The add is done (its record saved, or its failure rolled back).
    pub fn finish(self) {
        if let Err(e) = fs::remove_file(&self.path) {
            tracing::warn!("removing {}: {e}", self.path.display());
        }
        if let Some(dir) = self.path.parent() {
            let _ = fs::remove_dir(dir); // Only when empty.
        }
    }
}

/// The journals of `state_dir` whose process is gone, oldest name first.
pub fn dead(state_dir: &Path) -> Result<Vec<Pending>> {
    let dir = dir_of(state_dir);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let Ok(file) = File::open(&path) else {
            continue; // Gone meanwhile: finished.
        };
        match flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => continue, // Live.
            Err(e) => return Err(e.into()),
        }
        let intent: Option<Intent> = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        out.push(Pending {
            name: e.file_name().to_string_lossy().into_owned(),
            path,
            pid: intent.as_ref().map(|i| i.pid),
            record: intent.map(|i| i.record),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Whether `state_dir` holds journals, live or not.
pub fn any(state_dir: &Path) -> bool {
    fs::read_dir(dir_of(state_dir)).is_ok_and(|mut d| d.next().is_some())
}

impl Pending {
    /// Removes the journal (its add rolled back, or found complete).
    pub fn remove(&self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(dir) = self.path.parent() {
            let _ = fs::remove_dir(dir); // Only when empty.
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_is_dead_only_once_its_lock_is_released() {
        let dir = std::env::temp_dir().join(format!("attach-journal-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let rec = crate::model::sample(7, "02:00:00:00:00:07");
        let j = Journal::begin(&dir, &rec).unwrap();
        // flock is per open file: this process's own second open sees the
        // first one's lock as another process would.
        assert!(dead(&dir).unwrap().is_empty(), "a live add is not dead");
        assert!(any(&dir));
        // Dropped without `finish`: as if the process were killed.
        drop(j);
        let d = dead(&dir).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].pid, Some(std::process::id()));
        assert_eq!(d[0].record.as_ref(), Some(&rec));
        d[0].remove().unwrap();
        assert!(!any(&dir));
        let j = Journal::begin(&dir, &rec).unwrap();
        j.finish();
        assert!(dead(&dir).unwrap().is_empty() && !any(&dir));
        let _ = fs::remove_dir_all(&dir);
    }
}
