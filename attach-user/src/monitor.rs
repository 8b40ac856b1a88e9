//! `attach monitor`: the datapath's events, as they happen — every drop with
//! its reason, and with `--trace` every decision.

use std::{collections::HashMap, io::Write, time::Duration};

use attach_common::{Direction, Event, Verdict};
use serde::Serialize;
use tokio::io::unix::AsyncFd;

use crate::{Engine, Error, Result, addr::Mac};

#[derive(clap::Args, Debug, Clone)]
pub struct MonitorArgs {
    /// Report every decision, not only drops (costs a little on every packet
    /// while on; node-wide, switched off again on exit).
    #[arg(long)]
    pub trace: bool,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
}

/// One event, as printed (JSON lines with `-o json`).
#[derive(Serialize)]
pub struct EventLine {
    /// Unix time, seconds with nanoseconds.
    pub time: f64,
    pub direction: &'static str,
    pub verdict: &'static str,
    pub drop: bool,
    pub ifindex: u32,
    /// The endpoint, as `netns/ifname`, when the frame belongs to one.
    pub endpoint: Option<String>,
    pub len: u32,
    pub ethertype: String,
    pub src: String,
    pub dst: String,
}

fn clock(id: libc::clockid_t) -> f64 {
    // SAFETY: plain data filled by the kernel.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn line(e: &Event, offset: f64, names: &HashMap<u32, String>) -> EventLine {
    let verdict = Verdict::ALL.get(e.verdict as usize).copied();
    EventLine {
        time: e.ktime_ns as f64 / 1e9 + offset,
        direction: Direction::ALL
            .get(e.direction as usize)
            .map_or("?", |d| d.name()),
        verdict: verdict.map_or("?", |v| v.name()),
        drop: verdict.is_some_and(|v| v.is_drop()),
        ifindex: e.ifindex,
        endpoint: names.get(&e.endpoint).cloned(),
        len: e.len,
        ethertype: format!("0x{:04x}", u16::from_be(e.proto)),
        src: Mac(e.src).to_string(),
        dst: Mac(e.dst).to_string(),
    }
}

/// Streams events to stdout until `count`, `timeout` or Ctrl-C.
pub async fn run(engine: &Engine, args: &MonitorArgs, json: bool) -> Result<()> {
    if !engine.pin_dir().join(attach_common::MAP_EVENTS).exists() {
        return Err(Error::not_found(
            "no eBPF datapath on this node yet (attach an endpoint first)",
        ));
    }
    let mut dp = engine.datapath()?;
    let names: HashMap<u32, String> = engine
        .list()?
        .into_iter()
        .filter_map(|r| Some((r.endpoint_id?, format!("{}/{}", r.netns, r.ifname))))
        .collect();
    let ring = dp.events()?;
    if args.trace {
        dp.set_trace(true)?;
    }
    let offset = clock(libc::CLOCK_REALTIME) - clock(libc::CLOCK_MONOTONIC);
    // SAFETY: the ring buffer owns its fd for as long as the AsyncFd lives.
    let mut fd = unsafe { AsyncFd::register(ring) }
        .map_err(|e| Error::system(format!("polling the event buffer: {}", e.into_parts().1)))?;
    // On stderr, so stdout stays events only: a script (or a test) can wait
    // for this line instead of guessing when the buffer is open.
    eprintln!(
        "attach monitor: listening for {} (Ctrl-C to stop)",
        if args.trace {
            "every decision"
        } else {
            "drops"
        }
    );
    let deadline = args.timeout.map(Duration::from_secs);
    let mut seen = 0u64;
    let result: Result<()> = async {
        let stream = async {
            loop {
                let mut guard = fd.readable_mut().await.map_err(Error::from)?;
                while let Some(item) = guard.get_inner_mut().next() {
                    if item.len() < std::mem::size_of::<Event>() {
                        continue;
                    }
                    // SAFETY: the programs write whole `Event`s; read unaligned.
                    let e: Event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                    let l = line(&e, offset, &names);
                    let text = if json {
                        serde_json::to_string(&l)?
                    } else {
                        format!(
                            "{:.6} {:<4} {:<18} {:<24} if{} len {} {} {} > {}",
                            l.time,
                            l.direction,
                            l.verdict,
                            l.endpoint.as_deref().unwrap_or("-"),
                            l.ifindex,
                            l.len,
                            l.ethertype,
                            l.src,
                            l.dst
                        )
                    };
                    // Not holding stdout's lock across awaits keeps this Send.
                    let mut out = std::io::stdout();
                    let _ = writeln!(out, "{text}");
                    let _ = out.flush();
                    seen += 1;
                    if args.count.is_some_and(|c| seen >= c) {
                        return Ok(());
                    }
                }
                guard.clear_ready();
            }
        };
        tokio::select! {
            r = stream => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            } => Ok(()),
        }
    }
    .await;
    if args.trace {
        dp.set_trace(false)?;
    }
    result
}
