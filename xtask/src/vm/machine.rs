//! One VM: virtiofsd serving the host's root read-only, qemu booting the
//! kernel with our initramfs, and the console read for the guest's markers.
//! Both processes are ours alone: killed by their pid when done, on a
//! timeout or an error, and (through the parent-death signal) when xtask
//! itself dies.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{Accel, initramfs::ROOT_TAG, kernel::Kernel, marker};

pub const QEMU: &str = "qemu-system-x86_64";
pub const VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";
/// Guest memory (shared with virtiofsd, as vhost-user needs).
const MEMORY_MB: u32 = 2048;
/// Console lines kept to show when a VM fails.
const TAIL_LINES: usize = 40;

pub struct Spec<'a> {
    pub kernel: &'a Kernel,
    pub initrd: &'a Path,
    /// A private directory for the socket and the share's mount point.
    pub work: &'a Path,
    pub log: &'a Path,
    pub cpus: usize,
    pub accel: Accel,
    pub timeout: Duration,
    /// Echo the console, each line prefixed with the kernel.
    pub echo: bool,
}

#[derive(Default)]
pub struct Outcome {
    /// The guest script's exit status, if the guest reported one.
    pub exit: Option<i32>,
    /// From starting qemu to the guest script starting.
    pub boot: Option<Duration>,
    pub total: Duration,
    /// qemu's CPU time (the host may have been busy with more than us).
    pub cpu: Option<Duration>,
    pub suites: Vec<SuiteRun>,
    pub timed_out: bool,
    /// What `/init` could not do.
    pub init_failure: Option<String>,
    pub tail: VecDeque<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.exit == Some(0) && !self.timed_out
    }
}

pub struct SuiteRun {
    pub name: String,
    pub exit: Option<i32>,
    pub time: Duration,
    pub failed_tests: Vec<String>,
}

/// Boots `spec`'s kernel and follows it until it powers off or times out.
pub fn boot(spec: &Spec) -> Result<Outcome> {
    let mount = spec.work.join("root");
    let socket = spec.work.join("fs.sock");
    fs::create_dir_all(&mount).with_context(|| format!("creating {}", mount.display()))?;
    let log = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(spec.log)
        .with_context(|| format!("creating {}", spec.log.display()))?;
    let mut virtiofsd = Owned(start_virtiofsd(&mount, &socket, &log)?);
    wait_for_socket(&socket, &mut virtiofsd, spec.log)?;
    let started = Instant::now();
    let mut qemu = Owned(start_qemu(spec, &socket, &log)?);
    let stdout = qemu.0.stdout.take().context("qemu's console pipe")?;
    let lines = read_console(stdout, log, started, spec.echo.then_some(spec.kernel.line));
    let mut outcome = follow(lines, started, spec.timeout, spec.kernel.line);
    if outcome.timed_out {
        // Reaped below, after its CPU time is read.
        let _ = qemu.0.kill();
    }
    outcome.cpu = cpu_time_at_exit(qemu.0.id());
    let _ = qemu.0.wait();
    outcome.total = started.elapsed();
    Ok(outcome)
}

/// The user + system time of process `pid` once it has exited (a zombie,
/// not yet reaped): how much emulation the guest took, whatever else ran.
fn cpu_time_at_exit(pid: u32) -> Option<Duration> {
    let stat = Path::new("/proc").join(pid.to_string()).join("stat");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let text = fs::read_to_string(&stat).ok()?;
        // Fields after the command's closing parenthesis: state is the
        // first, utime and stime the 12th and 13th.
        let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            let ticks: u64 =
                fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            // USER_HZ is 100 on Linux.
            return Some(Duration::from_millis(ticks * 10));
        }
        thread::sleep(Duration::from_millis(10));
    }
    None
}

/// A child killed (by its pid) and reaped when dropped.
struct Owned(Child);

impl Owned {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `cmd` dying with this thread (xtask killed or interrupted).
fn with_parent_death(program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "KILL", "--", program]);
    cmd
}

