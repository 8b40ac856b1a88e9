//! `attach monitor`: the datapath's events, as they happen — every drop with
//! its reason, and with `--trace` every decision. Only events from after it
//! starts; events the programs had no room for in the ring buffer, and
//! those `--sample`/`--rate` leave out, are counted and reported, so what it
//! prints, loses and suppresses adds up to what happened.

mod throttle;

use std::{collections::HashMap, io::Write, time::Duration};

use attach_common::{Direction, Event, Verdict};
use serde::Serialize;
use serde_json::json;
use tokio::io::unix::AsyncFd;

use crate::{Engine, Error, Result, addr::Mac};
pub use throttle::Throttle;

#[derive(clap::Args, Debug, Clone)]
pub struct MonitorArgs {
    /// Report every decision, not only drops (costs a little on every packet
    /// while on; node-wide, switched off again on exit).
    #[arg(long)]
    pub trace: bool,
    /// Stop after printing this many events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Print one event in N (the first of every N); the others are counted
    /// as suppressed. Stated in the output.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub sample: Option<u64>,
    /// Print at most N events a second; the rest are counted as suppressed.
    /// Stated in the output.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
}

/// One event, as printed (JSON lines with `-o json`, `"type": "event"`).
#[derive(Serialize)]
pub struct EventLine {
    #[serde(rename = "type")]
    pub kind: &'static str,
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

fn clock(id: libc::clockid_t) -> std::time::Duration {
    // SAFETY: plain data filled by the kernel.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn line(e: &Event, offset: f64, names: &HashMap<u32, String>) -> EventLine {
    let verdict = Verdict::ALL.get(e.verdict as usize).copied();
    EventLine {
        kind: "event",
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

/// Writes one line to stdout. Not holding stdout's lock across awaits keeps
/// the monitor Send.
fn emit(text: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// What one monitor printed, left out and lost, and how it prints.
struct Printer<'a> {
    json: bool,
    /// Realtime minus monotonic, in seconds: events' times as dates.
    offset: f64,
    names: &'a HashMap<u32, String>,
    /// Events stamped before this (monotonic ns) happened before the
    /// monitor started: a ring nobody read kept them. Skipped.
    start_ns: u64,
    count: Option<u64>,
    throttle: Throttle,
    printed: u64,
    suppressed: u64,
    earlier: u64,
    /// The programs' lost-events counter when the monitor started, and as
    /// last reported.
    lost_start: u64,
    lost_reported: u64,
    suppressed_reported: u64,
}

impl Printer<'_> {
    fn now(&self) -> f64 {
        clock(libc::CLOCK_REALTIME).as_secs_f64()
    }

    /// One item of the ring; true once `--count` events are printed.
    fn event(&mut self, item: &[u8]) -> Result<bool> {
        if item.len() < std::mem::size_of::<Event>() {
            return Ok(false);
        }
        // SAFETY: the programs write whole `Event`s; read unaligned.
        let e: Event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
        if e.ktime_ns < self.start_ns {
            self.earlier += 1;
            return Ok(false);
        }
        if !self.throttle.admit(e.ktime_ns) {
            self.suppressed += 1;
            return Ok(false);
        }
        let l = line(&e, self.offset, self.names);
        let text = if self.json {
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
        emit(&text);
        self.printed += 1;
        Ok(self.count.is_some_and(|c| self.printed >= c))
    }

    /// What the monitor shows, first on stdout.
    fn header(&self, trace: bool) -> Result<()> {
        let what = if trace { "every decision" } else { "drops" };
        let since = self.start_ns as f64 / 1e9 + self.offset;
        let limits = self.throttle.describe();
        if self.json {
            emit(&serde_json::to_string(&json!({
                "type": "header",
                "events": what,
                "since": since,
                "sample": self.throttle.sample(),
                "rate": self.throttle.rate(),
                "limits": limits,
            }))?);
        } else {
            let mut text = format!("# {what} from {since:.6} on");
            if let Some(l) = limits {
                text.push_str("; ");
                text.push_str(&l);
            }
            emit(&text);
        }
        Ok(())
    }

    /// Reports events lost and suppressed since the last report, if any
    /// were; `lost_now` is the programs' counter.
    fn report(&mut self, lost_now: u64) -> Result<()> {
        let lost = lost_now.saturating_sub(self.lost_reported);
        let suppressed = self.suppressed - self.suppressed_reported;
        if lost == 0 && suppressed == 0 {
            return Ok(());
        }
        self.lost_reported = lost_now;
        self.suppressed_reported = self.suppressed;
        if self.json {
            emit(&serde_json::to_string(&json!({
                "type": "report",
                "time": self.now(),
                "lost": lost,
                "suppressed": suppressed,
            }))?);
        } else {
            emit(&format!(
                "# {:.6} since the last report: {lost} events lost (event buffer full), \
                 {suppressed} suppressed",
                self.now()
            ));
        }
        Ok(())
    }

    /// The totals, on exit.
    fn summary(&mut self, lost_now: u64) -> Result<()> {
        let lost = lost_now.saturating_sub(self.lost_start);
        if self.json {
            emit(&serde_json::to_string(&json!({
                "type": "summary",
                "time": self.now(),
                "printed": self.printed,
                "lost": lost,
                "suppressed": self.suppressed,
                "earlier": self.earlier,
            }))?);
        } else {
            emit(&format!(
                "# {} events printed, {lost} lost (event buffer full), {} suppressed; \
                 {} from before the start skipped",
                self.printed, self.suppressed, self.earlier
            ));
        }
        Ok(())
    }
}

/// Events handled before the monitor looks at its clock and counters again:
/// under a flood the ring never empties, and the reports must still come.
const BATCH: usize = 4096;

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
    // The programs stamp events with bpf_ktime_get_ns: CLOCK_MONOTONIC.
    let start = clock(libc::CLOCK_MONOTONIC);
    let lost_start = dp.events_lost()?;
    let mut p = Printer {
        json,
        offset: clock(libc::CLOCK_REALTIME).as_secs_f64() - start.as_secs_f64(),
        names: &names,
        start_ns: start.as_nanos() as u64,
        count: args.count,
        throttle: Throttle::new(args.sample, args.rate),
        printed: 0,
        suppressed: 0,
        earlier: 0,
        lost_start,
        lost_reported: lost_start,
        suppressed_reported: 0,
    };
    // SAFETY: the ring buffer owns its fd for as long as the AsyncFd lives.
    let mut fd = unsafe { AsyncFd::register(ring) }
        .map_err(|e| Error::system(format!("polling the event buffer: {}", e.into_parts().1)))?;
    p.header(args.trace)?;
    // On stderr, so stdout stays the monitor's records: a script (or a
    // test) can wait for this line instead of guessing when the buffer is
    // open.
    eprintln!(
        "attach monitor: listening for {}{} (Ctrl-C to stop)",
        if args.trace {
            "every decision"
        } else {
            "drops"
        },
        p.throttle
            .describe()
            .map(|l| format!(", {l}"))
            .unwrap_or_default()
    );
    let deadline = args.timeout.map(Duration::from_secs);
    let result: Result<bool> = async {
        let stream = async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    g = fd.readable_mut() => {
                        let mut guard = g.map_err(Error::from)?;
                        let mut n = 0;
                        while let Some(item) = guard.get_inner_mut().next() {
                            if p.event(&item)? {
                                return Ok(true);
                            }
                            n += 1;
                            if n == BATCH {
                                break;
                            }
                        }
                        // A full batch leaves the fd ready: more is waiting.
                        if n < BATCH {
                            guard.clear_ready();
                        }
                    }
                    _ = tick.tick() => p.report(dp.events_lost()?)?,
                }
            }
        };
        tokio::select! {
            r = stream => r,
            _ = tokio::signal::ctrl_c() => Ok(false),
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            } => Ok(false),
        }
    }
    .await;
    // Events already in the ring when the monitor was told to stop
    // happened while it ran: they are printed (or counted) too.
    let result = match result {
        Ok(false) => (|| {
            while let Some(item) = fd.get_mut().next() {
                if p.event(&item)? {
                    break;
                }
            }
            Ok(())
        })(),
        Ok(true) => Ok(()),
        Err(e) => Err(e),
    };
    if args.trace {
        dp.set_trace(false)?;
    }
    result?;
    let lost = dp.events_lost()?;
    p.report(lost)?;
    p.summary(lost)
}
