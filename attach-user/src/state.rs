//! Attachment records of one node, on disk: one JSON file per attachment,
//! written atomically (temp file, fsync, rename) under an exclusive lock.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use crate::{
    error::{Error, Result},
    model::Attachment,
};

pub struct State {
    dir: PathBuf,
}

/// Held while the node's attachments are being changed.
pub struct Lock {
    _file: File,
}

impl State {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn records_dir(&self) -> PathBuf {
        self.dir.join("attachments")
    }

    /// Takes the node's lock, waiting for any other engine to finish.
    /// The lock file may be removed with the directory by the holder before
    /// us (last attachment gone), so a lock taken on a file no longer at the
    /// path is retried.
    pub fn lock(&self) -> Result<Lock> {
        use std::os::unix::fs::MetadataExt;
        let path = self.dir.join("lock");
        loop {
            fs::create_dir_all(self.records_dir())
                .map_err(|e| Error::system(format!("cannot create {}: {e}", self.dir.display())))?;
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| Error::system(format!("cannot open {}: {e}", path.display())))?;
            // SAFETY: valid fd.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(Error::system(format!(
                    "cannot lock {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                )));
            }
            let held = file.metadata()?.ino();
            if fs::metadata(&path).is_ok_and(|m| m.ino() == held) {
                return Ok(Lock { _file: file });
            }
        }
    }

    pub fn all(&self) -> Result<Vec<Attachment>> {
        let dir = self.records_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for e in entries {
            let path = e?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let text = fs::read_to_string(&path)?;
            let rec: Attachment = serde_json::from_str(&text)
                .map_err(|e| Error::system(format!("corrupt record {}: {e}", path.display())))?;
            out.push(rec);
        }
        out.sort_by(|a, b| (a.created, &a.netns, &a.ifname).cmp(&(b.created, &b.netns, &b.ifname)));
        Ok(out)
    }

    pub fn save(&self, rec: &Attachment) -> Result<()> {
        let dir = self.records_dir();
        fs::create_dir_all(&dir)?;
        let path = dir.join(rec.record_name());
        let tmp = dir.join(format!(".{}.tmp", rec.record_name()));
        // Written whole, then renamed over: a reader or a crash of ours never
        // sees half a record. No fsync: a record describes kernel state that
        // a reboot (or power loss) wipes anyway, and /run is a tmpfs on most
        // nodes; syncing cost most of a millisecond per add on a disk.
        let mut f = File::create(&tmp)?;
        f.write_all(serde_json::to_string_pretty(rec)?.as_bytes())?;
        drop(f);
        fs::rename(&tmp, &path)?;
        Ok(())
    }

    pub fn remove(&self, rec: &Attachment) -> Result<()> {
        match fs::remove_file(self.records_dir().join(rec.record_name())) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the node's state directory once it holds no attachment.
    pub fn remove_if_empty(&self) -> Result<()> {
        if self.all()?.is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
        Ok(())
    }
}
