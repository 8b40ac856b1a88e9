//! Debian's cloud kernels, each resolved from its suite's metapackage and
//! kept extracted in a cache outside the checkout (so `cargo clean` and a
//! fresh clone keep it). apt runs with a private configuration: nothing of
//! the system's package state is read or changed.

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result, bail};

use crate::run;

/// Outlives `cargo clean` and checkouts.
pub const CACHE_DIR: &str = "/var/cache/attach-vm";
/// The metapackage whose Depends names each suite's current cloud kernel.
const META: &str = "linux-image-cloud-amd64";
/// A resolved kernel is looked up again (apt lists refreshed) after this.
const REFRESH_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// A kernel line and the Debian suites that ship it (the newest wins).
pub struct Line {
    pub name: &'static str,
    suites: &'static [&'static str],
}

pub const LINES: &[Line] = &[
    Line {
        name: "5.10",
        suites: &["bullseye", "bullseye-security"],
    },
    Line {
        name: "6.1",
        suites: &["bookworm", "bookworm-security"],
    },
    Line {
        name: "6.12",
        suites: &["trixie", "trixie-security"],
    },
];

pub fn line(name: &str) -> Result<&'static Line> {
    LINES.iter().find(|l| l.name == name).with_context(|| {
        let known: Vec<_> = LINES.iter().map(|l| l.name).collect();
        format!("unknown kernel {name}: known are {}", known.join(", "))
    })
}

/// An extracted kernel package.
pub struct Kernel {
    pub line: &'static str,
    pub package: String,
    pub version: String,
    /// `uname -r`.
    pub release: String,
    pub vmlinuz: PathBuf,
    pub config: PathBuf,
    /// `…/modules/<release>`.
    pub modules: PathBuf,
}

/// The kernels of `lines`, downloading only what the cache lacks.
pub fn ensure(lines: &[&'static Line]) -> Result<Vec<Kernel>> {
    let cache = Path::new(CACHE_DIR);
    let kernels_dir = cache.join("kernels");
    fs::create_dir_all(&kernels_dir)
        .with_context(|| format!("creating {}", kernels_dir.display()))?;
    // Two runs at once must not extract into the same directory.
    let lock = File::create(cache.join("lock"))?;
    lock.lock()
        .with_context(|| format!("locking {}", cache.display()))?;
    let apt = Apt {
        dir: cache.join("apt"),
    };
    // The lists are refreshed at most once, and only if a kernel needs it.
    let mut updated: Option<Result<(), String>> = None;
    let mut kernels = Vec::new();
    for &line in lines {
        let record = Record::of(&kernels_dir, line);
        if let Some(k) = record.fresh() {
            kernels.push(k);
            continue;
        }
        let update = updated.get_or_insert_with(|| apt.update().map_err(|e| format!("{e:#}")));
        kernels.push(match update {
            Ok(()) => install(&apt, &record)?,
            // Offline: a cached kernel, however old, still tests.
            Err(e) => {
                let k = record.stale().with_context(|| e.clone())?;
                eprintln!(
                    "warning: kernel {}: package lists not refreshed ({e}); using the cached {}",
                    line.name, k.package
                );
                k
            }
        });
    }
    Ok(kernels)
}

/// Resolves `record`'s line anew; downloads and extracts it if not cached.
fn install(apt: &Apt, record: &Record) -> Result<Kernel> {
    let (package, version) = apt.resolve(record.line)?;
    let tree = record.dir.join(format!("{package}_{version}"));
    if !tree.join(COMPLETE).exists() {
        eprintln!(
            "==> kernel {}: fetching {package} {version}",
            record.line.name
        );
        extract(&apt.download(&package, &version)?, &tree)?;
    }
    record.write(&package, &version)?;
    record.prune(&tree);
    Kernel::at(record.line.name, &tree, package, version)
}

/// Marks a fully extracted tree.
const COMPLETE: &str = ".complete";

/// `<kernels>/<line>.resolved`: the package last resolved for a line; its
/// age says when to ask the archive again.
struct Record {
    dir: PathBuf,
    line: &'static Line,
}

impl Record {
    fn of(dir: &Path, line: &'static Line) -> Record {
        Record {
            dir: dir.to_path_buf(),
            line,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.resolved", self.line.name))
    }

    /// The recorded kernel, if it is extracted (at any age).
    fn stale(&self) -> Result<Kernel> {
        let text = fs::read_to_string(self.path())
            .with_context(|| format!("no cached kernel {}", self.line.name))?;
        let (package, version) = text
            .trim()
            .split_once(' ')
            .with_context(|| format!("malformed {}", self.path().display()))?;
        let tree = self.dir.join(format!("{package}_{version}"));
        if !tree.join(COMPLETE).exists() {
            bail!("cached kernel {} is incomplete", self.line.name);
        }
        Kernel::at(self.line.name, &tree, package.into(), version.into())
    }

    /// The recorded kernel if it was resolved less than a week ago.
    fn fresh(&self) -> Option<Kernel> {
        let age = fs::metadata(self.path())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())?;
        (age < REFRESH_AFTER).then(|| self.stale().ok())?
    }

    fn write(&self, package: &str, version: &str) -> Result<()> {
        fs::write(self.path(), format!("{package} {version}\n"))
            .with_context(|| format!("writing {}", self.path().display()))
    }

    /// Removes this line's superseded kernels (best effort).
    fn prune(&self, keep: &Path) {
        let prefix = format!("linux-image-{}.", self.line.name);
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && e.path() != keep {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

impl Kernel {
    fn at(line: &'static str, tree: &Path, package: String, version: String) -> Result<Kernel> {
        let boot = tree.join("boot");
        let release = fs::read_dir(&boot)
            .with_context(|| format!("reading {}", boot.display()))?
            .flatten()
            .find_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix("vmlinuz-").map(str::to_owned)
            })
            .with_context(|| format!("no vmlinuz in {}", boot.display()))?;
        let modules = ["lib/modules", "usr/lib/modules"]
            .iter()
            .map(|d| tree.join(d).join(&release))
            .find(|d| d.is_dir())
            .with_context(|| format!("no modules for {release} in {}", tree.display()))?;
        Ok(Kernel {
            line,
            vmlinuz: boot.join(format!("vmlinuz-{release}")),
            config: boot.join(format!("config-{release}")),
            modules,
            package,
            version,
            release,
        })
    }
}

fn extract(deb: &Path, tree: &Path) -> Result<()> {
    let tmp = tree.with_extension("partial");
    let _ = fs::remove_dir_all(&tmp);
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tmp))?;
    fs::write(tmp.join(COMPLETE), "")?;
    let _ = fs::remove_dir_all(tree);
    fs::rename(&tmp, tree).with_context(|| format!("renaming to {}", tree.display()))?;
    let _ = fs::remove_file(deb);
    Ok(())
}

