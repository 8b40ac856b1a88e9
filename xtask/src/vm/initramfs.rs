//! The guest's initramfs: static busybox, the kernel modules the guest
//! needs (dependencies resolved from each module's `.modinfo`), the suites'
//! script and an `/init` that makes the host's root — read-only over
//! virtiofs, under a tmpfs overlay — the guest's root and runs the script.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::{kernel::Kernel, marker, quote};

/// Modules the guest loads, and whether the suites cannot do without it.
/// Dependencies follow by themselves; built-in ones are skipped.
pub const GUEST_MODULES: &[(&str, bool)] = &[
    // The root: the host's over virtio-pci + virtiofs, writable by overlay.
    ("virtio_pci", true),
    ("virtiofs", true),
    ("overlay", true),
    // What the suites attach and switch with.
    ("veth", true),
    ("macvlan", true),
    ("ipvlan", true),
    ("bridge", true),
    ("sch_ingress", true),
    ("cls_bpf", true),
    ("tun", false),
    ("nf_tables", false),
    // A module before 5.13 (built in after): the tests' nft counters.
    ("nft_counter", false),
    // `meta` (iifname) in the bridge family: the wire's counters of a
    // switch's frames.
    ("nft_meta_bridge", false),
];

/// What `/init` cannot load as a module (checked in the kernel's config).
const GUEST_BUILTINS: &[&str] = &[
    "CONFIG_BLK_DEV_INITRD",
    "CONFIG_DEVTMPFS",
    "CONFIG_SERIAL_8250_CONSOLE",
    "CONFIG_TMPFS",
    "CONFIG_BPF_SYSCALL",
    "CONFIG_CGROUP_BPF",
];

pub const BUSYBOX: &str = "/bin/busybox";
/// The virtiofs tag of the host's root.
pub const ROOT_TAG: &str = "hostroot";
/// Where `/init` puts the suites' script in the guest's root.
const GUEST_SCRIPT: &str = "/run/attach-vm/guest.sh";

/// The host's directories the guest gets fresh tmpfs over.
const FRESH_DIRS: &[&str] = &["/run", "/tmp", "/var/tmp"];

/// Writes the initramfs for `kernel` running `script` to `out`; `needed`
/// are host paths the script uses (shown even under a fresh tmpfs).
pub fn write(kernel: &Kernel, script: &str, needed: &[PathBuf], out: &Path) -> Result<()> {
    check_config(kernel)?;
    let modules = select_modules(kernel)?;
    let mut cpio = Cpio::default();
    for dir in [
        "bin",
        "dev",
        "proc",
        "sys",
        "lib",
        "lib/modules",
        "lower",
        "upper",
        "newroot",
    ] {
        cpio.dir(dir);
    }
    // The kernel's first console, before devtmpfs is mounted.
    cpio.char_dev("dev/console", 5, 1);
    let busybox = fs::read(BUSYBOX).with_context(|| format!("reading {BUSYBOX}"))?;
    cpio.file("bin/busybox", 0o755, &busybox);
    for (name, bytes) in &modules {
        cpio.file(&format!("lib/modules/{name}.ko"), 0o644, bytes);
    }
    let names: Vec<&str> = modules.iter().map(|(n, _)| n.as_str()).collect();
    cpio.file("init", 0o755, init_script(&names, needed).as_bytes());
    cpio.file("guest.sh", 0o755, script.as_bytes());
    fs::write(out, cpio.finish()).with_context(|| format!("writing {}", out.display()))
}

fn check_config(kernel: &Kernel) -> Result<()> {
    let config = fs::read_to_string(&kernel.config)
        .with_context(|| format!("reading {}", kernel.config.display()))?;
    for option in GUEST_BUILTINS {
        if !config.lines().any(|l| l == format!("{option}=y")) {
            bail!("kernel {} lacks {option}=y", kernel.release);
        }
    }
    Ok(())
}

