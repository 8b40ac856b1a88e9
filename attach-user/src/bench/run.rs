//! Running things in the bench's namespaces: commands started in them,
//! code on a thread that entered the namespace, long-running servers and
//! clients pinned to a CPU at high priority, killed by their exact PID.

use std::{
    fs,
    io::Write as _,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::cleanup::{self, Cleanup, kill_pid};
use crate::{
    error::{Error, Result},
    netns::Netns,
};

/// A network namespace the bench created (`ip netns add`), deleted by the
/// cleanup guard.
#[derive(Clone, Debug)]
pub struct Ns {
    pub name: String,
    pub path: PathBuf,
}

impl Ns {
    /// Creates `name` with `lo` up and IPv6 off (no router solicitations,
    /// DAD or MLD reports among the measured frames).
    pub fn create(cleanup: &Cleanup, name: &str) -> Result<Ns> {
        checked(
            Command::new("ip").args(["netns", "add", name]),
            &format!("ip netns add {name}"),
        )?;
        cleanup.netns(name);
        let ns = Ns {
            name: name.to_owned(),
            path: Path::new("/run/netns").join(name),
        };
        ns.run(|| -> Result<()> {
            for knob in ["all", "default"] {
                crate::sys::sysctl_set(&format!("net.ipv6.conf.{knob}.disable_ipv6"), "1")?;
            }
            Ok(())
        })??;
        ns.ip(&["link set lo up"])?;
        Ok(ns)
    }

    /// `argv` run inside the namespace: the child enters it between fork and
    /// exec (or, called inside [`Ns::run`], inherits it), as a process
    /// started by a runtime of that node would be (no `nsenter` exec on the
    /// clock); /sys and /sys/fs/bpf stay visible, unlike under `ip netns
    /// exec`.
    pub fn command(&self, argv: &[&str]) -> Command {
        let path = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes())
            .expect("a namespace path has no NUL");
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..]).stdin(Stdio::null());
        if self.is_current() {
            // Called inside [`Ns::run`]: the child inherits the namespace,
            // and without a `pre_exec` it is spawned without a fork
            // (`posix_spawn`), the bench's page tables not copied.
            return cmd;
        }
        // SAFETY: only async-signal-safe syscalls on data prepared before
        // the fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let entered = libc::setns(fd, libc::CLONE_NEWNET);
                libc::close(fd);
                if entered != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Runs `argv` in the namespace; stdout, or an error with both outputs.
    pub fn ok(&self, argv: &[&str]) -> Result<String> {
        checked(
            &mut self.command(argv),
            &format!("{} (in {})", argv.join(" "), self.name),
        )
    }

    /// Whether the calling thread is in this namespace.
    fn is_current(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &Path| fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
        let here = ino(Path::new("/proc/thread-self/ns/net"));
        here.is_some() && here == ino(&self.path)
    }

    /// `ip -batch` of these commands in the namespace.
    pub fn ip(&self, cmds: &[&str]) -> Result<()> {
        ip_batch(Some(&self.name), cmds)
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        Netns::open(&self.path.to_string_lossy())?.run(f)
    }

    /// Index of a device of this namespace.
    pub fn ifindex(&self, name: &str) -> Result<u32> {
        let n = name.to_owned();
        self.run(move || {
            let c = std::ffi::CString::new(n.clone()).expect("no NUL in a device name");
            // SAFETY: valid C string.
            match unsafe { libc::if_nametoindex(c.as_ptr()) } {
                0 => Err(Error::not_found(format!("no device {n}"))),
                i => Ok(i),
            }
        })?
        .map_err(|e| e.context(&self.name))
    }

    /// A device's MAC address.
    pub fn mac(&self, dev: &str) -> Result<[u8; 6]> {
        // Not /sys: it shows the namespace it was mounted in.
        let out = self.ok(&["ip", "-br", "link", "show", "dev", dev])?;
        out.split_whitespace()
            .nth(2)
            .and_then(parse_mac)
            .ok_or_else(|| Error::system(format!("no MAC for {dev} in {}: {out}", self.name)))
    }
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    v.try_into().ok()
}

