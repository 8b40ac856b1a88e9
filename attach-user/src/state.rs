//! Attachment records of one node, on disk: one JSON file per attachment,
//! written atomically (temp file, rename) under an exclusive lock, and an
//! index of them all (see [`index`]).

mod index;
mod private;

use index::{Entry, Known, Stamp};
use private::private_file;

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    os::{
        fd::AsRawFd,
        unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    sync::Mutex,
};

use crate::{
    error::{Error, Result},
    model::Attachment,
};

pub struct State {
    dir: PathBuf,
    /// The records as last read or indexed: what `reindex` need not read
    /// again.
    known: Mutex<Known>,
}

/// Held while the node's attachments are being changed.
pub struct Lock {
    _file: File,
}

impl State {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            known: Mutex::new(Known::default()),
        }
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
    ///
    /// The state directory and its records directory are root's alone
    /// (0700), the lock file too (0600): another user could otherwise hold
    /// the lock and stall every change, or read the records. Modes found
    /// wider (an older build's) are narrowed here; a symbolic link in
    /// place of any of them is refused, never followed.
    pub fn lock(&self) -> Result<Lock> {
        let path = self.dir.join("lock");
        loop {
            private_dir(&self.dir)?;
            private_dir(&self.records_dir())?;
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| {
                    if e.raw_os_error() == Some(libc::ELOOP) {
                        Error::system(format!(
                            "the lock file {} is a symbolic link: refusing to follow it \
                             (remove it; the engine makes its own)",
                            path.display()
                        ))
                    } else {
                        Error::system(format!("cannot open {}: {e}", path.display()))
                    }
                })?;
            let meta = file.metadata()?;
            if !meta.is_file() {
                return Err(Error::system(format!(
                    "the lock file {} is not a regular file",
                    path.display()
                )));
            }
            if meta.mode() & 0o7777 != 0o600 {
                file.set_permissions(fs::Permissions::from_mode(0o600))
                    .map_err(|e| Error::system(format!("cannot chmod {}: {e}", path.display())))?;
            }
            // SAFETY: valid fd.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(Error::system(format!(
                    "cannot lock {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                )));
            }
            let held = meta.ino();
            if fs::symlink_metadata(&path).is_ok_and(|m| m.ino() == held) {
                return Ok(Lock { _file: file });
            }
        }
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("records.index")
    }

    /// Every record of the node, oldest first.
    pub fn all(&self) -> Result<Vec<Attachment>> {
        let mut known = self.known();
        let (now, mut out) = Known::read(&self.index_path(), &self.records_dir(), &known.entries)
            .map_err(|e| match fs::read_dir(self.records_dir()) {
            Err(d) if d.kind() == std::io::ErrorKind::PermissionDenied => Error::system(format!(
                "the node's attachment records in {} are readable by root only: run this as root",
                self.dir.display()
            )),
            _ => e,
        })?;
        *known = now;
        out.sort_by(|a, b| (a.created, &a.netns, &a.ifname).cmp(&(b.created, &b.netns, &b.ifname)));
        Ok(out)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn save(&self, rec: &Attachment) -> Result<()> {
        let dir = self.records_dir();
        private_dir(&self.dir)?;
        private_dir(&dir)?;
        let before = Stamp::of(&dir).ok();
        let name = rec.record_name();
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let json = serde_json::to_string_pretty(rec)?;
        // Its line of the index, made before anything is written.
        let mut entry = Entry::new(name.clone(), 0, rec)?;
        // Written whole, then renamed over: a reader or a crash of ours never
        // sees half a record. No fsync: a record describes kernel state that
        // a reboot (or power loss) wipes anyway, and /run is a tmpfs on most
        // nodes; syncing cost most of a millisecond per add on a disk.
        let mut f = private_file(&tmp)?;
        f.write_all(json.as_bytes())?;
        entry.ino = f.metadata()?.ino();
        drop(f);
        fs::rename(&tmp, &path)?;
        self.reindex(before, &name, Some(entry));
        Ok(())
    }

    /// Records a writer died while writing (temporary files never renamed
    /// into place). Only meaningful under the lock.
    pub fn half_written(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(self.records_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"))
            })
            .collect();
        out.sort();
        out
    }

    pub fn remove(&self, rec: &Attachment) -> Result<()> {
        let dir = self.records_dir();
        let before = Stamp::of(&dir).ok();
        let name = rec.record_name();
        match fs::remove_file(dir.join(&name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        self.reindex(before, &name, None);
        Ok(())
    }

    /// Brings the index in line with the records after record `name`
    /// changed to `entry`, the directory having been at `before`. Never
    /// fails the change: without an index, the records are read one by one.
    fn reindex(&self, before: Option<Stamp>, name: &str, entry: Option<Entry>) {
        let mut known = self.known();
        let dir = self.records_dir();
        let done = (|| -> Result<()> {
            if before.is_some() && known.stamp == before {
                // What was known is what the directory held until this
                // change (made under the lock): only the change to note.
                known.set(name, entry);
                known.stamp = Some(Stamp::of(&dir)?);
            } else {
                known.stamp = None;
                *known = Known::scan(&dir, &known.entries)?.0;
            }
            known.write(&self.index_path())
        })();
        if let Err(e) = done {
            tracing::debug!("rewriting the records index: {e}");
            known.stamp = None;
            let _ = fs::remove_file(self.index_path());
        }
    }

    /// Removes the node's state directory once it holds no attachment.
    pub fn remove_if_empty(&self) -> Result<()> {
        // An interrupted add's journal keeps the directory: it is how its
        // leftovers are found.
        if self.all()?.is_empty() && !crate::journal::any(&self.dir) {
            let _ = fs::remove_dir_all(&self.dir);
        }
        Ok(())
    }
}

/// Makes `dir` if needed (and any missing parent, as usual), root's alone: 0700, not
/// a symbolic link. A directory found with a wider mode (made by an older
/// build) is narrowed, and so are the files in it.
pub(crate) fn private_dir(dir: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let cannot =
                |e: std::io::Error| Error::system(format!("cannot create {}: {e}", dir.display()));
            // Parents as usual (/run/attach holds the agent's socket too).
            if let Some(parent) = dir.parent() {
                fs::create_dir_all(parent).map_err(cannot)?;
            }
            match fs::DirBuilder::new().mode(0o700).create(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(cannot(e)),
                _ => {}
            }
            fs::symlink_metadata(dir)?
        }
        Err(e) => return Err(Error::system(format!("cannot read {}: {e}", dir.display()))),
    };
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(Error::system(format!(
            "{} is {}: refusing to keep the node's state there (remove it)",
            dir.display(),
            if meta.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "not a directory"
            }
        )));
    }
    if meta.mode() & 0o7777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::system(format!("cannot chmod {}: {e}", dir.display())))?;
        for entry in fs::read_dir(dir)?.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                let p = entry.path();
                fs::set_permissions(&p, fs::Permissions::from_mode(0o600))
                    .map_err(|e| Error::system(format!("cannot chmod {}: {e}", p.display())))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(netns_inode: u64, mac: &str) -> Attachment {
        crate::model::sample(netns_inode, mac)
    }

    /// A state directory of its own, removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Self {
            let d = std::env::temp_dir().join(format!("attach-state-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            Self(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Writes a record as an older engine (or a hand) would: whole, renamed
    /// into place, the index untouched.
    fn write_behind(state: &State, r: &Attachment) {
        let dir = state.records_dir();
        let tmp = dir.join("behind.tmp");
        fs::write(&tmp, serde_json::to_string_pretty(r).unwrap()).unwrap();
        fs::rename(&tmp, dir.join(r.record_name())).unwrap();
    }

    /// A node's state in a directory of its own, locked as the engine
    /// holds it while changing records.
    fn locked(tag: &str) -> (Dir, State, Lock) {
        let d = Dir::new(tag);
        let state = State::new(d.0.clone());
        let lock = state.lock().unwrap();
        (d, state, lock)
    }

    /// [`locked`], with two records saved.
    fn with_two(tag: &str) -> (Dir, State, Lock, Attachment, Attachment) {
        let (d, state, lock) = locked(tag);
        let (a, b) = (rec(1, "02:00:00:00:00:01"), rec(2, "02:00:00:00:00:02"));
        state.save(&a).unwrap();
        state.save(&b).unwrap();
        (d, state, lock, a, b)
    }

    #[test]
    fn the_index_follows_saves_and_removes() {
        let (d, state, _lock, a, b) = with_two("follow");
        assert!(state.index_path().exists());
        assert_eq!(state.all().unwrap(), vec![a.clone(), b.clone()]);
        // A fresh engine reads the index, and finds the same.
        assert_eq!(State::new(d.0.clone()).all().unwrap(), vec![a.clone(), b]);
        state.remove(&rec(2, "02:00:00:00:00:02")).unwrap();
        assert_eq!(State::new(d.0.clone()).all().unwrap(), vec![a]);
    }

    #[test]
    fn changes_behind_the_index_are_seen() {
        let (d, state, _lock, _, b) = with_two("behind");
        // Replaced, added and removed without the index knowing.
        let a2 = rec(1, "02:00:00:00:00:0a");
        write_behind(&state, &a2);
        let c = rec(3, "02:00:00:00:00:03");
        write_behind(&state, &c);
        fs::remove_file(state.records_dir().join(b.record_name())).unwrap();
        let want = vec![a2, c];
        assert_eq!(State::new(d.0.clone()).all().unwrap(), want);
        assert_eq!(state.all().unwrap(), want);
        // The next change brings the index back in line.
        let e = rec(4, "02:00:00:00:00:04");
        state.save(&e).unwrap();
        let mut want = want;
        want.push(e);
        assert_eq!(State::new(d.0.clone()).all().unwrap(), want);
        assert!(index::Known::read(&state.index_path(), &state.records_dir(), &[]).is_ok());
    }

    #[test]
    fn a_damaged_index_is_not_used() {
        let (d, state, _lock) = locked("damaged");
        let a = rec(1, "02:00:00:00:00:01");
        state.save(&a).unwrap();
        let text = fs::read_to_string(state.index_path()).unwrap();
        fs::write(state.index_path(), &text[..text.len() / 2]).unwrap();
        assert_eq!(State::new(d.0.clone()).all().unwrap(), vec![a.clone()]);
        fs::write(state.index_path(), "garbage").unwrap();
        assert_eq!(State::new(d.0.clone()).all().unwrap(), vec![a]);
    }

    #[test]
    fn a_corrupt_record_is_still_an_error() {
        let (d, state, _lock) = locked("corrupt");
        state.save(&rec(1, "02:00:00:00:00:01")).unwrap();
        let tmp = state.records_dir().join("x.tmp");
        fs::write(&tmp, "{").unwrap();
        fs::rename(&tmp, state.records_dir().join("9-eth0.json")).unwrap();
        let e = State::new(d.0.clone()).all().unwrap_err();
        assert!(e.message.contains("corrupt record"), "{e}");
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn the_state_is_roots_alone() {
        let (d, state, lock, _, _) = with_two("modes");
        assert_eq!(mode(&d.0), 0o700);
        assert_eq!(mode(&state.records_dir()), 0o700);
        assert_eq!(mode(&d.0.join("lock")), 0o600);
        assert_eq!(mode(&state.index_path()), 0o600);
        for e in fs::read_dir(state.records_dir()).unwrap() {
            assert_eq!(mode(&e.unwrap().path()), 0o600);
        }
        drop(lock);
        // As an older build left it: everything readable, the lock writable
        // by all. Taking the lock narrows it all.
        for p in [&d.0, &state.records_dir()] {
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::set_permissions(d.0.join("lock"), fs::Permissions::from_mode(0o666)).unwrap();
        let rec = fs::read_dir(state.records_dir())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        fs::set_permissions(&rec, fs::Permissions::from_mode(0o644)).unwrap();
        let _lock = state.lock().unwrap();
        assert_eq!(mode(&d.0), 0o700);
        assert_eq!(mode(&state.records_dir()), 0o700);
        assert_eq!(mode(&d.0.join("lock")), 0o600);
        assert_eq!(mode(&rec), 0o600);
    }

    #[test]
    fn a_symlinked_lock_or_state_directory_is_refused() {
        let d = Dir::new("symlink");
        fs::create_dir_all(d.0.join("attachments")).unwrap();
        let target = d.0.join("elsewhere");
        std::os::unix::fs::symlink(&target, d.0.join("lock")).unwrap();
        let e = State::new(d.0.clone()).lock().err().unwrap();
        assert!(e.message.contains("symbolic link"), "{e}");
        assert!(
            e.message.contains(&d.0.join("lock").display().to_string()),
            "{e}"
        );
        assert!(!target.exists(), "the link was followed");

        let real = Dir::new("symlink-real");
        fs::create_dir_all(&real.0).unwrap();
        let link = Dir::new("symlink-dir");
        std::os::unix::fs::symlink(&real.0, &link.0).unwrap();
        let e = State::new(link.0.clone()).lock().err().unwrap();
        assert!(e.message.contains("symbolic link"), "{e}");
        assert!(!real.0.join("lock").exists(), "the link was followed");
    }
}
