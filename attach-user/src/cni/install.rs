//! `attach-cni --install BIN_DIR [--conf-dir DIR]`: what a Kubernetes
//! DaemonSet's init container runs (its image has no shell or `cp`): the
//! plugin copies itself into the node's CNI plugin directory and, when
//! asked, the sample network configuration into its configuration
//! directory. Runtimes never pass arguments, so these cannot be mistaken
//! for a CNI call.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

/// The sample configuration (contrib/10-attach.conflist).
pub const SAMPLE_CONFLIST: &str = include_str!("../../../contrib/10-attach.conflist");

/// What `--install` was asked to do.
#[derive(Debug, PartialEq)]
pub struct Install {
    pub bin_dir: PathBuf,
    pub conf_dir: Option<PathBuf>,
}

impl Install {
    /// `--install BIN_DIR [--conf-dir DIR]` from the arguments after the
    /// program's name; `None` when they ask for no install (a CNI call).
    pub fn from_args(args: &[String]) -> Option<Result<Self, String>> {
        let first = args.first()?;
        if first != "--install" {
            return Some(Err(format!(
                "unexpected argument {first:?}: attach-cni is run by a container runtime \
                 (CNI_COMMAND in the environment), or as `attach-cni --install BIN_DIR \
                 [--conf-dir DIR]`"
            )));
        }
        let usage = || Err("usage: attach-cni --install BIN_DIR [--conf-dir DIR]".to_owned());
        match &args[1..] {
            [bin] => Some(Ok(Self {
                bin_dir: bin.into(),
                conf_dir: None,
            })),
            [bin, flag, conf] if flag == "--conf-dir" => Some(Ok(Self {
                bin_dir: bin.into(),
                conf_dir: Some(conf.into()),
            })),
            _ => Some(usage()),
        }
    }

    /// Copies `exe` to BIN_DIR/attach-cni (replacing it by a rename: a
    /// runtime may be running the old one) and writes the sample
    /// configuration into the configuration directory unless a file of its
    /// name is there (an operator's edit is kept). Returns what it wrote.
    pub fn run(&self, exe: &Path) -> std::io::Result<Vec<PathBuf>> {
        let mut wrote = Vec::new();
        let bin = self.bin_dir.join("attach-cni");
        replace(&bin, &fs::read(exe)?, 0o755)?;
        wrote.push(bin);
        if let Some(dir) = &self.conf_dir {
            let conf = dir.join("10-attach.conflist");
            if !conf.exists() {
                replace(&conf, SAMPLE_CONFLIST.as_bytes(), 0o644)?;
                wrote.push(conf);
            }
        }
        Ok(wrote)
    }
}

/// Writes `path` whole or not at all: a temporary file beside it, renamed.
fn replace(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn arguments() {
        assert_eq!(Install::from_args(&[]), None);
        assert_eq!(
            Install::from_args(&args(&["--install", "/b"])),
            Some(Ok(Install {
                bin_dir: "/b".into(),
                conf_dir: None
            }))
        );
        assert_eq!(
            Install::from_args(&args(&["--install", "/b", "--conf-dir", "/c"])),
            Some(Ok(Install {
                bin_dir: "/b".into(),
                conf_dir: Some("/c".into())
            }))
        );
        for bad in [&["--install"][..], &["--install", "/b", "/c"], &["ADD"]] {
            assert!(
                matches!(Install::from_args(&args(bad)), Some(Err(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn installs_itself_and_keeps_an_edited_conflist() {
        let root = std::env::temp_dir().join(format!("attach-cni-install-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let exe = root.join("exe");
        fs::create_dir_all(&root).unwrap();
        fs::write(&exe, b"binary").unwrap();
        let install = Install {
            bin_dir: root.join("bin"),
            conf_dir: Some(root.join("net.d")),
        };
        let wrote = install.run(&exe).unwrap();
        assert_eq!(wrote.len(), 2);
        let bin = root.join("bin/attach-cni");
        assert_eq!(fs::read(&bin).unwrap(), b"binary");
        assert_eq!(
            fs::metadata(&bin).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let conf = root.join("net.d/10-attach.conflist");
        assert_eq!(fs::read_to_string(&conf).unwrap(), SAMPLE_CONFLIST);
        // Again, over an edited configuration and the running binary.
        fs::write(&conf, "{}").unwrap();
        fs::write(&exe, b"binary v2").unwrap();
        assert_eq!(install.run(&exe).unwrap(), vec![bin.clone()]);
        assert_eq!(fs::read(&bin).unwrap(), b"binary v2");
        assert_eq!(fs::read_to_string(&conf).unwrap(), "{}");
        let left: Vec<_> = fs::read_dir(root.join("bin")).unwrap().collect();
        assert_eq!(left.len(), 1, "temporary files left: {left:?}");
        fs::remove_dir_all(&root).unwrap();
    }
}
