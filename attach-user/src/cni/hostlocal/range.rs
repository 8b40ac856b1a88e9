//! host-local's ranges and range sets: how a range is completed from its
//! subnet (first host, last host, `.1` as gateway), what it contains, and the
//! order addresses are tried in (after the last reserved one, range by range,
//! wrapping around, the gateway skipped), exactly as host-local does it, so
//! both allocate the same next address from one data directory.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address as a number, with its family (v4 uses the low 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Addr {
    pub v6: bool,
    pub n: u128,
}

impl Addr {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Self {
                v6: false,
                n: u128::from(u32::from(a)),
            },
            IpAddr::V6(a) => Self {
                v6: true,
                n: u128::from(a),
            },
        }
    }

    pub fn ip(self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.n))
        } else {
            // Only ever made from a v4 address or arithmetic inside a v4 subnet.
            IpAddr::V4(Ipv4Addr::from(self.n as u32))
        }
    }

    fn bits(self) -> u32 {
        if self.v6 { 128 } else { 32 }
    }
}

/// One range: a subnet and the part of it handed out. Built by
/// [`Range::new`], which completes and checks it as host-local's
/// `Canonicalize` does (same checks, same messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: Addr,
    pub prefix: u8,
    pub start: Addr,
    pub end: Addr,
    pub gateway: IpAddr,
}

/// A range as configured, before it is completed.
#[derive(Debug, Clone, Default)]
pub struct RangeSpec {
    pub subnet: Option<(IpAddr, u8)>,
    pub start: Option<IpAddr>,
    pub end: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
}

/// Every bit of a `bits`-bit address.
fn all(bits: u32) -> u128 {
    if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// The network part of a `bits`-bit address under `prefix`.
fn mask(bits: u32, prefix: u8) -> u128 {
    let host = bits - u32::from(prefix);
    if host >= 128 {
        0
    } else {
        all(bits) & !((1u128 << host) - 1)
    }
}

impl Range {
    pub fn new(spec: &RangeSpec) -> Result<Self, String> {
        let (ip, prefix) = spec.subnet.ok_or("no subnet")?;
        let subnet = Addr::of(ip);
        let bits = subnet.bits();
        if u32::from(prefix) > bits - 2 {
            return Err(format!("Network {ip}/{prefix} too small to allocate from"));
        }
        let m = mask(bits, prefix);
        let network = Addr {
            v6: subnet.v6,
            n: subnet.n & m,
        };
        if network != subnet {
            return Err(format!(
                "Network has host bits set. For a subnet mask of length {prefix} the network \
                 address is {}",
                network.ip()
            ));
        }
        let in_subnet = |a: Addr| a.v6 == subnet.v6 && a.n & m == subnet.n;
        let first = Addr {
            v6: subnet.v6,
            n: subnet.n + 1,
        };
        let gateway = spec.gateway.unwrap_or(first.ip());
        let given_start = spec.start.map(Addr::of);
        let given_end = spec.end.map(Addr::of);
        // host-local checks each bound with the other one already set (it
        // uses Contains, which honours the bounds it has).
        if let Some(s) = given_start
            && (!in_subnet(s) || given_end.is_some_and(|e| e.v6 == s.v6 && s.n > e.n))
        {
            return Err(format!(
                "RangeStart {} not in network {ip}/{prefix}",
                s.ip()
            ));
        }
        let start = given_start.unwrap_or(first);
        if let Some(e) = given_end
            && (!in_subnet(e) || e.n < start.n)
        {
            return Err(format!("RangeEnd {} not in network {ip}/{prefix}", e.ip()));
        }
        let end = given_end.unwrap_or_else(|| {
            // The last address: broadcast - 1 for v4, all ones for v6.
            let last = subnet.n | (!m & all(bits));
            Addr {
                v6: subnet.v6,
                n: if subnet.v6 { last } else { last - 1 },
            }
        });
        Ok(Self {
            subnet,
            prefix,
            start,
            end,
            gateway,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let a = Addr::of(ip);
        a.v6 == self.subnet.v6
            && a.n & mask(self.subnet.bits(), self.prefix) == self.subnet.n
            && a >= self.start
            && a <= self.end
    }

    fn overlaps(&self, other: &Range) -> bool {
        self.subnet.v6 == other.subnet.v6
            && (self.contains(other.start.ip())
                || self.contains(other.end.ip())
                || other.contains(self.start.ip())
                || other.contains(self.end.ip()))
    }

    /// `start-end`, as host-local names a range in its errors.
    pub fn name(&self) -> String {
        format!("{}-{}", self.start.ip(), self.end.ip())
    }
}

/// Ranges of one family, allocated from as one (one address per set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    /// host-local's `RangeSet.Canonicalize`.
    pub fn new(specs: &[RangeSpec]) -> Result<Self, String> {
        if specs.is_empty() {
            return Err("empty range set".into());
        }
        let ranges = specs
            .iter()
            .map(Range::new)
            .collect::<Result<Vec<_>, _>>()?;
        if ranges.iter().any(|r| r.start.v6 != ranges[0].start.v6) {
            return Err("mixed address families".into());
        }
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                if a.overlaps(b) {
                    return Err(format!("subnets {} and {} overlap", a.name(), b.name()));
                }
            }
        }
        Ok(Self(ranges))
    }

    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }

    /// `start-end,start-end`, as host-local names a set in its errors.
    pub fn name(&self) -> String {
        self.0.iter().map(Range::name).collect::<Vec<_>>().join(",")
    }

    /// The candidates in host-local's order: from the address after
    /// `last` (the last one reserved, if in this set), else from the first
    /// range's start; range by range, wrapping around, each range's gateway
    /// skipped, until back where it began.
    pub fn candidates(&self, last: Option<IpAddr>) -> Candidates<'_> {
        let mut it = Candidates {
            set: self,
            idx: 0,
            cur: None,
            first: None,
        };
        if let Some(last) = last
            && let Some(i) = self.0.iter().position(|r| r.contains(last))
        {
            it.idx = i;
            it.cur = Some(Addr::of(last));
        } else {
            it.first = Some(self.0[0].start);
        }
        it
    }
}