/// virtiofsd sharing `/` read-only: in a private mount namespace, a
/// non-recursive bind of `/` (only the root filesystem, none of the host's
/// /proc, /sys, /run mounts) is made read-only and shared. `cache=always`:
/// the guest keeps names and attributes instead of asking again after a
/// second; under TCG that made `ip link add` 1.6 s → 0.15 s (the tree is
/// built before the guest starts).
fn start_virtiofsd(mount: &Path, socket: &Path, log: &File) -> Result<Child> {
    let script = r#"mount --bind / "$1" && mount -o remount,bind,ro "$1" \
        && exec "$3" --socket-path="$2" -o source="$1" -o cache=always -o log_level=warn"#;
    with_parent_death("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(mount)
        .arg(socket)
        .arg(VIRTIOFSD)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .spawn()
        .with_context(|| format!("cannot start {VIRTIOFSD}"))
}

fn wait_for_socket(socket: &Path, virtiofsd: &mut Owned, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if socket.exists() {
            return Ok(());
        }
        if let Ok(Some(status)) = virtiofsd.0.try_wait() {
            bail!("virtiofsd exited ({status}); see {}", log.display());
        }
        thread::sleep(Duration::from_millis(20));
    }
    bail!(
        "virtiofsd made no socket at {} within 10 s; see {}",
        socket.display(),
        log.display()
    )
}

