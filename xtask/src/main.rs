//! Project tasks. Run with the machine's stock toolchain:
//! `cargo +stable xtask <task>`; every task first installs what it needs.

mod image;
mod layout;
mod setup;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

/// Toolchain for user space (aya 0.16 needs rustc 1.98).
pub const USER_TOOLCHAIN: &str = "1.98.0";

#[derive(Parser)]
#[command(about = "attach project tasks (run as root: tests and the demo use network namespaces)")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install toolchains, bpf-linker, apt packages and mount bpffs (idempotent).
    Setup,
    /// Check the code's shape: no import circle between files, no arrow
    /// from the library into a front end, no source file over 700 lines.
    Layout,
    /// Build the eBPF programs and the `attach` binary.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Run every check: rustfmt, clippy, unit tests, BPF_PROG_TEST_RUN and namespace tests,
    /// then (without a filter) the demo with the static release binaries and the kernel
    /// matrix (`vm-test` on every kernel).
    Test {
        /// Only run tests whose name contains this.
        filter: Option<String>,
        /// Skip rustfmt and clippy.
        #[arg(long)]
        no_lint: bool,
    },
    /// Build a lab of network namespaces and show every attach mode working.
    Demo {
        /// Extra arguments for the demo binary (see `--help` after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build the node image for Kubernetes (contrib/k8s), offline with podman:
    /// FROM scratch, the static release binaries only, tagged
    /// localhost/attach:<version>; checked to run.
    Image {
        /// Also write the image to FILE as an OCI archive (for `ctr images
        /// import`, `podman load`, or a registry).
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
    },
    /// Run the datapath fuzzer: structured and random frames through the macvlan receive,
    /// passthru receive, transmit and XDP programs and the ipvlan receive and transmit programs
    /// (every mode and flag) with BPF_PROG_TEST_RUN, each checked against the reference model of
    /// the kernel's rules; reports frames and disagreements per mode.
    Fuzz {
        /// Frames per mode.
        #[arg(long, default_value_t = 1_000_000)]
        frames: u64,
        /// Seed of the frame generator (the CI run's fixed one by default).
        #[arg(long)]
        seed: Option<u64>,
        /// The build of the programs older kernels get.
        #[arg(long)]
        compat: bool,
    },
    /// Run the benchmark (`attach bench`) in a fresh lab.
    Bench {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run test suites on older kernels: boot Debian's cloud kernels under qemu, each with
    /// the host's root (read-only) as its root, and run the host-built test binaries in them.
    ///
    /// Kernels are cached in /var/cache/attach-vm (looked up again weekly); consoles are
    /// written to target/vm/<kernel>.log. Fails if any kernel's suites fail, its guest gives
    /// no exit status, or it runs out of time.
    VmTest {
        /// Kernel line to boot: 5.10, 6.1 or 6.12 (repeatable or comma-separated); default all.
        #[arg(long, value_delimiter = ',', value_name = "VERSION")]
        kernel: Vec<String>,
        /// VMs at once, the host's cores shared out as their vCPUs [default: all kernels].
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
        /// Wall-clock limit per VM in seconds; a VM still running then is killed and fails.
        #[arg(long, value_name = "SECS", default_value_t = 3600)]
        timeout: u64,
        /// How qemu runs the guest (KVM hangs on some hosts).
        #[arg(long, value_enum, default_value = "tcg")]
        accel: vm::Accel,
        /// Echo every guest's console, each line prefixed with its kernel.
        #[arg(long)]
        console: bool,
        /// Suites to run instead of the default list (GUEST_SUITES in xtask/src/vm/suites.rs):
        /// TARGET (a test target, e.g. macvlan) or TARGET:PATTERN (only its tests whose name
        /// contains PATTERN).
        #[arg(last = true, value_name = "FILTER")]
        filter: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.task {
        Task::Setup => setup::all(),
        Task::Layout => layout::check(&root),
        Task::Build { release } => {
            setup::all()?;
            build(&root, release)
        }
        Task::Test { filter, no_lint } => {
            setup::all()?;
            test(&root, filter.as_deref(), no_lint)
        }
        Task::Demo { args } => {
            setup::all()?;
            demo(&root, &args)
        }
        Task::Image { save } => {
            setup::all()?;
            build(&root, true)?;
            image::build(&root, save.as_deref())
        }
        Task::Fuzz {
            frames,
            seed,
            compat,
        } => {
            setup::all()?;
            fuzz(&root, frames, seed, compat)
        }
        Task::Bench { args } => {
            setup::all()?;
            build(&root, true)?;
            let bin = root.join("target/release");
            run(Command::new(bin.join("attach"))
                .arg("bench")
                .args(&args)
                .env("ATTACH_BIN", bin.join("attach")))
        }
        Task::VmTest {
            kernel,
            jobs,
            timeout,
            accel,
            console,
            filter,
        } => {
            setup::all()?;
            vm::run(
                &root,
                &vm::Opts {
                    kernels: kernel,
                    jobs,
                    timeout: Duration::from_secs(timeout),
                    accel,
                    console,
                    filter,
                },
            )
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// `cargo` of the pinned user-space toolchain, free of the outer cargo's
/// environment (a `+stable` outer run sets RUSTUP_TOOLCHAIN for children).
pub fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{USER_TOOLCHAIN}"))
        .current_dir(root)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env("PATH", setup::path_with_cargo_bin());
    cmd
}

/// The binaries a node runs: linked statically in a release build.
const NODE_BINS: [&str; 2] = ["attach", "attach-cni"];

fn build(root: &Path, release: bool) -> Result<()> {
    if !release {
        return run(cargo(root).args([
            "build",
            "--package",
            "attach-user",
            "--package",
            "attach-tests",
        ]));
    }
    run(cargo(root).args(["build", "--release", "--package", "attach-tests"]))?;
    // A runtime starts `attach` / `attach-cni` once per container: linked
    // statically they start in about half a millisecond less (no dynamic
    // loader, no relocation of a PIE against three libraries), a tenth of
    // an attach (`attach bench`, M7). Only the final crate needs the flag,
    // so `cargo rustc` (the dependencies and proc macros stay as they are).
    // Never built by a plain `cargo build` here: it would relink them
    // dynamically, and the next release build statically again.
    for bin in NODE_BINS {
        run(cargo(root).args([
            "rustc",
            "--release",
            "--package",
            "attach-user",
            "--bin",
            bin,
            "--",
            "-C",
            "target-feature=+crt-static",
        ]))?;
    }
    Ok(())
}

fn test(root: &Path, filter: Option<&str>, no_lint: bool) -> Result<()> {
    if !no_lint {
        eprintln!("==> rustfmt");
        run(cargo(root).args(["fmt", "--all", "--check"]))?;
        eprintln!("==> clippy");
        run(cargo(root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
        eprintln!("==> layout");
        layout::check(root)?;
    }
    eprintln!("==> build");
    build(root, false)?;
    eprintln!("==> tests");
    let mut cmd = cargo(root);
    // Privileged tests share kernel state (bpffs, links): one at a time.
    cmd.args(["test", "--no-fail-fast"])
        .env("ATTACH_BIN", root.join("target/debug/attach"));
    cmd.arg("--");
    if let Some(f) = filter {
        cmd.arg(f);
    }
    cmd.arg("--test-threads=1");
    run(&mut cmd)?;
    if filter.is_none() {
        // The build older kernels get (no bpf_loop: an unrolled flood
        // walk), frame by frame here too, where its verifying is quick.
        eprintln!("==> PROG_TEST_RUN with the compat build of the programs");
        run(cargo(root)
            .args(["test", "-p", "attach-user", "--test", "prog_test_run", "--"])
            .arg("--test-threads=1")
            .env("ATTACH_EBPF_BUILD", "compat"))?;
        // What users install: the static release binaries, through the
        // README's demo (the tests above ran debug builds).
        eprintln!("==> demo (static release binaries)");
        demo(root, &[])?;
        // The kernels users run: Debian's 5.10, 6.1 and 6.12 under qemu.
        eprintln!("==> kernel matrix");
        vm::run(root, &vm::Opts::matrix())?;
    }
    Ok(())
}

fn demo(root: &Path, args: &[String]) -> Result<()> {
    build(root, true)?;
    let bin = root.join("target/release");
    run(Command::new(bin.join("attach-demo"))
        .args(args)
        .env("ATTACH_BIN", bin.join("attach")))
}

/// The fuzz cases of the BPF_PROG_TEST_RUN suite, at `frames` per mode.
fn fuzz(root: &Path, frames: u64, seed: Option<u64>, compat: bool) -> Result<()> {
    let mut cmd = cargo(root);
    cmd.args([
        "test",
        "-p",
        "attach-user",
        "--test",
        "prog_test_run",
        "fuzz_",
    ])
    .args(["--", "--nocapture"])
    .env("ATTACH_FUZZ_FRAMES", frames.to_string());
    if let Some(seed) = seed {
        cmd.env("ATTACH_FUZZ_SEED", seed.to_string());
    }
    if compat {
        cmd.env("ATTACH_EBPF_BUILD", "compat");
    }
    run(&mut cmd)
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
