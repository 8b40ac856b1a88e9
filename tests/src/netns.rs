//! A named network namespace that is deleted when its guard drops.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::poll;

/// A name part unique across labs of this process and of other processes
/// alive at the same time: `<pid>-<counter>`.
pub fn unique_tag() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Before this process names anything: what killed ones left.
    crate::stale::sweep_once();
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Names of the namespaces under /run/netns (`ip netns list`).
pub fn netns_list() -> Result<Vec<String>> {
    let out = checked(Command::new("ip").args(["netns", "list"]), "ip netns list")?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// A network namespace created with `ip netns add`, deleted on drop
/// (which also destroys the interfaces inside it).
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    /// Creates `<prefix>-<unique tag>` with `lo` up.
    pub fn new(prefix: &str) -> Result<Netns> {
        Netns::named(&format!("{prefix}-{}", unique_tag()))
    }

    /// Creates a namespace with exactly this name; fails if it exists.
    pub fn named(name: &str) -> Result<Netns> {
        checked(
            Command::new("ip").args(["netns", "add", name]),
            &format!("ip netns add {name}"),
        )?;
        // The guard exists from here on, so a failure below still deletes it.
        let ns = Netns {
            name: name.to_owned(),
            path: Path::new("/run/netns").join(name),
        };
        ns.ok(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A command that runs `argv` inside the namespace. `nsenter` rather than
    /// `ip netns exec`, which remounts /sys and hides /sys/fs/bpf.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path.display()))
            .arg("--")
            .args(argv)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `argv` in the namespace; the exit status is not checked.
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        self.command(argv)
            .output()
            .with_context(|| format!("cannot run {argv:?} in {}", self.name))
    }

    /// Runs `argv` in the namespace and returns its stdout; a non-zero exit
    /// is an error carrying stdout and stderr.
    pub fn ok(&self, argv: &[&str]) -> Result<String> {
        checked(
            &mut self.command(argv),
            &format!("{} in netns {}", argv.join(" "), self.name),
        )
    }

    /// Runs `f` on a thread that entered the namespace (sockets made there
    /// stay in it), and returns what it returns.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let file = std::fs::File::open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid namespace fd; setns moves this thread only.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error()).context("setns");
            }
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread in {} panicked", self.name))?
    }

    /// Runs `sh -c cmd` in the namespace; the exit status is not checked.
    pub fn sh(&self, cmd: &str) -> Result<Output> {
        self.exec(&["sh", "-c", cmd])
    }

    /// Waits (up to 5 s) until a TCP socket listens on `port` here: a
    /// server started a moment ago may not have bound yet on a busy node.
    pub fn wait_listening(&self, port: u16) -> Result<()> {
        let filter = format!("sport = :{port}");
        let listens = || {
            self.exec(&["ss", "-Hltn", &filter])
                .is_ok_and(|o| !o.stdout.is_empty())
        };
        if !poll::until(Duration::from_secs(5), Duration::from_millis(20), listens) {
            bail!(
                "nothing listens on TCP port {port} in {} after 5 s",
                self.name
            );
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "warning: ip netns del {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("warning: ip netns del {}: {e}", self.name),
        }
    }
}

/// Returns once the kernel has destroyed every network namespace whose last
/// reference went before the call (up to 10 s): a namespace of its own,
/// holding one end of a veth, is dropped and the other end, in a second
/// namespace, waited for. The kernel destroys released namespaces in
/// order, on one ordered work queue, so one released earlier is gone by
/// then. For a test asserting that a namespace it stopped holding lives on.
pub fn wait_released_netns_destroyed() -> Result<()> {
    let keep = Netns::new(&format!("{}-nsgone", crate::lab::NETNS_PREFIX))?;
    let gone = Netns::new(&format!("{}-nsgone", crate::lab::NETNS_PREFIX))?;
    keep.ok(&[
        "ip",
        "link",
        "add",
        "nsgone0",
        "type",
        "veth",
        "peer",
        "name",
        "nsgone1",
        "netns",
        gone.name(),
    ])?;
    drop(gone);
    let destroyed = || {
        keep.exec(&["ip", "link", "show", "nsgone0"])
            .is_ok_and(|o| !o.status.success())
    };
    if !poll::until(
        Duration::from_secs(10),
        Duration::from_millis(10),
        destroyed,
    ) {
        bail!("a released network namespace was not destroyed within 10 s");
    }
    Ok(())
}

/// Runs `cmd`; returns stdout, or an error naming `what` with both outputs.
pub(crate) fn checked(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{what}: {}\nstdout: {}\nstderr: {}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(stdout)
}

/// The id the engine names a node's pin and state directories after
/// (`node-<id>`), read here on its own: the namespace's cookie, or on a
/// kernel without `SO_NETNS_COOKIE` (before 5.14) the id the engine gives
/// the namespace's loopback as an alternative name (`attach-node-<hex>`;
/// `lo-unassigned` while it has none).
pub fn node_id(path: &std::path::Path) -> Result<String> {
    if let Some(cookie) = netns_cookie(path)? {
        return Ok(cookie.to_string());
    }
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", path.display()))
        .args(["ip", "-j", "link", "show", "dev", "lo"])
        .output()?;
    anyhow::ensure!(out.status.success(), "ip link show lo: {out:?}");
    let links: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let id = links[0]["altnames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str()?.strip_prefix("attach-node-"))
        .next()
        .unwrap_or("unassigned");
    Ok(format!("lo-{id}"))
}

/// The network namespace cookie of the namespace at `path`; None where the
/// kernel cannot tell it (`SO_NETNS_COOKIE`, 5.14).
fn netns_cookie(path: &std::path::Path) -> Result<Option<u64>> {
    use std::os::fd::AsRawFd;
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let f = std::fs::File::open(path)?;
    std::thread::spawn(move || {
        // SAFETY: a valid namespace fd; setns affects this short-lived thread only.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            anyhow::bail!("setns: {}", std::io::Error::last_os_error());
        }
        // SAFETY: plain socket calls with valid out-pointers; the fd is ours.
        unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            anyhow::ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let mut cookie: u64 = 0;
            let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
            let r = libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_NETNS_COOKIE,
                (&mut cookie as *mut u64).cast(),
                &mut len,
            );
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if r != 0 && err.raw_os_error() == Some(libc::ENOPROTOOPT) {
                return Ok(None);
            }
            anyhow::ensure!(r == 0, "SO_NETNS_COOKIE: {err}");
            Ok(Some(cookie))
        }
    })
    .join()
    .map_err(|_| anyhow::anyhow!("cookie thread panicked"))?
}