fn start_qemu(spec: &Spec, socket: &Path, log: &File) -> Result<Child> {
    let (accel, cpu) = match (spec.accel, spec.cpus) {
        (Accel::Kvm, _) => ("kvm", "host"),
        (Accel::Tcg, 1) => ("tcg", "max"),
        (Accel::Tcg, _) => ("tcg,thread=multi", "max"),
    };
    let mem = format!("{MEMORY_MB}M");
    with_parent_death(QEMU)
        .args(["-accel", accel, "-cpu", cpu, "-m", &mem])
        .args(["-smp", &spec.cpus.to_string()])
        .args(["-nodefaults", "-no-user-config", "-no-reboot"])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        // No network device: the guest cannot reach the host or beyond.
        .args(["-nic", "none"])
        .arg("-kernel")
        .arg(&spec.kernel.vmlinuz)
        .arg("-initrd")
        .arg(spec.initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .arg("-chardev")
        .arg(format!("socket,id=fs,path={}", socket.display()))
        .args([
            "-device",
            &format!("vhost-user-fs-pci,queue-size=1024,chardev=fs,tag={ROOT_TAG}"),
        ])
        .args([
            "-object",
            &format!("memory-backend-memfd,id=mem,size={mem},share=on"),
        ])
        .args(["-numa", "node,memdev=mem"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone()?)
        .spawn()
        .with_context(|| format!("cannot start {QEMU}"))
}

/// Console lines, timestamped, from a thread that also writes them to the
/// log with the seconds since `started` (and echoes them with `echo`'s
/// prefix).
fn read_console(
    stdout: ChildStdout,
    mut log: File,
    started: Instant,
    echo: Option<&'static str>,
) -> mpsc::Receiver<(Instant, String)> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&buf)
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            buf.clear();
            let at = Instant::now();
            let _ = writeln!(log, "{:8.3} {line}", (at - started).as_secs_f64());
            if let Some(prefix) = echo {
                eprintln!("[{prefix}] {line}");
            }
            if tx.send((at, line)).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads the console until it closes or the time is up; reports progress
/// as `label`.
fn follow(
    lines: mpsc::Receiver<(Instant, String)>,
    started: Instant,
    timeout: Duration,
    label: &str,
) -> Outcome {
    let deadline = started + timeout;
    let mut outcome = Outcome::default();
    let mut current: Option<(SuiteRun, Instant)> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (at, line) = match lines.recv_timeout(left) {
            Ok(l) => l,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                outcome.timed_out = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        on_line(&mut outcome, &mut current, started, at, &line);
        progress(label, &outcome, &line);
        if outcome.tail.len() == TAIL_LINES {
            outcome.tail.pop_front();
        }
        outcome.tail.push_back(line);
    }
    if let Some((mut suite, since)) = current {
        // Cut off mid-suite: its time so far, no exit status.
        suite.time = since.elapsed();
        outcome.suites.push(suite);
    }
    outcome
}

/// Markers may follow kernel messages on the same line: found anywhere.
fn on_line(
    outcome: &mut Outcome,
    current: &mut Option<(SuiteRun, Instant)>,
    started: Instant,
    at: Instant,
    line: &str,
) {
    let after = |m: &str| line.find(m).map(|i| line[i + m.len()..].trim());
    if after(marker::READY).is_some() {
        outcome.boot = Some(at - started);
    } else if let Some(name) = after(marker::SUITE_START) {
        let suite = SuiteRun {
            name: name.to_owned(),
            exit: None,
            time: Duration::ZERO,
            failed_tests: Vec::new(),
        };
        *current = Some((suite, at));
    } else if let Some(rest) = after(marker::SUITE_END) {
        if let Some((mut suite, since)) = current.take() {
            suite.exit = rest.rsplit(' ').next().and_then(|c| c.parse().ok());
            suite.time = at - since;
            outcome.suites.push(suite);
        }
    } else if let Some(code) = after(marker::EXIT) {
        outcome.exit = code.parse().ok();
    } else if let Some(what) = after(marker::INIT_FAILED) {
        outcome.init_failure = Some(what.to_owned());
    } else if let Some((suite, _)) = current
        && let Some(name) = failed_test(line)
    {
        suite.failed_tests.push(name.to_owned());
    }
}

/// A line for the user when the guest is up and when a suite ends.
fn progress(label: &str, outcome: &Outcome, line: &str) {
    if line.contains(marker::READY) {
        let boot = outcome.boot.unwrap_or_default().as_secs_f64();
        eprintln!("==> kernel {label}: up in {boot:.1}s");
    } else if line.contains(marker::SUITE_END)
        && let Some(s) = outcome.suites.last()
    {
        let result = match s.exit {
            Some(0) => "ok".to_owned(),
            Some(n) => format!("FAILED (exit {n}, {} tests)", s.failed_tests.len()),
            None => "no status".to_owned(),
        };
        let time = s.time.as_secs_f64();
        eprintln!("==> kernel {label}: {} {result} in {time:.1}s", s.name);
    }
}

/// libtest's `test <name> ... FAILED`.
fn failed_test(line: &str) -> Option<&str> {
    line.strip_prefix("test ")?.strip_suffix(" ... FAILED")
}

/// A private directory, removed when dropped.
pub struct WorkDir(pub PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> Outcome {
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        for l in lines {
            tx.send((start, (*l).to_owned())).unwrap();
        }
        drop(tx);
        follow(rx, start, Duration::from_secs(5), "test")
    }

    #[test]
    fn reads_suites_and_exit_status() {
        let o = feed(&[
            "[    3.1] random kernel line",
            marker::READY,
            &format!("{}prog_test_run", marker::SUITE_START),
            "test a::b ... ok",
            "test a::c ... FAILED",
            &format!("{}prog_test_run 101", marker::SUITE_END),
            &format!("[    9.0] reboot: {}101", marker::EXIT),
        ]);
        assert_eq!(o.exit, Some(101));
        assert!(o.boot.is_some() && !o.passed());
        assert_eq!(o.suites.len(), 1);
        assert_eq!(o.suites[0].exit, Some(101));
        assert_eq!(o.suites[0].failed_tests, ["a::c"]);
    }

    #[test]
    fn no_exit_marker_is_a_failure() {
        let o = feed(&[&format!("{}mounting the host's root", marker::INIT_FAILED)]);
        assert_eq!(o.exit, None);
        assert!(!o.passed());
        assert_eq!(o.init_failure.as_deref(), Some("mounting the host's root"));
    }
}
