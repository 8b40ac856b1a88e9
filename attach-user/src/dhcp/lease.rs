//! A DHCP lease as the attachment record keeps it: who gave it, what it
//! gave, and when it is to be renewed and runs out.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::packet::{Message, opt, search_list};
use crate::addr::Mac;

/// The lease of an endpoint's IPv4 address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The leased address and its prefix length (option 1).
    pub address: Ipv4Addr,
    pub prefix: u8,
    /// The server's identifier (option 54), where renewals go: the one
    /// that last acknowledged the lease (another after a rebinding).
    pub server: Ipv4Addr,
    /// The MAC the server's ACK came from (after a rebinding: the one the
    /// container's neighbour table has for it; zero when it has none).
    pub server_mac: Mac,
    /// The client identifier (option 61), as dnsmasq writes it: hex bytes
    /// joined by ':'.
    pub client_id: String,
    /// The hardware address the client spoke with (ipvlan: the parent's).
    pub chaddr: Mac,
    /// Unix seconds.
    pub acquired_at: u64,
    pub renewed_at: u64,
    pub expires_at: u64,
    /// Seconds after `renewed_at` when renewal (T1) and rebinding (T2) are due.
    pub t1: u64,
    pub t2: u64,
    #[serde(default)]
    pub router: Option<Ipv4Addr>,
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// The domain name (option 15) then the search list (option 119).
    #[serde(default)]
    pub search: Vec<String>,
    #[serde(default)]
    pub mtu: Option<u16>,
    /// Why the lease ended before its time: the server's DHCPNAK to a
    /// renewal or rebinding (`expires_at` is then when it came).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Lease {
    /// The lease an ACK grants, taken at `at`.
    pub fn from_ack(ack: &Message, server_mac: Mac, client_id: &[u8], at: u64) -> Self {
        let address = ack.yiaddr;
        let prefix = ack
            .option(opt::SUBNET_MASK)
            .and_then(|m| <[u8; 4]>::try_from(m).ok())
            .map(|m| u32::from_be_bytes(m).leading_ones() as u8)
            .unwrap_or_else(|| classful(address));
        let mut lease = Self {
            address,
            prefix,
            server: Ipv4Addr::UNSPECIFIED,
            server_mac,
            client_id: hex(client_id),
            chaddr: ack.chaddr,
            acquired_at: at,
            renewed_at: at,
            expires_at: at,
            t1: 0,
            t2: 0,
            router: None,
            dns: Vec::new(),
            search: Vec::new(),
            mtu: None,
            refused: None,
        };
        lease.rebound(ack, server_mac, at);
        lease
    }

    /// Takes on a rebinding's ACK (RFC 2131 4.4.5), from any server,
    /// received at `at` from `server_mac`: that server is the lease's now,
    /// with its times, router, DNS servers, search domains and MTU.
    pub fn rebound(&mut self, ack: &Message, server_mac: Mac, at: u64) {
        self.server = ack.addr(opt::SERVER_ID).unwrap_or(Ipv4Addr::UNSPECIFIED);
        self.server_mac = server_mac;
        self.router = ack.addr(opt::ROUTER);
        self.dns = ack.addrs(opt::DNS);
        let mut search: Vec<String> = ack.text(opt::DOMAIN).into_iter().collect();
        for s in search_list(ack.option(opt::SEARCH).unwrap_or_default()) {
            if !search.contains(&s) {
                search.push(s);
            }
        }
        self.search = search;
        self.mtu = ack.u16(opt::MTU);
        self.renewed(ack, at);
    }

    /// Ends the lease at `at`: the server refused it (DHCPNAK, with its
    /// message `why`). It is then expired, as one nobody renewed.
    pub fn end(&mut self, why: String, at: u64) {
        self.expires_at = at.min(self.expires_at);
        self.refused = Some(why);
    }

    /// Takes on the times of a renewal's ACK, received at `at`.
    pub fn renewed(&mut self, ack: &Message, at: u64) {
        // No lease time: infinite in the protocol; a day here, so that it
        // is still asked for again.
        let time = u64::from(ack.u32(opt::LEASE_TIME).unwrap_or(86_400));
        self.renewed_at = at;
        self.expires_at = at.saturating_add(time);
        self.t1 = ack.u32(opt::T1).map_or(time / 2, u64::from).min(time);
        self.t2 = ack.u32(opt::T2).map_or(time * 7 / 8, u64::from).min(time);
    }

    /// Whether renewal is due at `at` (T1 passed).
    pub fn renewal_due(&self, at: u64) -> bool {
        at >= self.renewed_at.saturating_add(self.t1)
    }

    /// Whether rebinding is due at `at` (T2 passed): the lease's server has
    /// not renewed it, any server may.
    pub fn rebinding_due(&self, at: u64) -> bool {
        at >= self.renewed_at.saturating_add(self.t2)
    }

    pub fn expired(&self, at: u64) -> bool {
        at >= self.expires_at
    }

    /// The client identifier's bytes.
    pub fn client_id_bytes(&self) -> Vec<u8> {
        self.client_id
            .split(':')
            .filter_map(|b| u8::from_str_radix(b, 16).ok())
            .collect()
    }
}

