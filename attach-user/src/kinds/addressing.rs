//! What a container's addressing must be, checked before anything is made:
//! host addresses, a reachable gateway, an MTU an interface takes.

use std::net::IpAddr;

use crate::{
    addr::IpNet,
    error::{Error, Result},
};

/// The largest MTU any interface takes (`IP_MAX_MTU`, a veth's maximum).
pub(crate) const MAX_MTU: u32 = 65535;

/// Checks a container's addressing: usable host addresses, no address
/// twice, a gateway on the subnet of an address of its family (not one of
/// them), an MTU its families can use.
pub(crate) fn check_addressing(
    ips: &[IpNet],
    gateway: Option<IpAddr>,
    mtu: Option<u32>,
) -> Result<()> {
    for (i, a) in ips.iter().enumerate() {
        check_host_address(a)?;
        if ips[..i].iter().any(|b| b.addr == a.addr) {
            return Err(Error::invalid(format!("address {} is given twice", a.addr)));
        }
    }
    if let Some(gw) = gateway {
        check_gateway(ips, gw)?;
    }
    if let Some(mtu) = mtu {
        let min = if ips.iter().any(|n| n.addr.is_ipv6()) {
            1280
        } else {
            68
        };
        if mtu < min {
            return Err(Error::invalid(format!(
                "MTU {mtu} is below the minimum of {min}{}",
                if min == 1280 { " for IPv6" } else { "" }
            )));
        }
        check_mtu_max(mtu)?;
    }
    Ok(())
}

/// Refuses --dhcp beside what the lease gives: the address and gateway.
pub(crate) fn check_dhcp(dhcp: bool, ips: &[IpNet], gateway: Option<IpAddr>) -> Result<()> {
    if dhcp && !ips.is_empty() {
        return Err(Error::invalid(
            "--dhcp and --ip exclude each other: the lease gives the address",
        ));
    }
    if dhcp && gateway.is_some() {
        return Err(Error::invalid(
            "--dhcp and --gateway exclude each other: the lease gives the gateway",
        ));
    }
    Ok(())
}

/// Refuses an MTU no interface takes.
pub(crate) fn check_mtu_max(mtu: u32) -> Result<()> {
    if mtu > MAX_MTU {
        return Err(Error::invalid(format!(
            "MTU {mtu} exceeds the largest an interface takes ({MAX_MTU})"
        )));
    }
    Ok(())
}

/// Refuses what cannot be a container's own address: an IPv4 subnet's
/// network or broadcast address (prefixes up to /30), an IPv4-mapped IPv6
/// address, a link-local address.
pub(crate) fn check_host_address(net: &IpNet) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid(format!("address {net} {why}")));
    match net.addr {
        IpAddr::V4(v4) => {
            if v4.is_link_local() {
                return bad(
                    "is link-local (169.254.0.0/16): give the container a routable address",
                );
            }
            if net.prefix < 31 {
                let host_bits = u32::MAX >> net.prefix;
                let a = u32::from(v4);
                if a & host_bits == 0 {
                    return bad("is the network address of its subnet, not a host's");
                }
                if a & host_bits == host_bits {
                    return bad("is the broadcast address of its subnet, not a host's");
                }
            }
        }
        IpAddr::V6(v6) => {
            if v6.to_ipv4_mapped().is_some() {
                return bad("is an IPv4-mapped IPv6 address: give the IPv4 address as such");
            }
            if v6.is_unicast_link_local() {
                return bad("is link-local (fe80::/10): the kernel makes the interface's own");
            }
        }
    }
    Ok(())
}

/// Whether `addr` is in the subnet of `net`.
pub(crate) fn in_subnet(net: &IpNet, addr: IpAddr) -> bool {
    match (net.addr, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(net.prefix))
                .unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(net.prefix))
                .unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// A default gateway must be a unicast address of a family the interface
/// has, on the subnet of one of its addresses (an IPv6 gateway may also be
/// link-local), and not one of them.
fn check_gateway(ips: &[IpNet], gw: IpAddr) -> Result<()> {
    let unusable = gw.is_unspecified()
        || gw.is_multicast()
        || gw.is_loopback()
        || matches!(gw, IpAddr::V4(v4) if v4.is_broadcast());
    if unusable {
        return Err(Error::invalid(format!(
            "gateway {gw} is not a unicast address"
        )));
    }
    let family: Vec<&IpNet> = ips
        .iter()
        .filter(|n| n.addr.is_ipv4() == gw.is_ipv4())
        .collect();
    if family.is_empty() {
        return Err(Error::invalid(format!(
            "gateway {gw} needs an {} address on the interface (--ip)",
            if gw.is_ipv4() { "IPv4" } else { "IPv6" }
        )));
    }
    if let Some(own) = family.iter().find(|n| n.addr == gw) {
        return Err(Error::invalid(format!(
            "gateway {gw} is the interface's own address ({own}): give the next hop's"
        )));
    }
    let link_local = matches!(gw, IpAddr::V6(v6) if v6.is_unicast_link_local());
    if !link_local && !family.iter().any(|n| in_subnet(n, gw)) {
        let nets: Vec<String> = family.iter().map(|n| n.to_string()).collect();
        return Err(Error::invalid(format!(
            "gateway {gw} is outside the subnet of the interface's address{} {}: \
             the container could not reach it",
            if nets.len() > 1 { "es" } else { "" },
            nets.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn container_addresses_must_be_a_hosts() {
        for bad in [
            "10.67.0.0/24",
            "10.67.0.255/24",
            "10.67.0.4/30",
            "10.67.0.7/30",
            "::ffff:10.67.0.50/120",
            "169.254.3.4/16",
            "fe80::5/64",
        ] {
            let e = check_addressing(&nets(&[bad]), None, None).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::InvalidInput);
            assert!(e.message.contains(bad), "{bad}: {e}");
        }
        for good in [
            "10.67.0.1/24",
            "10.67.0.0/31",
            "10.67.0.1/31",
            "10.67.0.9/32",
            "fd00::/64",
        ] {
            check_addressing(&nets(&[good]), None, None).unwrap();
        }
    }

    #[test]
    fn gateway_on_the_subnet_and_not_our_own() {
        let ips = nets(&["10.67.0.50/24", "fd67::50/64"]);
        for ok in ["10.67.0.1", "fd67::1", "fe80::1"] {
            check_addressing(&ips, Some(ok.parse().unwrap()), None).unwrap();
        }
        for bad in [
            "192.168.9.1",
            "fd68::1",
            "10.67.0.50",
            "fd67::50",
            "127.0.0.1",
        ] {
            let e = check_addressing(&ips, Some(bad.parse().unwrap()), None).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::InvalidInput);
            assert!(e.message.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn mtu_range_names_the_value() {
        let e = check_addressing(&[], None, Some(65536)).unwrap_err();
        assert!(e.message.contains("65536"), "{e}");
        check_addressing(&[], None, Some(65535)).unwrap();
    }
}
