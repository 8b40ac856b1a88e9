//! Which events `attach monitor` prints when asked for fewer: one in N
//! (`--sample`), at most N a second (`--rate`). The others are counted as
//! suppressed, never silently skipped.

/// Nanoseconds in the window `--rate` counts over.
const WINDOW_NS: u64 = 1_000_000_000;

/// The sampling and rate limit of one monitor.
#[derive(Debug, Clone)]
pub struct Throttle {
    sample: u64,
    rate: Option<u64>,
    /// Events seen, printed or not: the sample's position.
    seen: u64,
    /// Start of the current one-second window (event time), and events
    /// printed in it.
    window: Option<u64>,
    in_window: u64,
}

impl Throttle {
    /// `sample`: print one event in that many (1 or none: all);
    /// `rate`: print at most that many a second.
    pub fn new(sample: Option<u64>, rate: Option<u64>) -> Self {
        Self {
            sample: sample.unwrap_or(1).max(1),
            rate,
            seen: 0,
            window: None,
            in_window: 0,
        }
    }

    /// Whether the event stamped `ktime_ns` is printed. The rate counts in
    /// the events' own time (the programs' clock), so a monitor catching up
    /// with a backlog keeps to it too.
    pub fn admit(&mut self, ktime_ns: u64) -> bool {
        let nth = self.seen;
        self.seen += 1;
        if !nth.is_multiple_of(self.sample) {
            return false;
        }
        let Some(rate) = self.rate else {
            return true;
        };
        match self.window {
            Some(start) if ktime_ns.saturating_sub(start) < WINDOW_NS => {}
            _ => {
                self.window = Some(ktime_ns);
                self.in_window = 0;
            }
        }
        if self.in_window >= rate {
            return false;
        }
        self.in_window += 1;
        true
    }

    pub fn sample(&self) -> Option<u64> {
        (self.sample > 1).then_some(self.sample)
    }

    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    /// The limits as the output states them, or `None` when every event is
    /// printed.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.sample > 1 {
            parts.push(format!(
                "one event in {} printed (--sample {})",
                self.sample, self.sample
            ));
        }
        if let Some(r) = self.rate {
            parts.push(format!("at most {r} events a second printed (--rate {r})"));
        }
        if parts.is_empty() {
            None
        } else {
            Some(format!(
                "{}; the others counted as suppressed",
                parts.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn without_limits_every_event_is_printed() {
        let mut t = Throttle::new(None, None);
        assert!((0..1000).all(|i| t.admit(i)));
        assert_eq!(t.describe(), None);
    }

    #[test]
    fn sampling_prints_the_first_of_every_n() {
        let mut t = Throttle::new(Some(10), None);
        let printed: Vec<u64> = (0..35).filter(|&i| t.admit(i)).collect();
        assert_eq!(printed, [0, 10, 20, 30]);
        assert!(t.describe().unwrap().contains("--sample 10"));
    }

    #[test]
    fn the_rate_holds_in_each_second() {
        let mut t = Throttle::new(None, Some(3));
        // Ten events in the first second, ten in the next.
        let first = (0..10).filter(|i| t.admit(i * S / 20)).count();
        let second = (0..10).filter(|i| t.admit(S + i * S / 20)).count();
        assert_eq!((first, second), (3, 3));
        assert!(t.describe().unwrap().contains("--rate 3"));
    }

    #[test]
    fn sampling_comes_before_the_rate() {
        let mut t = Throttle::new(Some(2), Some(2));
        let printed: Vec<u64> = (0..10).filter(|&i| t.admit(i)).collect();
        assert_eq!(printed, [0, 2]);
    }
}
