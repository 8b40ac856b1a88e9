//! The drivers and tc hooks a scratch namespace showed, kept for the rest
//! of the boot (`/run/attach/drivers`, stamped with the boot id).
//!
//! Probing makes a network namespace and five devices; the kernel tears a
//! namespace down later in shared work that holds the RTNL lock, so probing
//! in every `attach add` (each a process of its own) cost every add an
//! occasional stall of ~100 ms besides the probe itself. What a boot's
//! kernel has stays; only what was found counts (a driver found missing
//! is asked again, in case its module is installed meanwhile).

use std::path::PathBuf;

use super::Feature;

fn path() -> PathBuf {
    std::path::Path::new(attach_common::STATE_ROOT).join("drivers")
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The features kept for this boot, if any.
pub fn read() -> Option<Vec<Feature>> {
    let text = std::fs::read_to_string(path()).ok()?;
    let mut lines = text.lines();
    if lines.next()? != boot_id()? {
        return None;
    }
    lines
        .map(|name| {
            Feature::ALL
                .iter()
                .find(|f| format!("{f:?}") == name)
                .copied()
        })
        .collect()
}

/// Keeps `found` for this boot; best effort (a read-only /run only costs
/// the next process a probe).
pub fn write(found: &[Feature]) {
    let Some(boot) = boot_id() else { return };
    let mut text = boot;
    for f in found {
        text.push('\n');
        text.push_str(&format!("{f:?}"));
    }
    let path = path();
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let kept = std::fs::create_dir_all(attach_common::STATE_ROOT)
        .and_then(|()| std::fs::write(&tmp, text))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = kept {
        let _ = std::fs::remove_file(&tmp);
        tracing::debug!("keeping the drivers found in {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one process keeps, the next reads back in the same boot; a
    /// file from another boot is not believed. Needs root (writes /run).
    #[test]
    fn kept_drivers_are_read_back_in_the_same_boot_only() {
        write(&[Feature::Veth, Feature::Clsact]);
        assert_eq!(read(), Some(vec![Feature::Veth, Feature::Clsact]));
        std::fs::write(path(), "another-boot\nVeth\nMacvlan").unwrap();
        assert_eq!(read(), None);
        // The next process probes afresh.
        std::fs::remove_file(path()).unwrap();
    }
}
