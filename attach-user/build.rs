//! Builds the eBPF programs (attach-ebpf) with the pinned nightly and places the
//! object in OUT_DIR, where `include_bytes_aligned!` picks it up.

use std::{fs, path::Path};

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "attach-ebpf")
        .ok_or_else(|| anyhow!("attach-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("attach-ebpf has no directory"))?;
    let toolchain_file = Path::new(root_dir.as_str()).join("rust-toolchain.toml");
    println!("cargo::rerun-if-changed={}", toolchain_file.display());
    let text = fs::read_to_string(&toolchain_file)
        .with_context(|| format!("reading {}", toolchain_file.display()))?;
    let toolchain = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel"))
        .and_then(|v| v.split('"').nth(1))
        .ok_or_else(|| anyhow!("no channel in {}", toolchain_file.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "attach-ebpf",
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(toolchain),
    )?;
    write_build_id()
}

/// Hashes each object once here (the programs, and their build for kernels
/// without `bpf_loop`): hashing its megabytes at every engine run cost a
/// fifth of an `add`.
fn write_build_id() -> anyhow::Result<()> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").context("OUT_DIR")?);
    for name in ["attach", "attach-compat"] {
        let object = fs::read(out.join(name)).with_context(|| format!("reading {name}"))?;
        let id = object.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
        fs::write(out.join(format!("{name}.id")), format!("{id:016x}"))
            .with_context(|| format!("writing {name}.id"))?;
    }
    Ok(())
}
