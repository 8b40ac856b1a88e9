//! `xtask vm-test`: the test suites on older kernels. Debian's own cloud
//! kernels boot under qemu; the guest's root is the host's, read-only over
//! virtiofs under a tmpfs overlay, so the host-built test binaries, the
//! engine and every tool they call run as they are. Each guest reports its
//! suites' exit statuses on the serial console.

mod initramfs;
mod json;
mod kernel;
mod machine;
mod suites;

use std::{
    collections::HashMap,
    fs,
    io::BufRead as _,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use json::Json;
use kernel::Kernel;
use machine::{Outcome, WorkDir};
use suites::suites_of;
#[cfg(test)]
use suites::{COMPAT_SUITES, GUEST_SUITES};

/// Lines the guest prints on its console for the host.
mod marker {
    pub const READY: &str = "ATTACH-VM-READY";
    pub const SUITE_START: &str = "ATTACH-VM-SUITE-START ";
    pub const SUITE_END: &str = "ATTACH-VM-SUITE-END ";
    pub const EXIT: &str = "ATTACH-VM-EXIT=";
    pub const INIT_FAILED: &str = "ATTACH-VM-INIT-FAILED: ";
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Accel {
    /// Emulation: works everywhere (KVM hangs on some hosts).
    Tcg,
    /// Hardware virtualisation, where it works.
    Kvm,
}

pub struct Opts {
    /// Kernel lines (`5.10`, `6.1`, `6.12`); empty: all.
    pub kernels: Vec<String>,
    /// VMs at once; `None`: all (measured fastest, even on 2 cores).
    pub jobs: Option<usize>,
    /// Wall-clock limit per VM.
    pub timeout: Duration,
    pub accel: Accel,
    /// Echo every guest's console.
    pub console: bool,
    /// `TARGET` or `TARGET:PATTERN`; empty: `GUEST_SUITES`.
    pub filter: Vec<String>,
}

impl Opts {
    /// What `xtask test` runs: every kernel, every guest suite, at once.
    pub fn matrix() -> Opts {
        Opts {
            kernels: Vec::new(),
            jobs: None,
            timeout: Duration::from_secs(MATRIX_TIMEOUT_SECS),
            accel: Accel::Tcg,
            console: false,
            filter: Vec::new(),
        }
    }
}

/// Wall-clock limit per VM in `xtask test`: what keeps CI in its time.
const MATRIX_TIMEOUT_SECS: u64 = 30 * 60;

/// A suite as planned: a test target with its libtest arguments.
struct Suite {
    name: String,
    target: String,
    args: Vec<String>,
}

/// A test executable and the directory cargo would run it in.
struct TestExe {
    path: PathBuf,
    dir: PathBuf,
}

pub fn run(root: &Path, opts: &Opts) -> Result<()> {
    check_tools()?;
    let lines = opts
        .kernels
        .iter()
        .map(|k| kernel::line(k))
        .collect::<Result<Vec<_>>>()?;
    let lines = if lines.is_empty() {
        kernel::LINES.iter().collect()
    } else {
        lines
    };
    let plans: Vec<(&str, Vec<Suite>)> = lines
        .iter()
        .map(|l| (l.name, plan(&opts.filter, &suites_of(l.name))))
        .collect();
    eprintln!("==> building the engine and the test binaries");
    crate::build(root, false)?;
    let mut targets: Vec<&str> = plans
        .iter()
        .flat_map(|(_, p)| p.iter().map(|s| s.target.as_str()))
        .collect();
    targets.sort_unstable();
    targets.dedup();
    let exes = test_executables(root, &targets)?;
    let scripts: HashMap<&str, String> = plans
        .iter()
        .map(|(line, suites)| (*line, guest_script(root, suites, &exes)))
        .collect();
    let kernels = kernel::ensure(&lines)?;
    let out = root.join("target/vm");
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // Measured on 2 cores under TCG (26 prog_test_run tests, 3 kernels):
    // all at once, one vCPU each, 138 s; two at a time 164 s; one at a time
    // with two vCPUs 315 s. A guest runs one test at a time.
    let jobs = opts.jobs.unwrap_or(kernels.len()).clamp(1, kernels.len());
    let needed = needed_paths(root, &exes);
    let guest = Guest {
        scripts: &scripts,
        needed: &needed,
    };
    let results = run_all(&kernels, &guest, &out, jobs, opts);
    summary(&kernels, &results, &out);
    let failed: Vec<&str> = kernels
        .iter()
        .zip(&results)
        .filter(|(_, r)| !r.as_ref().is_ok_and(Outcome::passed))
        .map(|(k, _)| k.line)
        .collect();
    if !failed.is_empty() {
        bail!("failed on kernel {}", failed.join(", "));
    }
    Ok(())
}

fn check_tools() -> Result<()> {
    for tool in [
        machine::QEMU,
        machine::VIRTIOFSD,
        initramfs::BUSYBOX,
        "xz",
        "dpkg-deb",
        "apt-get",
        "setpriv",
        "unshare",
    ] {
        let found = std::process::Command::new("sh")
            .args(["-c", "command -v \"$1\"", "sh", tool])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            bail!("{tool} not found (`cargo xtask setup` installs it)");
        }
    }
    Ok(())
}

/// `listed`, or what the filter names: `TARGET` (with its listed
/// arguments, if listed) or `TARGET:PATTERN` (that libtest filter).
fn plan(filter: &[String], listed_suites: &[(&str, &[&str])]) -> Vec<Suite> {
    let listed = |target: &str| {
        listed_suites
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, a)| a.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default()
    };
    if filter.is_empty() {
        return listed_suites
            .iter()
            .map(|(t, _)| Suite {
                name: t.to_string(),
                target: t.to_string(),
                args: listed(t),
            })
            .collect();
    }
    filter
        .iter()
        .map(|f| match f.split_once(':') {
            Some((target, pattern)) => Suite {
                name: f.clone(),
                target: target.to_owned(),
                args: vec![pattern.to_owned()],
            },
            None => Suite {
                name: f.clone(),
                target: f.clone(),
                args: listed(f),
            },
        })
        .collect()
}

