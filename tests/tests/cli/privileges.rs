//! What needs privileges and what does not: no bpffs, no CAP_NET_ADMIN or
//! CAP_SYS_ADMIN, the node's state root's alone; completions and manual
//! pages for anyone.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    process::{Command, Output},
};

use attach_tests::{
    kinds,
    lab::{Attach, Lab, NODE_IF, require_root},
    refusal::text,
    snapshot::{snapshot, state_dir},
};

use super::*;

/// Runs `attach <args>` at the end of the command line `wrapper`; the exit
/// status is not checked.
fn wrapped<S: AsRef<std::ffi::OsStr>>(wrapper: &[S], args: &[&str]) -> Output {
    Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .arg(Attach::bin().unwrap())
        .args(args)
        .output()
        .unwrap()
}

/// Run as `ip netns exec NODE attach ...`, the process has a /sys of its own
/// without bpffs: an eBPF add fails before it makes anything (no rollback,
/// so no rollback warning) and says how to run it instead; a native add,
/// which needs no pins, works there.
#[test]
fn add_without_bpffs_fails_before_making_anything() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = lab.container("c1").unwrap();
    let empty = snapshot(&lab, &[&c]);
    let ip_netns_exec = ["ip", "netns", "exec", lab.node().name()];
    let out = wrapped(&ip_netns_exec, &add_macvlan(&c, &[]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bpffs is not mounted on /sys/fs/bpf")
            && err.contains("nsenter --net=/run/netns/NAME"),
        "{err}"
    );
    assert!(!err.contains("rollback"), "a rollback ran: {err}");
    assert_eq!(snapshot(&lab, &[&c]), empty);

    let out = wrapped(&ip_netns_exec, &add_macvlan(&c, &["--backend", "native"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
    assert_eq!(snapshot(&lab, &[&c]), empty);
}

/// Without CAP_NET_ADMIN and CAP_SYS_ADMIN a command is refused before it
/// starts, naming what the process lacks; `list` needs neither.
#[test]
fn unprivileged_commands_are_refused_up_front() {
    require_root();
    let lab = Lab::new().unwrap();
    let c = lab.container("c1").unwrap();
    let empty = snapshot(&lab, &[&c]);
    let net = format!("--net={}", lab.node().path().display());
    let in_node = |setpriv: &[&str]| -> Vec<String> {
        ["nsenter", &net, "setpriv"]
            .iter()
            .chain(setpriv)
            .map(|s| s.to_string())
            .collect()
    };
    let as_nobody = in_node(&["--reuid=65534", "--regid=65534", "--clear-groups"]);
    let out = wrapped(&as_nobody, &add_macvlan(&c, &[]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "attach add needs CAP_NET_ADMIN and CAP_SYS_ADMIN (run it as root); \
             this process lacks CAP_NET_ADMIN and CAP_SYS_ADMIN"
        ),
        "{err}"
    );
    // Root without CAP_NET_ADMIN: only that is missing.
    let no_net_admin = in_node(&["--inh-caps=-all", "--bounding-set=-net_admin"]);
    let out = wrapped(&no_net_admin, &["del", "--netns", c.name()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("attach del needs") && err.ends_with("this process lacks CAP_NET_ADMIN"),
        "{err}"
    );
    assert_eq!(snapshot(&lab, &[&c]), empty);
    let out = wrapped(&as_nobody, &["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

/// Removes what [`the_nodes_state_is_roots_alone`] plants in the node's
/// state directory, also when it fails.
struct Planted(std::path::PathBuf);

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0.join("lock"));
        let _ = fs::remove_file(self.0.join("elsewhere"));
        let _ = fs::remove_dir(self.0.join("attachments"));
        let _ = fs::remove_dir(&self.0);
    }
}

/// The node's state directory, its records and its lock are root's alone
/// (another user could otherwise hold the lock and stall every add and del,
/// or read the records); modes an older build left wider are narrowed on
/// the next change; a symbolic link in place of the lock is refused, not
/// followed, naming it, and nothing is made.
#[test]
fn the_nodes_state_is_roots_alone() {
    require_root();
    let lab = Lab::new().unwrap();
    let (c1, c2) = (lab.container("c1").unwrap(), lab.container("c2").unwrap());
    let state = state_dir(&lab);
    let records = state.join("attachments");
    let lock = state.join("lock");
    let files = |dir: &Path| -> Vec<std::path::PathBuf> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect()
    };
    let assert_private = |when: &str| {
        assert_eq!(mode_of(&state), 0o700, "{when}: {}", state.display());
        assert_eq!(mode_of(&records), 0o700, "{when}: {}", records.display());
        assert_eq!(mode_of(&lock), 0o600, "{when}: {}", lock.display());
        let recs = files(&records);
        assert!(!recs.is_empty(), "{when}: no records");
        for f in recs.iter().chain(&files(&state)) {
            assert_eq!(mode_of(f), 0o600, "{when}: {}", f.display());
            assert_eq!(fs::metadata(f).unwrap().uid(), 0, "{when}: {}", f.display());
        }
    };

    lab.attach().ok(&add_macvlan(&c1, &[])).unwrap();
    assert_private("after the first add");
    // Another user can neither take the lock nor read a record.
    let nobody = |argv: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args(argv)
            .output()
            .unwrap()
    };
    let lock_s = lock.display().to_string();
    let out = nobody(&["flock", "-n", &lock_s, "true"]);
    assert!(!out.status.success(), "nobody took the lock");
    let rec = files(&records)[0].display().to_string();
    assert!(
        !nobody(&["cat", &rec]).status.success(),
        "nobody read {rec}"
    );
    // Nor list them: told why.
    let net = format!("--net={}", lab.node().path().display());
    let bin = Attach::bin().unwrap();
    let out = Command::new("nsenter")
        .args([
            &net,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ])
        .arg(&bin)
        .arg("list")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("root only") && err.contains(&state.display().to_string()),
        "{err}"
    );

    // As an older build left them: wide open. The next add narrows them.
    for (p, m) in [(&state, 0o755), (&records, 0o755), (&lock, 0o666)] {
        fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    }
    for f in files(&records) {
        fs::set_permissions(f, fs::Permissions::from_mode(0o644)).unwrap();
    }
    lab.attach()
        .ok(&kinds::add_macvlan(NODE_IF, &c2, "10.77.0.12/24", &[]))
        .unwrap();
    assert_private("after an add on wide modes");
    for c in [&c1, &c2] {
        lab.attach().ok(&["del", "--netns", c.name()]).unwrap();
    }
    assert!(!state.exists(), "the state directory outlived its records");

    // A symbolic link planted as the lock: refused, not followed.
    let _planted = Planted(state.clone());
    fs::create_dir_all(&records).unwrap();
    let target = state.join("elsewhere");
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    let before = snapshot(&lab, &[&c1]);
    let out = lab.attach().run(&add_macvlan(&c1, &[])).unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&lock_s) && err.contains("symbolic link"),
        "{err}"
    );
    assert!(!target.exists(), "the lock's link was followed");
    assert_eq!(snapshot(&lab, &[&c1]), before);
}

