//! Addresses as users write them: MACs, CIDRs, interface names.

use std::{fmt, net::IpAddr, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// An Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    pub const fn is_zero(&self) -> bool {
        u64::from_be_bytes([
            0, 0, self.0[0], self.0[1], self.0[2], self.0[3], self.0[4], self.0[5],
        ]) == 0
    }

    /// A random locally administered unicast address, as the kernel's
    /// `eth_random_addr` makes.
    pub fn random() -> Self {
        let mut b = [0u8; 6];
        // SAFETY: writes at most 6 bytes into `b`.
        let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
        assert_eq!(n, 6, "getrandom failed");
        b[0] = (b[0] & 0xfe) | 0x02;
        Mac(b)
    }

    /// Checks an address is usable as an endpoint's own.
    pub fn check_unicast(&self, what: &str) -> Result<(), Error> {
        if self.is_multicast() || self.is_zero() {
            return Err(Error::invalid(format!(
                "{what} {self} is not a unicast address"
            )));
        }
        Ok(())
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Mac {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || {
            Error::invalid(format!(
                "invalid MAC address {s:?}: expected six hex octets like 02:42:ac:11:00:02"
            ))
        };
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || p.len() > 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

impl From<&[u8]> for Mac {
    fn from(b: &[u8]) -> Self {
        let mut m = [0u8; 6];
        let n = b.len().min(6);
        m[..n].copy_from_slice(&b[..n]);
        Mac(m)
    }
}

/// An address with its prefix length, like `10.0.0.2/24` or `fd00::2/64`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub const fn max_prefix(addr: &IpAddr) -> u8 {
        match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpNet {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::invalid(format!("invalid address {s:?}: {why}"));
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX, like 10.0.0.2/24 or fd00::2/64"))?;
        let addr: IpAddr = a.parse().map_err(|_| bad("not an IPv4 or IPv6 address"))?;
        let prefix: u8 = p
            .parse()
            .map_err(|_| bad("prefix length is not a number"))?;
        if prefix > Self::max_prefix(&addr) {
            return Err(bad(&format!(
                "prefix length {prefix} exceeds {}",
                Self::max_prefix(&addr)
            )));
        }
        if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
            return Err(bad("not a usable unicast address"));
        }
        if let IpAddr::V4(v4) = addr
            && v4.is_broadcast()
        {
            return Err(bad("not a usable unicast address"));
        }
        Ok(IpNet { addr, prefix })
    }
}

macro_rules! serde_via_string {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_via_string!(Mac, IpNet);

/// Longest interface name the kernel takes (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Checks an interface name the way the kernel's `dev_valid_name` does.
pub fn check_ifname(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::invalid("interface name is empty"));
    }
    if name.len() > IFNAME_MAX {
        return Err(Error::invalid(format!(
            "interface name {name:?} is {} characters long; the limit is {IFNAME_MAX}",
            name.len()
        )));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(Error::invalid(format!(
            "interface name {name:?} is not valid (no '/', ':' or spaces, not '.' or '..')"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trips_and_rejects_garbage() {
        let m: Mac = "02:42:AC:11:00:02".parse().unwrap();
        assert_eq!(m.to_string(), "02:42:ac:11:00:02");
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "zz:42:ac:11:00:02",
            "002:42:ac:11:00:02",
        ] {
            let e = bad.parse::<Mac>().unwrap_err();
            assert!(e.message.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn unicast_check_names_the_value() {
        let e = "01:00:5e:00:00:01"
            .parse::<Mac>()
            .unwrap()
            .check_unicast("--mac")
            .unwrap_err();
        assert!(e.message.contains("01:00:5e:00:00:01"));
        assert!(
            "00:00:00:00:00:00"
                .parse::<Mac>()
                .unwrap()
                .check_unicast("x")
                .is_err()
        );
    }

    #[test]
    fn random_mac_is_local_unicast() {
        for _ in 0..100 {
            let m = Mac::random();
            assert!(!m.is_multicast());
            assert_eq!(m.0[0] & 2, 2);
        }
    }

    #[test]
    fn cidrs() {
        assert_eq!("10.0.0.2/24".parse::<IpNet>().unwrap().prefix, 24);
        assert_eq!(
            "fd00::2/64".parse::<IpNet>().unwrap().to_string(),
            "fd00::2/64"
        );
        for bad in [
            "10.0.0.2",
            "10.0.0.2/33",
            "fd00::2/129",
            "10.0.0.256/24",
            "224.0.0.1/4",
            "0.0.0.0/0",
            "x/24",
        ] {
            let e = bad.parse::<IpNet>().unwrap_err();
            assert!(e.message.contains(bad), "{e}");
        }
    }

    #[test]
    fn ifnames() {
        check_ifname("eth0").unwrap();
        assert!(
            check_ifname("a-very-long-ifname")
                .unwrap_err()
                .message
                .contains("15")
        );
        assert!(check_ifname("a/b").is_err());
        assert!(check_ifname("").is_err());
    }
}