/// The prefix of an address's class, for a server that gives no mask.
fn classful(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// `b` as hex bytes joined by ':'.
pub fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Unix seconds as UTC, `2026-12-07T12:34:56Z`.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::packet::MsgType;

    #[test]
    fn an_ack_becomes_a_lease() {
        let mut ack = Message::client(MsgType::Ack, 1, Mac([2, 0, 0, 0, 0, 1]), b"x");
        ack.op = 2;
        ack.yiaddr = Ipv4Addr::new(10, 77, 0, 120);
        let ack = ack
            .with(opt::SUBNET_MASK, &[255, 255, 255, 0])
            .with(opt::SERVER_ID, &[10, 77, 0, 1])
            .with(opt::ROUTER, &[10, 77, 0, 1])
            .with(opt::DNS, &[10, 77, 0, 53])
            .with(opt::LEASE_TIME, &120u32.to_be_bytes())
            .with(opt::T1, &15u32.to_be_bytes())
            .with(opt::DOMAIN, b"lab.test\0");
        let l = Lease::from_ack(&ack, Mac([2, 0, 0, 0, 0, 9]), &[0, 0x61], 1000);
        assert_eq!((l.address, l.prefix), (Ipv4Addr::new(10, 77, 0, 120), 24));
        assert_eq!(l.server, Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!((l.expires_at, l.t1, l.t2), (1120, 15, 105));
        assert_eq!(l.client_id, "00:61");
        assert_eq!(l.client_id_bytes(), [0, 0x61]);
        assert_eq!(l.search, ["lab.test"]);
        assert!(!l.renewal_due(1014) && l.renewal_due(1015));
        assert!(l.expired(1120));
        assert!(!l.rebinding_due(1104) && l.rebinding_due(1105));
    }

    #[test]
    fn a_rebinding_takes_on_the_new_server_and_what_it_gives() {
        let mut ack = Message::client(MsgType::Ack, 1, Mac([2, 0, 0, 0, 0, 1]), b"x");
        ack.op = 2;
        ack.yiaddr = Ipv4Addr::new(10, 77, 0, 120);
        let first = ack
            .clone()
            .with(opt::SUBNET_MASK, &[255, 255, 255, 0])
            .with(opt::SERVER_ID, &[10, 77, 0, 1])
            .with(opt::ROUTER, &[10, 77, 0, 1])
            .with(opt::DNS, &[10, 77, 0, 53])
            .with(opt::LEASE_TIME, &120u32.to_be_bytes());
        let mut l = Lease::from_ack(&first, Mac([2, 0, 0, 0, 0, 9]), &[0, 0x61], 1000);
        let other = ack
            .with(opt::SERVER_ID, &[10, 77, 0, 2])
            .with(opt::ROUTER, &[10, 77, 0, 254])
            .with(opt::DNS, &[10, 77, 0, 54])
            .with(opt::LEASE_TIME, &300u32.to_be_bytes())
            .with(opt::T1, &100u32.to_be_bytes())
            .with(opt::T2, &200u32.to_be_bytes());
        l.rebound(&other, Mac([2, 0, 0, 0, 0, 10]), 1110);
        assert_eq!(l.server, Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(l.server_mac, Mac([2, 0, 0, 0, 0, 10]));
        assert_eq!(l.router, Some(Ipv4Addr::new(10, 77, 0, 254)));
        assert_eq!(l.dns, [Ipv4Addr::new(10, 77, 0, 54)]);
        assert_eq!(
            (l.renewed_at, l.expires_at, l.t1, l.t2),
            (1110, 1410, 100, 200)
        );
        // What the lease is stays: address, prefix, when it was acquired.
        assert_eq!((l.address, l.prefix, l.acquired_at), (ack_addr(), 24, 1000));
        assert!(!l.rebinding_due(1309) && l.rebinding_due(1310));
        l.end("DHCPNAK: wrong network".into(), 1200);
        assert!(l.expired(1200) && !l.expired(1199));
        assert_eq!(l.refused.as_deref(), Some("DHCPNAK: wrong network"));
    }

    fn ack_addr() -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, 120)
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_796_645_952), "2026-12-07T12:19:12Z");
    }
}