/// `attach completions SHELL` and `attach man [COMMAND]` are made from the
/// command line itself and need no privileges: run as nobody, each prints a
/// script or page that knows `attach add`; an unknown shell or command is
/// refused naming it.
#[test]
fn completions_and_manual_pages() {
    require_root();
    let bin = Attach::bin().unwrap();
    let as_nobody = |args: &[&str]| -> Output {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin)
            .args(args)
            .output()
            .unwrap()
    };
    for (args, want) in [
        (
            &["completions", "bash"][..],
            &["attach", "add", "macvlan", "--parent"][..],
        ),
        (
            &["completions", "zsh"],
            &["#compdef attach", "add", "macvlan", "--parent"],
        ),
        (
            &["completions", "fish"],
            &["complete -c attach", "add", "macvlan", "parent"],
        ),
        (
            &["man"],
            &[".TH attach", "attach add macvlan", "attach add router"],
        ),
        (
            &["man", "add", "macvlan"],
            &[".TH attach-add-macvlan", "attach add macvlan", "parent"],
        ),
    ] {
        let out = as_nobody(args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "attach {args:?}: {stderr}");
        assert!(stderr.is_empty(), "attach {args:?}: {stderr}");
        for w in want {
            assert!(stdout.contains(w), "attach {args:?}: no {w:?} in\n{stdout}");
        }
    }
    let out = as_nobody(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("tcsh"), "{}", text(&out.stderr));
    let out = as_nobody(&["man", "add", "teleport"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("\"teleport\""),
        "{}",
        text(&out.stderr)
    );
}
