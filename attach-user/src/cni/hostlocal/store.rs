//! host-local's on-disk store, byte for byte: a directory per network, one
//! file per reserved address named by the address and holding
//! `<containerID>\r\n<ifname>`, `last_reserved_ip.<range set index>` holding
//! the last address reserved from that set, and an exclusive `flock` on the
//! directory's `lock` file around every change. The real host-local and this
//! code can therefore share a directory, even at the same time.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    net::IpAddr,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

/// What host-local writes between the container's ID and the interface.
const LINE_BREAK: &str = "\r\n";
const LAST_IP_PREFIX: &str = "last_reserved_ip.";

/// The directory of one network, opened as host-local's `disk.New` does.
pub struct Store {
    dir: PathBuf,
    lock: File,
}

/// The store held under its lock; the lock goes with it.
pub struct Locked<'a> {
    store: &'a Store,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = self.store.lock.unlock();
    }
}

impl Store {
    /// `<data_dir>/<network>`, made if missing (0755), with its `lock` file
    /// (made 0750 as host-local's file mutex makes it).
    pub fn open(data_dir: &Path, network: &str) -> io::Result<Self> {
        let dir = data_dir.join(network);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o750)
            .open(dir.join("lock"))?;
        Ok(Self { dir, lock })
    }

    pub fn lock(&self) -> io::Result<Locked<'_>> {
        self.lock.lock()?;
        Ok(Locked { store: self })
    }
}

/// The content of a lease file of `id` on `ifname`.
fn key(id: &str, ifname: &str) -> String {
    format!("{}{LINE_BREAK}{ifname}", id.trim())
}

impl Locked<'_> {
    fn path(&self, name: &str) -> PathBuf {
        self.store.dir.join(name)
    }

    /// Reserves `ip` for `id`/`ifname`; false when it is taken. Records it
    /// as the last address reserved from range set `set`.
    pub fn reserve(&self, id: &str, ifname: &str, ip: IpAddr, set: usize) -> io::Result<bool> {
        let path = self.path(&ip.to_string());
        let mut f = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e),
        };
        if let Err(e) = f.write_all(key(id, ifname).as_bytes()) {
            drop(f);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        drop(f);
        write_file(
            &self.path(&format!("{LAST_IP_PREFIX}{set}")),
            ip.to_string().as_bytes(),
        )?;
        Ok(true)
    }

    /// The last address reserved from range set `set`, if it reads as one
    /// (as host-local reads it: the whole file, untrimmed).
    pub fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        fs::read_to_string(self.path(&format!("{LAST_IP_PREFIX}{set}")))
            .ok()?
            .parse()
            .ok()
    }

    /// The addresses leased to `id`/`ifname` (or, as files of older
    /// host-locals say, to `id` alone).
    pub fn get_by_id(&self, id: &str, ifname: &str) -> Vec<IpAddr> {
        let (new, old) = (key(id, ifname), id.trim().to_owned());
        let mut out = Vec::new();
        walk(&self.store.dir, &mut |path, content| {
            if (content == new || content == old)
                && let Some(ip) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.parse().ok())
            {
                out.push(ip);
            }
        });
        out
    }

    /// Whether `id`/`ifname` (or `id` alone, from an older host-local) has
    /// an address: what CHECK asks.
    pub fn has_id(&self, id: &str, ifname: &str) -> bool {
        let (new, old) = (key(id, ifname), id.trim().to_owned());
        let mut found = (false, false);
        walk(&self.store.dir, &mut |_, content| {
            found.0 |= content == new;
            found.1 |= content == old;
        });
        found.0 || found.1
    }

    /// Releases every lease of `id`/`ifname`; if there is none, every lease
    /// of `id` alone (files of older host-locals). Nothing to release is
    /// not an error (DEL is idempotent).
    pub fn release_by_id(&self, id: &str, ifname: &str) {
        let remove = |want: &str| {
            let mut any = false;
            walk(&self.store.dir, &mut |path, content| {
                if content == want && fs::remove_file(path).is_ok() {
                    any = true;
                }
            });
            any
        };
        if !remove(&key(id, ifname)) {
            remove(id.trim());
        }
    }
}

/// What host-local's `ioutil.WriteFile` leaves (the file holding `data`,
/// made 0644), written over in place and then cut to length rather than
/// truncated first: readers hold the lock, so they never see the
/// difference, and the file keeps its block (on a filesystem mounted with
/// `discard`, freeing it costs a synchronous discard, about a millisecond).
fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)?;
    f.write_all(data)?;
    f.set_len(data.len() as u64)
}

/// Every readable file under `dir` (recursively, not through symbolic links
/// to directories, as host-local walks), with
/// its content trimmed; unreadable entries are skipped as host-local skips
/// them.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path, &str)) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, f);
        } else if let Ok(content) = fs::read(&path) {
            f(&path, String::from_utf8_lossy(&content).trim());
        }
    }
}