/// PID 1: mounts the guest's root, runs the script in it, reports its exit
/// status on the console and powers off. Any step failing powers off
/// without an exit marker: the host counts that as a failure.
fn init_script(modules: &[&str], needed: &[PathBuf]) -> String {
    let insmods: String = modules
        .iter()
        .map(|m| format!("insmod /lib/modules/{m}.ko || fail \"loading module {m}\"\n"))
        .collect();
    let binds: String = needed
        .iter()
        .filter(|p| FRESH_DIRS.iter().any(|d| p.starts_with(d)))
        .map(|p| {
            let p = quote(&p.display().to_string());
            format!("mkdir -p $R{p} && mount --bind /lower{p} $R{p} || fail \"showing \"{p}\n")
        })
        .collect();
    let (ready, exit, failed) = (marker::READY, marker::EXIT, marker::INIT_FAILED);
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
fail() {{ echo "{failed}$*"; poweroff -f; }}
mount -t proc proc /proc
mount -t sysfs sys /sys
# Emulated CPUs drain the receive backlog slowly: room for the test runs
# that really send 40k flood clones in a burst.
echo 100000 > /proc/sys/net/core/netdev_max_backlog
{insmods}mount -t virtiofs -o ro {ROOT_TAG} /lower || fail "mounting the host's root (virtiofs)"
# Writes stay in the guest's memory.
mount -t tmpfs tmpfs /upper && mkdir /upper/data /upper/work || fail "tmpfs"
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot \
  || fail "overlay on the host's root"
R=/newroot
mount -t proc proc $R/proc && mount -t sysfs sys $R/sys && mount -t devtmpfs dev $R/dev \
  || fail "proc, sys, dev"
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts && mount -t tmpfs tmpfs $R/dev/shm || fail "devpts, shm"
mount -t bpf bpf $R/sys/fs/bpf || fail "bpffs"
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup || fail "cgroup2"
# The host's /run and /tmp (its netns, engine records, test leftovers) must not show.
mount -t tmpfs -o mode=0755 tmpfs $R/run || fail "tmpfs /run"
mount -t tmpfs -o mode=1777 tmpfs $R/tmp && mount -t tmpfs -o mode=1777 tmpfs $R/var/tmp \
  || fail "tmpfs /tmp"
{binds}mkdir -p $R/run/attach-vm && cp /guest.sh $R{GUEST_SCRIPT} || fail "copying the script"
ip link set lo up
hostname attach-vm
echo "{ready}"
chroot $R /bin/sh {GUEST_SCRIPT}
echo "{exit}$?"
poweroff -f
"#
    )
}

/// The guest's modules in load order (dependencies first), decompressed.
fn select_modules(kernel: &Kernel) -> Result<Vec<(String, Vec<u8>)>> {
    let index = ModuleIndex::read(&kernel.modules)?;
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for &(name, required) in GUEST_MODULES {
        if index.builtin.contains(name) {
            continue;
        }
        if !index.files.contains_key(name) {
            if required {
                bail!("kernel {} has no module {name}", kernel.release);
            }
            continue;
        }
        index.visit(name, &mut seen, &mut order)?;
    }
    Ok(order)
}

struct ModuleIndex {
    /// Module name (`_` for `-`) → its file.
    files: HashMap<String, PathBuf>,
    builtin: HashSet<String>,
}

impl ModuleIndex {
    fn read(dir: &Path) -> Result<ModuleIndex> {
        let mut files = HashMap::new();
        walk(&dir.join("kernel"), &mut |p| {
            if let Some(name) = module_name(p) {
                files.insert(name, p.to_path_buf());
            }
        })?;
        let builtin_list = dir.join("modules.builtin");
        let builtin = fs::read_to_string(&builtin_list)
            .with_context(|| format!("reading {}", builtin_list.display()))?
            .lines()
            .filter_map(|l| module_name(Path::new(l)))
            .collect();
        Ok(ModuleIndex { files, builtin })
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut HashSet<String>,
        order: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        if self.builtin.contains(name) || !seen.insert(name.to_owned()) {
            return Ok(());
        }
        let path = self
            .files
            .get(name)
            .with_context(|| format!("module {name} is needed but missing"))?;
        let bytes = read_module(path)?;
        let deps = depends(&bytes).with_context(|| format!("reading {}", path.display()))?;
        for dep in deps {
            self.visit(&dep, seen, order)?;
        }
        order.push((name.to_owned(), bytes));
        Ok(())
    }
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            walk(&p, f)?;
        } else {
            f(&p);
        }
    }
    Ok(())
}