/// Builds the suites' test targets; their executables by target name.
fn test_executables(root: &Path, targets: &[&str]) -> Result<HashMap<String, TestExe>> {
    let mut cmd = crate::cargo(root);
    cmd.args([
        "test",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    for t in targets {
        cmd.args(["--test", t]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cargo")?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut exes = HashMap::new();
    for line in std::io::BufReader::new(stdout).lines() {
        if let Some((name, exe)) = test_artifact(&line?) {
            exes.insert(name, exe);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("building the test targets failed: {status}");
    }
    for t in targets {
        if !exes.contains_key(*t) {
            bail!("no test target {t} in the workspace");
        }
    }
    Ok(exes)
}

/// (target name, executable) of a `compiler-artifact` message of a test.
fn test_artifact(line: &str) -> Option<(String, TestExe)> {
    let msg = Json::parse(line).ok()?;
    if msg.get("reason")?.as_str()? != "compiler-artifact"
        || msg.get("profile")?.get("test")?.as_bool() != Some(true)
    {
        return None;
    }
    let target = msg.get("target")?;
    let kinds = target.get("kind")?.as_array();
    if !kinds.iter().any(|k| k.as_str() == Some("test")) {
        return None;
    }
    let manifest = Path::new(msg.get("manifest_path")?.as_str()?);
    Some((
        target.get("name")?.as_str()?.to_owned(),
        TestExe {
            path: msg.get("executable")?.as_str()?.into(),
            dir: manifest.parent()?.to_path_buf(),
        },
    ))
}

/// The script the guest runs (by the host's `/bin/sh`, in the guest's
/// root): each suite as `cargo test` would run it, between markers.
fn guest_script(root: &Path, suites: &[Suite], exes: &HashMap<String, TestExe>) -> String {
    let attach = root.join("target/debug/attach");
    let mut s = format!(
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         export HOME=/root RUST_BACKTRACE=1 ATTACH_BIN={}\n\
         status=0\n\
         suite() {{\n  name=$1 dir=$2; shift 2\n  echo \"{}$name\"\n  (cd \"$dir\" && exec \"$@\")\n  \
         rc=$?\n  echo \"{}$name $rc\"\n  [ $status -ne 0 ] || status=$rc\n}}\n",
        quote(&attach.display().to_string()),
        marker::SUITE_START,
        marker::SUITE_END,
    );
    for suite in suites {
        let exe = &exes[&suite.target];
        let mut argv = vec![
            suite.name.clone(),
            exe.dir.display().to_string(),
            exe.path.display().to_string(),
            "--test-threads=1".into(),
            // The console is a tty: keep the log free of escapes.
            "--color=never".into(),
        ];
        argv.extend(suite.args.iter().cloned());
        let quoted: Vec<String> = argv.iter().map(|a| quote(a)).collect();
        s += &format!("suite {}\n", quoted.join(" "));
    }
    s += "exit $status\n";
    s
}

/// Host paths the guest script uses: the workspace and the executables'.
fn needed_paths(root: &Path, exes: &HashMap<String, TestExe>) -> Vec<PathBuf> {
    let mut paths = vec![root.to_path_buf()];
    for e in exes.values() {
        paths.extend(e.path.parent().map(Path::to_path_buf));
        paths.push(e.dir.clone());
    }
    paths.sort();
    // A directory shows what is under it.
    let mut outer: Vec<PathBuf> = Vec::new();
    for p in paths {
        if !outer.iter().any(|o| p.starts_with(o)) {
            outer.push(p);
        }
    }
    outer
}

/// What every guest gets: the script and the host paths it needs.
struct Guest<'a> {
    /// By kernel line.
    scripts: &'a HashMap<&'a str, String>,
    needed: &'a [PathBuf],
}

/// `s` as one word for `sh`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// vCPUs for each of `jobs` VMs: the host's cores shared out.
fn cpus_per_vm(jobs: usize) -> usize {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    (cores / jobs).max(1)
}

/// `<temp>/<prefix><pid>-<kernel>`: a VM's socket and mount point.
const WORK_PREFIX: &str = "attach-vm-";

/// Removes the work directories of runs that were killed (their pid gone);
/// their mounts were private to processes that died with them.
fn remove_stale_work_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(WORK_PREFIX)
            .and_then(|rest| rest.split('-').next());
        if let Some(pid) = pid
            && pid.parse::<u32>().is_ok()
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Runs every kernel, `jobs` at a time; results in `kernels`' order.
fn run_all(
    kernels: &[Kernel],
    guest: &Guest,
    out: &Path,
    jobs: usize,
    opts: &Opts,
) -> Vec<Result<Outcome>> {
    remove_stale_work_dirs();
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<Outcome>>>> =
        kernels.iter().map(|_| Mutex::new(None)).collect();
    let cpus = cpus_per_vm(jobs);
    eprintln!(
        "==> booting {} kernel(s), {jobs} at a time, {cpus} vCPU(s) each ({:?})",
        kernels.len(),
        opts.accel
    );
    thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(k) = kernels.get(i) else { break };
                    let result = run_one(k, guest, out, cpus, opts);
                    report(k, &result);
                    *results[i].lock().unwrap() = Some(result);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|r| r.into_inner().unwrap().expect("every kernel ran"))
        .collect()
}

fn run_one(k: &Kernel, guest: &Guest, out: &Path, cpus: usize, opts: &Opts) -> Result<Outcome> {
    // Short (a socket path has at most 107 bytes) and private to this run.
    let work = WorkDir(std::env::temp_dir().join(format!(
        "{WORK_PREFIX}{}-{}",
        std::process::id(),
        k.line
    )));
    fs::create_dir_all(&work.0)?;
    let initrd = out.join(format!("{}.initrd", k.line));
    initramfs::write(k, &guest.scripts[k.line], guest.needed, &initrd)
        .with_context(|| format!("initramfs for {}", k.release))?;
    eprintln!(
        "==> kernel {}: booting {} ({})",
        k.line, k.release, k.version
    );
    machine::boot(&machine::Spec {
        kernel: k,
        initrd: &initrd,
        work: &work.0,
        log: &out.join(format!("{}.log", k.line)),
        cpus,
        accel: opts.accel,
        timeout: opts.timeout,
        echo: opts.console,
    })
}

/// One kernel's result as soon as it is known, with the console's tail on
/// failure.
fn report(k: &Kernel, result: &Result<Outcome>) {
    let o = match result {
        Err(e) => {
            eprintln!("==> kernel {}: error: {e:#}", k.line);
            return;
        }
        Ok(o) => o,
    };
    eprintln!(
        "==> kernel {}: {} in {}",
        k.line,
        vm_result(o),
        secs(o.total)
    );
    // A suite's own failures are in the summary; otherwise show the end.
    if o.exit.is_some() && !o.timed_out {
        return;
    }
    if let Some(f) = &o.init_failure {
        eprintln!("==> kernel {}: guest setup failed: {f}", k.line);
    }
    eprintln!("==> kernel {}: the console's last lines:", k.line);
    for l in &o.tail {
        eprintln!("    | {l}");
    }
}

fn vm_result(o: &Outcome) -> String {
    match (o.timed_out, o.exit) {
        (true, _) => "TIMEOUT".into(),
        (false, Some(0)) => "ok".into(),
        (false, Some(n)) => format!("FAILED (exit {n})"),
        (false, None) => "FAILED (no exit status)".into(),
    }
}

fn suite_result(exit: Option<i32>) -> String {
    match exit {
        Some(0) => "ok".into(),
        Some(n) => format!("FAILED (exit {n})"),
        None => "cut off".into(),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The first few names, and how many more.
fn shortened(names: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut s = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        s += &format!(" and {} more", names.len() - SHOWN);
    }
    s
}

fn summary(kernels: &[Kernel], results: &[Result<Outcome>], out: &Path) {
    let row = |cells: [&str; 6]| {
        let [kernel, release, result, boot, total, cpu] = cells;
        eprintln!("{kernel:<6} {release:<32} {result:<24} {boot:>7} {total:>8} {cpu:>8}");
    };
    eprintln!();
    row(["kernel", "release", "result", "boot", "total", "cpu"]);
    for (k, r) in kernels.iter().zip(results) {
        let Ok(o) = r else {
            row([k.line, &k.release, "ERROR", "-", "-", "-"]);
            continue;
        };
        let boot = o.boot.map_or("-".into(), secs);
        let cpu = o.cpu.map_or("-".into(), secs);
        row([
            k.line,
            &k.release,
            &vm_result(o),
            &boot,
            &secs(o.total),
            &cpu,
        ]);
        for s in &o.suites {
            let name = format!("  {}", s.name);
            row(["", &name, &suite_result(s.exit), "", &secs(s.time), ""]);
            if !s.failed_tests.is_empty() {
                eprintln!("         failed: {}", shortened(&s.failed_tests));
            }
        }
    }
    eprintln!("consoles: {}/<kernel>.log", out.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_defaults_to_the_guest_suites() {
        let p = plan(&[], GUEST_SUITES);
        assert_eq!(p.len(), GUEST_SUITES.len());
        assert_eq!(p[0].target, GUEST_SUITES[0].0);
    }

    #[test]
    fn plan_takes_targets_and_patterns() {
        let p = plan(
            &["macvlan".into(), "prog_test_run:xdp_".into()],
            GUEST_SUITES,
        );
        // A listed target keeps its listed arguments.
        assert_eq!(p[0].target, "macvlan");
        assert_eq!(p[0].args[0], "--exact");
        assert_eq!(p[1].target, "prog_test_run");
        assert_eq!(p[1].args, ["xdp_"]);
        assert_eq!(p[1].name, "prog_test_run:xdp_");
    }

    #[test]
    fn a_kernel_without_bpf_loop_runs_the_compat_list() {
        assert_eq!(suites_of("5.10").len(), COMPAT_SUITES.len());
        assert_eq!(suites_of("6.1").len(), GUEST_SUITES.len() - 1);
        assert_eq!(suites_of("6.12").len(), GUEST_SUITES.len() - 1);
    }

    #[test]
    fn every_guest_test_runs_on_6_1_or_6_12() {
        let runs = |line: &str, target: &str, test: &str| {
            suites_of(line)
                .iter()
                .any(|(t, args)| *t == target && args.contains(&test))
        };
        for (target, args) in GUEST_SUITES {
            for test in args.iter().filter(|a| !a.starts_with("--")) {
                assert!(
                    runs("6.1", target, test) || runs("6.12", target, test),
                    "{target}: {test} runs on neither"
                );
            }
        }
    }

    #[test]
    fn quotes_for_sh() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn reads_test_artifacts_only() {
        let test = r#"{"reason":"compiler-artifact","manifest_path":"/w/tests/Cargo.toml","target":{"kind":["test"],"name":"macvlan"},"profile":{"test":true},"executable":"/w/target/debug/deps/macvlan-1"}"#;
        let (name, exe) = test_artifact(test).unwrap();
        assert_eq!(name, "macvlan");
        assert_eq!(exe.path, Path::new("/w/target/debug/deps/macvlan-1"));
        assert_eq!(exe.dir, Path::new("/w/tests"));
        let lib = test.replace(r#""kind":["test"]"#, r#""kind":["lib"]"#);
        assert!(test_artifact(&lib).is_none());
        assert!(test_artifact(r#"{"reason":"build-finished","success":true}"#).is_none());
    }
}
