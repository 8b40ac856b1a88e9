//! `xtask image`: the node image for Kubernetes (contrib/k8s), built offline
//! with podman from the static release binaries: `FROM scratch` (nothing to
//! pull), holding /usr/bin/attach and /usr/bin/attach-cni and nothing else.
//! The DaemonSet runs `attach agent` from it, and `attach-cni --install` in
//! its init container (the image has no shell or `cp`).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{NODE_BINS, run};

/// The image's name; its tag is the workspace's version.
pub const NAME: &str = "localhost/attach";

/// `localhost/attach:<version>`, as contrib/k8s/daemonset.yaml names it.
pub fn reference() -> String {
    format!("{NAME}:{}", env!("CARGO_PKG_VERSION"))
}

/// The Containerfile: the binaries only. Runs `attach agent` by default.
fn containerfile() -> String {
    let version = env!("CARGO_PKG_VERSION");
    format!(
        "FROM scratch\n\
         COPY {bins} /usr/bin/\n\
         LABEL org.opencontainers.image.title=\"attach\" \\\n      \
         org.opencontainers.image.version=\"{version}\" \\\n      \
         org.opencontainers.image.description=\"attach agent and attach-cni plugin\"\n\
         ENTRYPOINT [\"/usr/bin/attach\"]\n\
         CMD [\"agent\"]\n",
        bins = NODE_BINS.join(" "),
    )
}

/// Builds the image from `target/release` (the release build must have
/// run), checks it runs, and with `save` writes it as an OCI archive.
pub fn build(root: &Path, save: Option<&Path>) -> Result<()> {
    let release = root.join("target/release");
    let context = root.join("target/image");
    let _ = fs::remove_dir_all(&context);
    fs::create_dir_all(&context)?;
    for bin in NODE_BINS {
        let from = release.join(bin);
        let bytes = fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
        // FROM scratch has no loader or libc: a dynamic binary would not start.
        if has_interpreter(&bytes)? {
            bail!(
                "{} is dynamically linked; `xtask build --release` links it statically",
                from.display()
            );
        }
        fs::copy(&from, context.join(bin))?;
    }
    fs::write(context.join("Containerfile"), containerfile())?;
    let image = reference();
    eprintln!("==> podman build {image}");
    run(Command::new("podman")
        .args(["build", "--pull=never", "--timestamp", "0", "--tag", &image])
        .arg("--file")
        .arg(context.join("Containerfile"))
        .arg(&context))?;
    smoke_test(&image, &context)?;
    if let Some(file) = save {
        let file = absolute(file)?;
        let _ = fs::remove_file(&file);
        eprintln!("==> podman save {image} -> {}", file.display());
        run(Command::new("podman")
            .args(["save", "--format", "oci-archive", "--output"])
            .arg(&file)
            .arg(&image))?;
    }
    eprintln!("{image} built");
    Ok(())
}

/// Both binaries start in the image (no network: nothing to reach), and
/// the DaemonSet's init container works: the plugin installs itself into a
/// directory of the host (`context`/installed, bind-mounted).
fn smoke_test(image: &str, context: &Path) -> Result<()> {
    let out = podman_run(&[image, "--version"])?;
    if !out.contains(env!("CARGO_PKG_VERSION")) {
        bail!("`attach --version` in {image} said {out:?}");
    }
    let out = podman_run(&[
        "--env",
        "CNI_COMMAND=VERSION",
        "--entrypoint",
        "/usr/bin/attach-cni",
        image,
    ])?;
    if !out.contains("supportedVersions") {
        bail!("attach-cni VERSION in {image} said {out:?}");
    }
    let host = context.join("installed");
    fs::create_dir_all(&host)?;
    let volume = format!("{}:/host/opt/cni/bin", host.display());
    podman_run(&[
        "--volume",
        &volume,
        "--entrypoint",
        "/usr/bin/attach-cni",
        image,
        "--install",
        "/host/opt/cni/bin",
    ])?;
    if fs::read(host.join("attach-cni"))? != fs::read(context.join("attach-cni"))? {
        bail!("attach-cni --install in {image} did not copy the plugin");
    }
    Ok(())
}

/// `podman run --rm` without a network; the open-files and processes limits
/// set low (podman's defaults exceed the hard limits of some hosts, this
/// one's among them, and runc then cannot start anything).
fn podman_run(args: &[&str]) -> Result<String> {
    let out = Command::new("podman")
        .args(["run", "--rm", "--network=none"])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ])
        .args(args)
        .output()
        .context("cannot start podman")?;
    if !out.status.success() {
        bail!(
            "podman run {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir()?.join(p)
    })
}

/// Whether an ELF64 little-endian file asks for a program interpreter
/// (PT_INTERP): a dynamically linked executable.
fn has_interpreter(elf: &[u8]) -> Result<bool> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        bail!("not an ELF64 little-endian file");
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into()?) as usize;
    let (entsize, count) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    for i in 0..count {
        let at = phoff + i * entsize;
        let p_type = elf.get(at..at + 4).context("program header past the end")?;
        if u32::from_le_bytes(p_type.try_into()?) == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_is_the_daemonsets() {
        let ds = include_str!("../../contrib/k8s/daemonset.yaml");
        let images: Vec<&str> = ds
            .lines()
            .filter_map(|l| l.trim().strip_prefix("image: "))
            .collect();
        assert_eq!(images.len(), 2, "{images:?}");
        assert!(images.iter().all(|i| *i == reference()), "{images:?}");
    }

    #[test]
    fn the_containerfile_holds_the_binaries_only() {
        let c = containerfile();
        assert!(c.starts_with("FROM scratch\n"), "{c}");
        assert!(c.contains("COPY attach attach-cni /usr/bin/"), "{c}");
        assert!(!c.contains("RUN "), "{c}");
    }

    #[test]
    fn dynamic_executables_are_told_apart() {
        // This test binary is dynamically linked (the default).
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(has_interpreter(&me).unwrap());
        assert!(has_interpreter(b"#!/bin/sh\n").is_err());
    }
}