/// `…/virtio_pci_modern_dev.ko.xz` → `virtio_pci_modern_dev`.
fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))?;
    Some(stem.replace('-', "_"))
}

fn read_module(path: &Path) -> Result<Vec<u8>> {
    let tool = match path.extension().and_then(|e| e.to_str()) {
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => return fs::read(path).with_context(|| format!("reading {}", path.display())),
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("cannot start {tool}"))?;
    if !out.status.success() {
        bail!("{tool} -dc {} failed", path.display());
    }
    Ok(out.stdout)
}

/// The `depends=` of a module's `.modinfo` section.
fn depends(elf: &[u8]) -> Result<Vec<String>> {
    let info = modinfo(elf).context("no .modinfo section (not a kernel module?)")?;
    Ok(info
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"depends="))
        .map(|d| {
            String::from_utf8_lossy(d)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.replace('-', "_"))
                .collect()
        })
        .unwrap_or_default())
}

/// The `.modinfo` section of a little-endian ELF64 object.
fn modinfo(elf: &[u8]) -> Option<&[u8]> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?) as usize);
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?) as usize);
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?) as usize);
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return None;
    }
    let (shoff, shentsize) = (u64_at(0x28)?, u16_at(0x3a)?);
    let (shnum, shstrndx) = (u16_at(0x3c)?, u16_at(0x3e)?);
    let section = |i: usize| {
        let h = shoff + i * shentsize;
        Some((u32_at(h)?, u64_at(h + 0x18)?, u64_at(h + 0x20)?))
    };
    let (_, names, _) = section(shstrndx)?;
    (0..shnum).find_map(|i| {
        let (name, offset, size) = section(i)?;
        let name = elf.get(names + name..)?;
        name.starts_with(b".modinfo\0")
            .then(|| elf.get(offset..offset + size))?
    })
}

/// An uncompressed newc archive (the kernel unpacks it as is).
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn dir(&mut self, path: &str) {
        self.entry(path, 0o040_755, &[], (0, 0));
    }

    fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        self.entry(path, 0o100_000 | perm, data, (0, 0));
    }

    fn char_dev(&mut self, path: &str, major: u32, minor: u32) {
        self.entry(path, 0o020_600, &[], (major, minor));
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_use_underscores() {
        assert_eq!(
            module_name(Path::new(
                "kernel/drivers/virtio/virtio_pci-modern-dev.ko.xz"
            )),
            Some("virtio_pci_modern_dev".into())
        );
        assert_eq!(
            module_name(Path::new("kernel/net/veth.ko")),
            Some("veth".into())
        );
        assert_eq!(module_name(Path::new("modules.order")), None);
    }

    /// A minimal ELF64 with a section name table and a `.modinfo`.
    fn elf_with_modinfo(info: &[u8]) -> Vec<u8> {
        let names = b"\0.shstrtab\0.modinfo\0";
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let names_at = elf.len();
        elf.extend_from_slice(names);
        let info_at = elf.len();
        elf.extend_from_slice(info);
        let shoff = elf.len();
        let header = |name: u32, off: usize, size: usize| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            h
        };
        elf.extend(header(0, 0, 0));
        elf.extend(header(1, names_at, names.len()));
        elf.extend(header(11, info_at, info.len()));
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        elf
    }

    #[test]
    fn reads_depends_from_modinfo() {
        let elf = elf_with_modinfo(b"license=GPL\0depends=llc,stp\0name=bridge\0");
        assert_eq!(depends(&elf).unwrap(), ["llc", "stp"]);
        let none = elf_with_modinfo(b"license=GPL\0depends=\0name=llc\0");
        assert!(depends(&none).unwrap().is_empty());
        assert!(depends(b"not an elf").is_err());
    }

    #[test]
    fn cpio_entries_are_aligned_and_terminated() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"abc");
        let out = c.finish();
        assert!(out.starts_with(b"070701"));
        assert_eq!(&out[14..22], b"000081ed");
        assert!(out.len().is_multiple_of(4));
        assert!(out.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