pub fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Runs `cmd`; stdout, or an error naming `what` with both outputs.
pub fn checked(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::system(format!("cannot run {what}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(Error::system(format!(
            "{what}: {}\nstdout: {}\nstderr: {}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(stdout)
}

/// CPU placement of a measured process.
#[derive(Clone, Copy, Debug)]
pub enum Place {
    /// Pinned to this CPU at nice -20.
    Pinned(usize),
    /// Anywhere, at nice -20.
    Anywhere,
}

/// Pins the calling thread (or, before exec, process) to `cpu`.
pub fn pin_to(cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; the calls only touch the caller.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// nice -20 for the calling thread (or, before exec, process).
pub fn high_priority() -> std::io::Result<()> {
    // SAFETY: gettid/setpriority affect the caller only.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, -20) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Applies `place` to a command's child before it execs (no extra
/// `taskset`/`nice` process: the PID we hold is the tool's own).
pub fn place(cmd: &mut Command, place: Place) {
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Place::Pinned(cpu) = place {
                pin_to(cpu)?;
            }
            high_priority()
        });
    }
}

/// A process the bench started: killed (SIGKILL, exact PID) and reaped on
/// drop unless it was waited for.
pub struct Proc {
    child: Option<Child>,
    pub pid: u32,
    what: String,
    out: Option<PathBuf>,
}

impl Proc {
    /// Starts `argv` in `ns` at `place`; stdout and stderr go to `out` if given.
    pub fn spawn(ns: &Ns, place_at: Place, argv: &[&str], out: Option<&Path>) -> Result<Proc> {
        let mut cmd = ns.command(argv);
        place(&mut cmd, place_at);
        match out {
            Some(path) => {
                let f = fs::File::create(path)
                    .map_err(|e| Error::system(format!("creating {}: {e}", path.display())))?;
                let f2 = f.try_clone()?;
                cmd.stdout(f).stderr(f2);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let what = format!("{} (in {})", argv.join(" "), ns.name);
        let child = cmd
            .spawn()
            .map_err(|e| Error::system(format!("cannot start {what}: {e}")))?;
        let pid = child.id();
        cleanup::register_pid(pid);
        Ok(Proc {
            child: Some(child),
            pid,
            what,
            out: out.map(Path::to_owned),
        })
    }

    /// Waits for the process to exit (at most `limit`), then returns its
    /// output; a non-zero exit or a timeout is an error. Ctrl-C kills it.
    pub fn wait(mut self, limit: Duration) -> Result<String> {
        let start = Instant::now();
        let mut child = self.child.take().expect("not waited yet");
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) => {}
                Err(e) => return Err(Error::system(format!("waiting for {}: {e}", self.what))),
            }
            if cleanup::interrupted() || start.elapsed() > limit {
                self.child = Some(child);
                cleanup::check()?;
                return Err(Error::system(format!(
                    "{} did not finish within {:.0} s",
                    self.what,
                    limit.as_secs_f64()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        cleanup::unregister_pid(self.pid);
        let out = match &self.out {
            Some(p) => fs::read_to_string(p).unwrap_or_default(),
            None => String::new(),
        };
        if !status.success() {
            return Err(Error::system(format!(
                "{} failed ({status}): {}",
                self.what,
                out.trim()
            )));
        }
        Ok(out)
    }

    /// Waits until the process listens on TCP `port` (looked up in its own
    /// namespace through /proc/<pid>/net/tcp and tcp6).
    pub fn wait_listening(&mut self, port: u16) -> Result<()> {
        let start = Instant::now();
        let needle = format!(":{port:04X} ");
        loop {
            let tcp = ["tcp", "tcp6"]
                .iter()
                .map(|f| {
                    fs::read_to_string(format!("/proc/{}/net/{f}", self.pid)).unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join("\n");
            let listening = tcp.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && format!("{} ", f[1]).ends_with(&needle) && f[3] == "0A"
            });
            if listening {
                return Ok(());
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                let out = self
                    .out
                    .as_ref()
                    .and_then(|p| fs::read_to_string(p).ok())
                    .unwrap_or_default();
                cleanup::unregister_pid(self.pid);
                self.child = None;
                return Err(Error::system(format!(
                    "{} exited ({st}) before listening: {}",
                    self.what,
                    out.trim()
                )));
            }
            cleanup::check()?;
            if start.elapsed() > Duration::from_secs(5) {
                return Err(Error::system(format!(
                    "{} does not listen on port {port} after 5 s",
                    self.what
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            // Exact PID; reaped by kill_pid, so the Child is just forgotten.
            kill_pid(self.pid);
            drop(child);
        }
    }
}

/// `ip -batch` of `cmds`, in namespace `netns` (`ip -n`) or this process's.
pub fn ip_batch<S: AsRef<str>>(netns: Option<&str>, cmds: &[S]) -> Result<()> {
    let script = cmds
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join("\n");
    let mut ip = Command::new("ip");
    if let Some(ns) = netns {
        ip.args(["-n", ns]);
    }
    let mut child = ip
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::system(format!("cannot run ip: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes())
        .map_err(|e| Error::system(format!("writing to ip: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| Error::system(format!("waiting for ip: {e}")))?;
    if !out.status.success() {
        return Err(Error::system(format!(
            "ip{} -batch failed: {}\ncommands:\n{script}",
            netns.map(|n| format!(" -n {n}")).unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim(),
        )));
    }
    Ok(())
}
