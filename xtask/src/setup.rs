//! Installs what building and testing need, on a fresh machine of our kind
//! (Debian 12, stock rustup toolchains only). Every step checks first, so a
//! second run takes a second.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{USER_TOOLCHAIN, run};

const BPF_LINKER_VERSION: &str = "0.13.0";
/// The LLVM major of the eBPF nightly; bpf-linker must link the same one.
const BPF_LINKER_LLVM_FEATURE: &str = "llvm-22";

/// Debian packages for the tests, the demo and the benchmark.
const APT_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "iputils-arping",
    "ethtool",
    "bpftool",
    "iperf3",
    "sockperf",
    "tcpdump",
    "util-linux",
    // The ipvlan l3s tests count packets in the node's netfilter.
    "nftables",
    // A real CNI runtime and the reference plugins (host-local IPAM, macvlan).
    "podman",
    "runc",
    "busybox-static",
    "containernetworking-plugins",
    // `xtask vm-test`: qemu (with virtiofsd) boots older kernels; their
    // modules may be xz-compressed.
    "qemu-system-x86",
    "xz-utils",
    // `systemd-analyze security` rates the agent's unit.
    "systemd",
];

pub fn all() -> Result<()> {
    if euid() != 0 {
        bail!(
            "run as root: the tests and the demo create network namespaces and load BPF programs"
        );
    }
    let ebpf = ebpf_toolchain()?;
    toolchain(USER_TOOLCHAIN, &["rustfmt", "clippy"])?;
    toolchain(&ebpf, &["rust-src"])?;
    apt_packages()?;
    bpf_linker(&ebpf)?;
    bpffs()
}

/// The eBPF nightly, pinned once in attach-ebpf/rust-toolchain.toml (also read
/// by attach-user/build.rs).
pub fn ebpf_toolchain() -> Result<String> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../attach-ebpf/rust-toolchain.toml");
    let text = fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("channel"))
        .and_then(|v| v.split('"').nth(1))
        .map(str::to_owned)
        .with_context(|| format!("no channel in {}", file.display()))
}

fn euid() -> u32 {
    // `id -u` keeps xtask free of libc.
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u32::MAX)
}

fn sysroot(toolchain: &str) -> Option<PathBuf> {
    let out = Command::new("rustup")
        .args(["run", toolchain, "rustc", "--print", "sysroot"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn has_component(sysroot: &Path, component: &str) -> bool {
    match component {
        "rust-src" => sysroot.join("lib/rustlib/src/rust/library/core").is_dir(),
        "clippy" => sysroot.join("bin/cargo-clippy").is_file(),
        "rustfmt" => sysroot.join("bin/rustfmt").is_file(),
        _ => false,
    }
}

fn toolchain(name: &str, components: &[&str]) -> Result<()> {
    if let Some(root) = sysroot(name)
        && components.iter().all(|c| has_component(&root, c))
    {
        return Ok(());
    }
    eprintln!("==> installing toolchain {name} with {components:?}");
    let mut cmd = Command::new("rustup");
    cmd.args(["toolchain", "install", name, "--profile", "minimal"])
        .env_remove("RUSTUP_TOOLCHAIN");
    for c in components {
        cmd.args(["--component", c]);
    }
    run(&mut cmd)
}

fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("==> installing Debian packages {missing:?}");
    run(Command::new("apt-get")
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .map(|o| o.stdout == b"installed")
        .unwrap_or(false)
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        })
}

/// PATH with `$CARGO_HOME/bin` (where bpf-linker goes) in front.
pub fn path_with_cargo_bin() -> std::ffi::OsString {
    let mut paths = vec![cargo_home().join("bin")];
    if let Some(p) = env::var_os("PATH") {
        paths.extend(env::split_paths(&p));
    }
    env::join_paths(paths).expect("PATH entries are joinable")
}

/// bpf-linker built against the eBPF nightly's own libLLVM: prebuilt releases
/// cannot be downloaded here, and the default feature (llvm-23) does not link.
fn bpf_linker(ebpf_toolchain: &str) -> Result<()> {
    let home = cargo_home();
    let prefix = home.join("attach-llvm").join(ebpf_toolchain);
    let stamp = home.join("attach-llvm/bpf-linker.stamp");
    let want = format!("{BPF_LINKER_VERSION} {ebpf_toolchain}");
    let linker = home.join("bin/bpf-linker");
    let works = Command::new(&linker)
        .arg("--version")
        .output()
        .map(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)
        })
        .unwrap_or(false);
    if works && fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == want) {
        return Ok(());
    }
    eprintln!("==> building bpf-linker {BPF_LINKER_VERSION} against {ebpf_toolchain}'s LLVM");
    let sysroot = sysroot(ebpf_toolchain).context("eBPF toolchain missing")?;
    let libllvm = fs::read_dir(sysroot.join("lib"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .with_context(|| format!("no libLLVM.so.* in {}/lib", sysroot.display()))?;
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib)?;
    for name in [
        "libLLVM.so".into(),
        libllvm.file_name().expect("file name").to_owned(),
    ] {
        let link = lib.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    run(Command::new("cargo")
        .arg(format!("+{USER_TOOLCHAIN}"))
        .args([
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--locked",
            "--force",
        ])
        .args([
            "--no-default-features",
            "--features",
            BPF_LINKER_LLVM_FEATURE,
        ])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env("LLVM_PREFIX", &prefix))?;
    fs::write(&stamp, want)?;
    Ok(())
}

fn bpffs() -> Result<()> {
    let mounted = Command::new("mountpoint")
        .args(["-q", "/sys/fs/bpf"])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("==> mounting bpffs on /sys/fs/bpf");
        run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))?;
    }
    Ok(())
}
