//! Bind mounts of namespace files: how the engine holds a network namespace
//! open without a process in it (as `ip netns add` does).

use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use crate::error::{Error, Result};

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::invalid(format!("path {} contains a NUL byte", p.display())))
}

fn mount(src: Option<&Path>, target: &Path, flags: libc::c_ulong) -> io::Result<()> {
    let src = src.map(cstr).transpose().map_err(io::Error::other)?;
    let target = cstr(target).map_err(io::Error::other)?;
    let none = c"none";
    // SAFETY: valid C strings (or null) for the duration of the call.
    let r = unsafe {
        libc::mount(
            src.as_ref().map_or(c"".as_ptr(), |s| s.as_ptr()),
            target.as_ptr(),
            none.as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes `dir` (created if needed) a mount point with shared propagation,
/// binding it onto itself first if it is not a mount point yet: exactly what
/// `ip netns add` does for /run/netns. Mounts made below it then propagate
/// to copies of this mount namespace, and so do unmounts: a namespace file
/// unmounted here is unmounted everywhere, and the namespace can be freed.
pub fn make_shared_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::system(format!("cannot create {}: {e}", dir.display())))?;
    let mut bound = false;
    loop {
        match mount(None, dir, libc::MS_SHARED | libc::MS_REC) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !bound => {
                mount(Some(dir), dir, libc::MS_BIND | libc::MS_REC).map_err(|e| {
                    Error::system(format!("cannot bind {} onto itself: {e}", dir.display()))
                })?;
                bound = true;
            }
            Err(e) => {
                return Err(Error::system(format!(
                    "cannot make {} a shared mount: {e}",
                    dir.display()
                )));
            }
        }
    }
}

/// Bind-mounts `src` (a namespace file, e.g. `/proc/self/fd/N`) on
/// `target`, an existing file.
pub fn bind(src: &Path, target: &Path) -> Result<()> {
    mount(Some(src), target, libc::MS_BIND).map_err(|e| {
        Error::system(format!(
            "cannot bind-mount the namespace on {}: {e}",
            target.display()
        ))
    })
}

/// Lazily unmounts `target`; one that is not mounted (or gone) is fine.
pub fn unmount(target: &Path) -> Result<()> {
    let c = cstr(target)?;
    // SAFETY: valid C string.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::ENOENT) => Ok(()),
        _ => Err(Error::system(format!(
            "cannot unmount {}: {e}",
            target.display()
        ))),
    }
}

/// Mount points of this mount namespace, in mount order.
pub fn mount_points() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(unescape))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(oct) = std::str::from_utf8(&b[i + 1..i + 4])
            && let Ok(v) = u8::from_str_radix(oct, 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

pub fn is_mount_point(path: &Path) -> bool {
    mount_points().iter().any(|m| m == path)
}

/// Mount points at or below `dir`, deepest (latest) first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect();
    v.reverse();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape("/run/a\\040b"), PathBuf::from("/run/a b"));
        assert_eq!(unescape("/plain"), PathBuf::from("/plain"));
        assert_eq!(unescape("/x\\"), PathBuf::from("/x\\"));
    }

    #[test]
    fn root_is_a_mount_point() {
        assert!(is_mount_point(Path::new("/")));
    }
}