/// apt with a private sources list, lists and cache under `dir`.
struct Apt {
    dir: PathBuf,
}

impl Apt {
    fn command(&self, tool: &str) -> Command {
        let d = &self.dir;
        let mut cmd = Command::new(tool);
        for (key, value) in [
            ("Dir::Etc::SourceList", d.join("sources.list")),
            ("Dir::Etc::SourceParts", "/dev/null".into()),
            ("Dir::State::Lists", d.join("lists")),
            ("Dir::Cache", d.join("cache")),
            ("Dir::State::status", "/dev/null".into()),
            // Downloads land in our root-owned cache.
            ("APT::Sandbox::User", "root".into()),
            // Package lists only: no AppStream metadata, no translations.
            (
                "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled",
                "false".into(),
            ),
            ("Acquire::Languages", "none".into()),
        ] {
            cmd.arg("-o").arg(format!("{key}={}", value.display()));
        }
        cmd.arg("-q");
        cmd
    }

    fn sources() -> String {
        LINES
            .iter()
            .flat_map(|l| l.suites)
            .map(|s| {
                let archive = if s.ends_with("-security") {
                    "debian-security"
                } else {
                    "debian"
                };
                format!("deb http://deb.debian.org/{archive} {s} main\n")
            })
            .collect()
    }

    fn update(&self) -> Result<()> {
        for d in ["lists/partial", "cache/archives/partial", "debs"] {
            fs::create_dir_all(self.dir.join(d))?;
        }
        fs::write(self.dir.join("sources.list"), Self::sources())?;
        eprintln!("==> refreshing the kernel package lists");
        let out = self
            .command("apt-get")
            .arg("update")
            .stdin(Stdio::null())
            .output()
            .context("cannot start apt-get")?;
        if !out.status.success() {
            bail!(
                "apt-get update of the kernel suites failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// The image package the metapackage depends on in `line`'s suites,
    /// the newest version if several.
    fn resolve(&self, line: &Line) -> Result<(String, String)> {
        let out = self
            .command("apt-cache")
            .args(["show", META])
            .output()
            .context("cannot start apt-cache")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let prefix = format!("linux-image-{}.", line.name);
        let mut best: Option<(String, String)> = None;
        for (package, version) in text.split("\n\n").filter_map(image_of) {
            if package.starts_with(&prefix)
                && best.as_ref().is_none_or(|(_, v)| version_gt(&version, v))
            {
                best = Some((package, version));
            }
        }
        best.with_context(|| {
            format!(
                "no {META} for {} ({}) in the archive",
                line.name,
                line.suites.join(", ")
            )
        })
    }

    fn download(&self, package: &str, version: &str) -> Result<PathBuf> {
        let dir = self.dir.join("debs");
        run(self
            .command("apt-get")
            .args(["download", &format!("{package}={version}")])
            .current_dir(&dir))?;
        fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                name.starts_with(&format!("{package}_")) && name.ends_with(".deb")
            })
            .with_context(|| format!("apt-get download left no {package} in {}", dir.display()))
    }
}

/// (image package, version) from one `apt-cache show` paragraph of the
/// metapackage: its Depends is `linux-image-<release> (= <version>)`.
fn image_of(paragraph: &str) -> Option<(String, String)> {
    let field = |name: &str| {
        paragraph
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
    };
    let depends = field("Depends")?;
    let package = depends.split([' ', ',']).next()?.to_owned();
    let version = match depends.split_once("(= ") {
        Some((_, rest)) => rest.split(')').next()?,
        None => field("Version")?,
    };
    Some((package, version.to_owned()))
}

/// Debian version order (`dpkg --compare-versions`).
fn version_gt(a: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_image_a_metapackage_names() {
        let p = "Package: linux-image-cloud-amd64\nVersion: 6.1.176-1\n\
                 Depends: linux-image-6.1.0-50-cloud-amd64 (= 6.1.176-1)\nSection: kernel";
        assert_eq!(
            image_of(p),
            Some((
                "linux-image-6.1.0-50-cloud-amd64".into(),
                "6.1.176-1".into()
            ))
        );
        assert_eq!(image_of("Package: x\nVersion: 1"), None);
    }

    #[test]
    fn security_suites_come_from_their_archive() {
        let s = Apt::sources();
        assert!(s.contains("deb http://deb.debian.org/debian bullseye main\n"));
        assert!(s.contains("deb http://deb.debian.org/debian-security bullseye-security main\n"));
    }
}