/// host-local's `RangeIter`.
pub struct Candidates<'a> {
    set: &'a RangeSet,
    idx: usize,
    cur: Option<Addr>,
    /// Where the walk began; meeting it again ends it.
    first: Option<Addr>,
}

impl<'a> Iterator for Candidates<'a> {
    /// An address and the range it is in.
    type Item = (IpAddr, &'a Range);

    fn next(&mut self) -> Option<Self::Item> {
        let set = &self.set.0;
        loop {
            let mut r = &set[self.idx];
            let Some(cur) = self.cur else {
                self.cur = Some(r.start);
                self.first = Some(r.start);
                if r.start.ip() == r.gateway {
                    continue;
                }
                return Some((r.start.ip(), r));
            };
            let next = if cur == r.end {
                self.idx = (self.idx + 1) % set.len();
                r = &set[self.idx];
                r.start
            } else {
                Addr {
                    v6: cur.v6,
                    n: cur.n + 1,
                }
            };
            self.cur = Some(next);
            match self.first {
                None => self.first = Some(next),
                Some(f) if f == next => return None,
                Some(_) => {}
            }
            if next.ip() == r.gateway {
                continue;
            }
            return Some((next.ip(), r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(subnet: &str, start: Option<&str>, end: Option<&str>, gw: Option<&str>) -> RangeSpec {
        let (ip, p) = subnet.split_once('/').unwrap();
        RangeSpec {
            subnet: Some((ip.parse().unwrap(), p.parse().unwrap())),
            start: start.map(|s| s.parse().unwrap()),
            end: end.map(|s| s.parse().unwrap()),
            gateway: gw.map(|s| s.parse().unwrap()),
        }
    }

    fn ips(set: &RangeSet, last: Option<&str>) -> Vec<String> {
        set.candidates(last.map(|l| l.parse().unwrap()))
            .map(|(ip, _)| ip.to_string())
            .collect()
    }

    #[test]
    fn a_subnet_gives_its_hosts_but_the_gateway() {
        let set = RangeSet::new(&[spec("10.0.0.0/29", None, None, None)]).unwrap();
        assert_eq!(set.0[0].name(), "10.0.0.1-10.0.0.6");
        assert_eq!(set.0[0].gateway.to_string(), "10.0.0.1");
        assert_eq!(
            ips(&set, None),
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        // After the last reserved, wrapping around, ending before it.
        assert_eq!(
            ips(&set, Some("10.0.0.4")),
            ["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
        );
        // A last reserved address outside the set: from the start.
        assert_eq!(ips(&set, Some("10.9.0.4")).len(), 5);
    }

    #[test]
    fn v6_ends_at_the_last_address() {
        let set = RangeSet::new(&[spec("fd00::/126", None, None, None)]).unwrap();
        assert_eq!(ips(&set, None), ["fd00::2", "fd00::3"]);
    }

    #[test]
    fn ranges_of_a_set_follow_each_other() {
        let set = RangeSet::new(&[
            spec("10.0.0.0/24", Some("10.0.0.10"), Some("10.0.0.11"), None),
            spec(
                "10.0.1.0/24",
                Some("10.0.1.1"),
                Some("10.0.1.2"),
                Some("10.0.1.2"),
            ),
        ])
        .unwrap();
        assert_eq!(ips(&set, None), ["10.0.0.10", "10.0.0.11", "10.0.1.1"]);
        assert_eq!(
            ips(&set, Some("10.0.1.1")),
            ["10.0.0.10", "10.0.0.11", "10.0.1.1"]
        );
    }

    #[test]
    fn bad_ranges_say_what_host_local_says() {
        let e = Range::new(&spec("10.0.0.0/31", None, None, None)).unwrap_err();
        assert_eq!(e, "Network 10.0.0.0/31 too small to allocate from");
        let e = Range::new(&spec("10.0.0.1/24", None, None, None)).unwrap_err();
        assert!(e.contains("network address is 10.0.0.0"), "{e}");
        let e = Range::new(&spec("10.0.0.0/24", Some("10.0.1.1"), None, None)).unwrap_err();
        assert_eq!(e, "RangeStart 10.0.1.1 not in network 10.0.0.0/24");
        let e = RangeSet::new(&[
            spec("10.0.0.0/24", None, None, None),
            spec("10.0.0.0/25", None, None, None),
        ])
        .unwrap_err();
        assert!(e.contains("overlap"), "{e}");
    }
}
