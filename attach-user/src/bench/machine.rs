//! Facts about the machine a run was made on, and a watch on other
//! processes: a run during which something else took more than 10% of a CPU
//! is noted with the culprit, so noisy numbers can be told from real ones.

use std::{collections::BTreeMap, fs, time::Instant};

use serde::Serialize;

use super::cleanup;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub kernel: String,
    pub cpu_model: String,
    pub nproc: usize,
    pub memory_mib: u64,
    pub loadavg_at_start: String,
    pub loadavg_at_end: String,
    /// The CPU the generator, clients and senders run on.
    pub measured_cpu: usize,
    /// The CPU the receivers of socket tests run on.
    pub receiver_cpu: usize,
    pub bpf_jit: String,
    pub started_unix: u64,
    pub elapsed_s: f64,
}

fn read(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Machine {
    pub fn now(measured_cpu: usize, receiver_cpu: usize) -> Machine {
        let cpu_model = fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let memory_mib = fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024);
        // SAFETY: uname fills a plain struct.
        let kernel = unsafe {
            let mut u: libc::utsname = std::mem::zeroed();
            if libc::uname(&mut u) == 0 {
                std::ffi::CStr::from_ptr(u.release.as_ptr())
                    .to_string_lossy()
                    .into_owned()
            } else {
                "unknown".into()
            }
        };
        Machine {
            kernel,
            cpu_model,
            nproc: nproc(),
            memory_mib,
            loadavg_at_start: read("/proc/loadavg"),
            loadavg_at_end: String::new(),
            measured_cpu,
            receiver_cpu,
            bpf_jit: read("/proc/sys/net/core/bpf_jit_enable"),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            elapsed_s: 0.0,
        }
    }
}

/// CPU ticks, name and parent of every process, at one moment.
fn snapshot() -> BTreeMap<u32, (u64, String, u32)> {
    let mut m = BTreeMap::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return m;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid … utime stime …": comm may hold spaces.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let ppid = f.get(1).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
        m.insert(pid, (ticks, comm, ppid));
    }
    m
}

/// Watches other processes over one measured run.
pub struct Watch {
    start: Instant,
    before: BTreeMap<u32, (u64, String, u32)>,
}

/// More than this share of one CPU during a run is noted.
const BUSY: f64 = 0.10;

impl Watch {
    pub fn start() -> Watch {
        Watch {
            start: Instant::now(),
            before: snapshot(),
        }
    }

    /// "comm[pid] 23%" for every process not the bench's own (nor started
    /// by it) that took more than 10% of a CPU since `start`. Softirq threads
    /// (`ksoftirqd/N`) are left out: they mostly carry the bench's own
    /// traffic.
    pub fn finish(self) -> Vec<String> {
        let secs = self.start.elapsed().as_secs_f64();
        if secs <= 0.0 {
            return Vec::new();
        }
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let me = std::process::id();
        let ours = cleanup::own_pids();
        let mut notes = Vec::new();
        let now = snapshot();
        let ours_or_child = |pid: u32| {
            let mut p = pid;
            for _ in 0..6 {
                if p == me || ours.contains(&p) {
                    return true;
                }
                match now.get(&p) {
                    Some(&(_, _, pp)) if pp > 1 => p = pp,
                    _ => return false,
                }
            }
            false
        };
        for (&pid, (ticks, comm, _)) in &now {
            if ours_or_child(pid) || comm.starts_with("ksoftirqd") {
                continue;
            }
            let ticks = *ticks;
            let used = ticks.saturating_sub(self.before.get(&pid).map_or(0, |b| b.0));
            let share = used as f64 / hz / secs;
            if share > BUSY {
                notes.push(format!("{comm}[{pid}] {:.0}%", share * 100.0));
            }
        }
        notes
    }
}
