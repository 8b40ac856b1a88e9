//! A copy of every record of a node in one file (`records.index`, beside
//! the records directory), so a command reads one file instead of one per
//! attachment: with a few hundred attachments, opening and parsing each
//! record was the largest part of an `add`.
//!
//! The records stay the truth. The index names the records it holds by
//! (file name, inode) and is used only when that list is exactly the
//! directory's (read with one `getdents`, no `stat` per file) and the
//! directory's mtime is the one it was written with. Records are only ever
//! replaced whole (a new file renamed over), never edited in place, so a
//! record written, replaced or removed since — by a crash between a record
//! and its index, an older engine, or a hand — makes the index stale, and
//! the records are read one by one as before. The index is rewritten after
//! every change of the records, under the node's lock.

use std::{
    fs::{self, File},
    io::{self, Read, Write},
    os::unix::fs::{DirEntryExt, MetadataExt},
    path::Path,
};

use crate::{
    error::{Error, Result},
    model::Attachment,
};

const MAGIC: &str = "attach-records-index 1";

/// One record: its file's name and inode, and what it holds as one line of
/// JSON (for the index). Not the record itself: the caller owns those.
#[derive(Clone)]
pub(super) struct Entry {
    pub name: String,
    pub ino: u64,
    json: String,
}

impl Entry {
    pub fn new(name: String, ino: u64, rec: &Attachment) -> Result<Self> {
        Ok(Self {
            name,
            ino,
            json: serde_json::to_string(rec)?,
        })
    }
}

/// Identifies a state of the records directory (its inode and mtime).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Stamp(u64, i64, i64);

impl Stamp {
    pub fn of(dir: &Path) -> io::Result<Self> {
        let m = fs::metadata(dir)?;
        Ok(Self(m.ino(), m.mtime(), m.mtime_nsec()))
    }
}

/// The records as of a state of their directory.
#[derive(Default)]
pub(super) struct Known {
    /// The directory's stamp the entries were read at; `None`: unknown.
    pub stamp: Option<Stamp>,
    pub entries: Vec<Entry>,
}

impl Known {
    /// The records of `dir`, from the index at `index` when it is current,
    /// else read one by one (reusing what `reuse` already holds).
    pub fn read(index: &Path, dir: &Path, reuse: &[Entry]) -> Result<(Self, Vec<Attachment>)> {
        match load(index, dir) {
            Some(read) => Ok(read),
            None => Self::scan(dir, reuse),
        }
    }

    /// The records of `dir`, read one by one (but for what `reuse` already
    /// holds: same name and inode).
    pub fn scan(dir: &Path, reuse: &[Entry]) -> Result<(Self, Vec<Attachment>)> {
        // The stamp before the listing: a change in between leaves a newer
        // mtime than the one kept.
        let stamp = match Stamp::of(dir) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(e) => return Err(e.into()),
        };
        let Some(now) = listing(dir)? else {
            return Ok(Default::default());
        };
        let mut entries = Vec::with_capacity(now.len());
        let mut recs = Vec::with_capacity(now.len());
        for (name, ino) in now {
            let known = reuse.iter().find(|e| e.name == name && e.ino == ino);
            let (entry, rec) =
                match known.and_then(|e| Some((e, serde_json::from_str(&e.json).ok()?))) {
                    Some((e, rec)) => (e.clone(), rec),
                    None => read_record(dir, &name)?,
                };
            entries.push(entry);
            recs.push(rec);
        }
        Ok((
            Self {
                stamp: Some(stamp),
                entries,
            },
            recs,
        ))
    }

    /// Notes that record `name` now holds `entry` (or, with `None`, is gone).
    pub fn set(&mut self, name: &str, entry: Option<Entry>) {
        self.entries.retain(|e| e.name != name);
        self.entries.extend(entry);
    }

    /// Writes the index at `path`. Beside it, not in the records directory:
    /// writing it must not change the directory's mtime.
    pub fn write(&self, path: &Path) -> Result<()> {
        let Some(Stamp(ino, sec, nsec)) = self.stamp else {
            return Err(Error::system("the records' state is unknown"));
        };
        let mut text = String::with_capacity(
            64 + self
                .entries
                .iter()
                .map(|e| e.json.len() + e.name.len() + 24)
                .sum::<usize>(),
        );
        text.push_str(&format!("{MAGIC} {ino} {sec} {nsec}\n"));
        for e in &self.entries {
            if e.name.contains(['\t', '\n']) {
                return Err(Error::system(format!(
                    "record name {:?} cannot be indexed",
                    e.name
                )));
            }
            text.push_str(&format!("{}\t{}\t{}\n", e.ino, e.name, e.json));
        }
        let tmp = path.with_extension("index.tmp");
        let mut f = super::private::private_file(&tmp)?;
        f.write_all(text.as_bytes())?;
        drop(f);
        // Removed, then renamed into place: ext4 flushes a file renamed over
        // another to disk right away (auto_da_alloc), most of a millisecond.
        // A reader in between finds no index and reads the records.
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// The records directory's (file name, inode) of each record, sorted;
/// `None` when there is no directory.
fn listing(dir: &Path) -> io::Result<Option<Vec<(String, u64)>>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e?;
        let path = e.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        out.push((e.file_name().to_string_lossy().into_owned(), e.ino()));
    }
    out.sort();
    Ok(Some(out))
}

/// Reads one record file; its inode is the opened file's, so it always
/// goes with the content read.
fn read_record(dir: &Path, name: &str) -> Result<(Entry, Attachment)> {
    let path = dir.join(name);
    let mut f = File::open(&path)?;
    let ino = f.metadata()?.ino();
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let rec = serde_json::from_str(&text)
        .map_err(|e| Error::system(format!("corrupt record {}: {e}", path.display())))?;
    Ok((Entry::new(name.to_owned(), ino, &rec)?, rec))
}

/// The index at `path` and its records, if it describes the records
/// directory `dir` as it is now.
fn load(path: &Path, dir: &Path) -> Option<(Known, Vec<Attachment>)> {
    let text = fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let stamp = parse_header(lines.next()?)?;
    if Stamp::of(dir).ok()? != stamp {
        return None;
    }
    let mut entries = Vec::new();
    let mut recs = Vec::new();
    for line in lines {
        let mut parts = line.splitn(3, '\t');
        let ino = parts.next()?.parse().ok()?;
        let name = parts.next()?.to_owned();
        let json = parts.next()?;
        recs.push(serde_json::from_str(json).ok()?);
        entries.push(Entry {
            name,
            ino,
            json: json.to_owned(),
        });
    }
    let mut held: Vec<(&str, u64)> = entries.iter().map(|e| (e.name.as_str(), e.ino)).collect();
    held.sort_unstable();
    let now = listing(dir).ok()??;
    let same =
        held.len() == now.len() && held.iter().zip(&now).all(|(a, b)| a.0 == b.0 && a.1 == b.1);
    same.then_some((
        Known {
            stamp: Some(stamp),
            entries,
        },
        recs,
    ))
}

fn parse_header(line: &str) -> Option<Stamp> {
    let mut f = line.strip_prefix(MAGIC)?.split_whitespace();
    let ino = f.next()?.parse().ok()?;
    let sec = f.next()?.parse().ok()?;
    let nsec = f.next()?.parse().ok()?;
    f.next().is_none().then_some(Stamp(ino, sec, nsec))
}
