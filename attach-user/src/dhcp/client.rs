//! The client's exchanges: acquiring a lease on the wire device from the
//! node (DISCOVER, OFFER, REQUEST, ACK on a packet socket, replies asked
//! for by broadcast), and renewing it (unicast to its server), rebinding it
//! past T2 (broadcast, any server) or releasing it by UDP from the leased
//! address (run inside the container's namespace).

use std::{
    io,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use super::{
    lease::{Lease, now},
    packet::{self, BROADCAST, Message, MsgType, SERVER_PORT, opt},
};
use crate::{
    addr::Mac,
    error::{Error, Result},
    packet_socket::{PacketSocket, Tag},
};

/// How long a server has to answer the DISCOVERs (sent at 0, 1 and 2.5 s).
pub const DISCOVER_WINDOW: Duration = Duration::from_secs(4);
const DISCOVER_AT: [u64; 3] = [0, 1000, 2500];
/// How long the ACK of a REQUEST is awaited (sent at 0 and 1.5 s).
const REQUEST_WINDOW: Duration = Duration::from_secs(3);
const REQUEST_AT: [u64; 2] = [0, 1500];
/// How long a renewal's or rebinding's ACK is awaited (sent at 0 and 1.5 s).
const RENEW_WINDOW: Duration = Duration::from_secs(3);
const RENEW_AT: [u64; 2] = [0, 1500];

fn xid() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: `b` is valid for its length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 4 {
        // Only needs to differ from other clients' now and then.
        return std::process::id() ^ now() as u32;
    }
    u32::from_be_bytes(b)
}

/// Acquires a lease on device `ifindex` (named `device` in errors) of the
/// calling thread's namespace, in frames tagged `tags` (outermost first;
/// none: untagged), as `chaddr` with `client_id`.
pub fn acquire(
    ifindex: u32,
    tags: &[Tag],
    device: &str,
    chaddr: Mac,
    client_id: &[u8],
) -> Result<Lease> {
    let io = |e: io::Error| Error::system(format!("DHCP on {device}: {e}"));
    let sock = PacketSocket::open(ifindex, tags).map_err(io)?;
    let xid = xid();
    let send = |m: &Message| {
        let f = packet::frame(
            chaddr,
            Mac([0xff; 6]),
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            &m.encode(),
        );
        sock.send(&f)
    };
    let mut discover = Message::client(MsgType::Discover, xid, chaddr, client_id);
    discover.flags = BROADCAST;
    let offer = exchange(
        &sock,
        &send,
        &discover,
        &DISCOVER_AT,
        DISCOVER_WINDOW,
        |m| m.answers(xid, chaddr) && m.msg_type() == Some(MsgType::Offer as u8),
    )
    .map_err(io)?
    .ok_or_else(|| {
        Error::system(format!(
            "no DHCP server answered on {device} within {} s (DISCOVER as {chaddr})",
            DISCOVER_WINDOW.as_secs()
        ))
    })?
    .0;
    let server = offer.addr(opt::SERVER_ID).ok_or_else(|| {
        Error::system(format!(
            "the DHCP offer on {device} names no server (option 54)"
        ))
    })?;
    let mut request = Message::client(MsgType::Request, xid, chaddr, client_id)
        .with(opt::REQUESTED_IP, &offer.yiaddr.octets())
        .with(opt::SERVER_ID, &server.octets());
    request.flags = BROADCAST;
    let (ack, server_mac) = exchange(&sock, &send, &request, &REQUEST_AT, REQUEST_WINDOW, |m| {
        let ours = m.answers(xid, chaddr) && m.addr(opt::SERVER_ID) == Some(server);
        let t = m.msg_type();
        ours && (t == Some(MsgType::Ack as u8) || t == Some(MsgType::Nak as u8))
    })
    .map_err(io)?
    .ok_or_else(|| {
        Error::system(format!(
            "DHCP server {server} offered {} on {device} but did not acknowledge the request",
            offer.yiaddr
        ))
    })?;
    if ack.msg_type() == Some(MsgType::Nak as u8) {
        return Err(nak(server, &ack, device));
    }
    Ok(Lease::from_ack(&ack, server_mac, client_id, now()))
}

fn nak(server: Ipv4Addr, m: &Message, device: &str) -> Error {
    Error::system(format!(
        "DHCP server {server} refused the lease on {device} (DHCPNAK{})",
        m.text(opt::MESSAGE)
            .map(|t| format!(": {t}"))
            .unwrap_or_default()
    ))
}

/// Sends `m` at the offsets `at` (ms) and returns the first reply `want`
/// accepts, with the MAC it came from; `None` when `window` ends first.
fn exchange(
    sock: &PacketSocket,
    send: &dyn Fn(&Message) -> io::Result<()>,
    m: &Message,
    at: &[u64],
    window: Duration,
    want: impl Fn(&Message) -> bool,
) -> io::Result<Option<(Message, Mac)>> {
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    let mut sent = 0;
    loop {
        if sent < at.len() && start.elapsed() >= Duration::from_millis(at[sent]) {
            send(m)?;
            sent += 1;
        }
        let next = at
            .get(sent)
            .map_or(start + window, |ms| start + Duration::from_millis(*ms))
            .min(start + window);
        match sock.recv(&mut buf, next)? {
            Some(n) => {
                let Some((src, payload)) = packet::client_payload(&buf[..n]) else {
                    continue;
                };
                if let Some(reply) = Message::decode(payload)
                    && want(&reply)
                {
                    return Ok(Some((reply, src)));
                }
            }
            None if start.elapsed() >= window => return Ok(None),
            None => {}
        }
    }
}

/// A UDP socket on `leased`:68 of interface `ifname` (of the calling
/// thread's namespace).
fn client_socket(ifname: &str, leased: Ipv4Addr) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(SocketAddrV4::new(leased, packet::CLIENT_PORT))?;
    bind_to_device(&sock, ifname)?;
    Ok(sock)
}

fn bind_to_device(sock: &UdpSocket, ifname: &str) -> io::Result<()> {
    // SAFETY: the name's bytes are valid for their length.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            ifname.as_ptr().cast(),
            ifname.len() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_flag(sock: &UdpSocket, opt: libc::c_int) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `one` is a valid c_int for the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The socket renewals and rebindings speak on: port 68 of every address
/// of interface `ifname` (of the calling thread's namespace), so that it
/// also hears a DHCPNAK, which servers broadcast (RFC 2131 4.1: a NAK goes
/// to 255.255.255.255 when no relay is in between); what it sends leaves
/// from the interface's address, the leased one. Broadcasts allowed.
fn lease_socket(ifname: &str) -> io::Result<UdpSocket> {
    let sock = udp_socket()?;
    set_flag(&sock, libc::SO_REUSEADDR)?;
    set_flag(&sock, libc::SO_BROADCAST)?;
    bind_to_device(&sock, ifname)?;
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: packet::CLIENT_PORT.to_be(),
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    // SAFETY: `sa` is a valid sockaddr_in of the length given.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&raw const sa).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// An unbound UDP socket (the std one binds as it is made; SO_REUSEADDR
/// and the device must come first).
fn udp_socket() -> io::Result<UdpSocket> {
    // SAFETY: plain socket(2); the fd is owned by the UdpSocket made of it.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::IPPROTO_UDP,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nothing else owns.
    Ok(unsafe { <UdpSocket as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// How a server answered a renewal or a rebinding.
enum Answer {
    /// DHCPACK for the leased address, from this address.
    Ack(Message, Ipv4Addr),
    /// DHCPNAK: the lease is over.
    Nak(Message),
}

/// Sends `m` to `to` at the offsets `RENEW_AT` (ms) and awaits the
/// server's answer to it for `lease` within `RENEW_WINDOW`; `None` when
/// none came.
fn ask(
    sock: &UdpSocket,
    m: &Message,
    to: SocketAddrV4,
    lease: &Lease,
) -> io::Result<Option<Answer>> {
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    let mut sent = 0;
    loop {
        if sent < RENEW_AT.len() && start.elapsed() >= Duration::from_millis(RENEW_AT[sent]) {
            sock.send_to(&m.encode(), to)?;
            sent += 1;
        }
        let next = RENEW_AT
            .get(sent)
            .map_or(start + RENEW_WINDOW, |ms| {
                start + Duration::from_millis(*ms)
            })
            .min(start + RENEW_WINDOW);
        let left = next.saturating_duration_since(Instant::now());
        if left.is_zero() {
            if start.elapsed() >= RENEW_WINDOW {
                return Ok(None);
            }
            continue;
        }
        sock.set_read_timeout(Some(left))?;
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(reply) = Message::decode(&buf[..n]) else {
            continue;
        };
        if !reply.answers(m.xid, lease.chaddr) {
            continue;
        }
        let from = match from.ip() {
            std::net::IpAddr::V4(a) => a,
            std::net::IpAddr::V6(_) => continue,
        };
        match reply.msg_type() {
            // An ACK for another address is no answer to ours.
            Some(t) if t == MsgType::Ack as u8 && reply.yiaddr == lease.address => {
                return Ok(Some(Answer::Ack(reply, from)));
            }
            Some(t) if t == MsgType::Nak as u8 => return Ok(Some(Answer::Nak(reply))),
            _ => {}
        }
    }
}

/// What a renewal or rebinding came to.
#[derive(Debug)]
pub enum Outcome {
    /// Acknowledged: the lease took on the ACK.
    Extended,
    /// Refused (DHCPNAK): the lease is ended (see [`Lease::end`]); the
    /// error names the server and its message.
    Ended(Error),
}

/// Renews `lease` by a unicast REQUEST to its server from interface
/// `ifname`, which holds the leased address (RFC 2131 4.4.5, RENEWING);
/// on ACK the lease takes on its times, on NAK it ends. Runs in the
/// container's namespace.
pub fn renew(ifname: &str, lease: &mut Lease) -> Result<Outcome> {
    let io = |e: io::Error| {
        Error::system(format!(
            "renewing the lease of {} from {}: {e}",
            lease.address, lease.server
        ))
    };
    let sock = lease_socket(ifname).map_err(io)?;
    let m = extend_message(lease);
    let to = SocketAddrV4::new(lease.server, SERVER_PORT);
    match ask(&sock, &m, to, lease).map_err(io)? {
        Some(Answer::Ack(ack, _)) => {
            lease.renewed(&ack, now());
            Ok(Outcome::Extended)
        }
        Some(Answer::Nak(nak_msg)) => Ok(ended(lease, &nak_msg, ifname)),
        None => Err(Error::system(format!(
            "renewing the lease of {}: server {} did not answer within {} s",
            lease.address,
            lease.server,
            RENEW_WINDOW.as_secs()
        ))),
    }
}

/// Rebinds `lease` past T2 (RFC 2131 4.4.5, REBINDING): a REQUEST
/// broadcast from interface `ifname`, which holds the leased address, with
/// the address in ciaddr and neither a server identifier nor a requested
/// address, so that any server may extend it. On ACK the lease is that
/// server's (see [`Lease::rebound`]), on NAK it ends. Runs in the
/// container's namespace.
pub fn rebind(ifname: &str, lease: &mut Lease) -> Result<Outcome> {
    let io = |e: io::Error| {
        Error::system(format!(
            "rebinding the lease of {} on {ifname}: {e}",
            lease.address
        ))
    };
    let sock = lease_socket(ifname).map_err(io)?;
    let m = extend_message(lease);
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT);
    match ask(&sock, &m, to, lease).map_err(io)? {
        Some(Answer::Ack(ack, from)) => {
            lease.rebound(&ack, neighbour_mac(from).unwrap_or_default(), now());
            if lease.server.is_unspecified() {
                // A server that names itself not: renewals go where the ACK
                // came from.
                lease.server = from;
            }
            Ok(Outcome::Extended)
        }
        Some(Answer::Nak(nak_msg)) => {
            let server = nak_msg.addr(opt::SERVER_ID).unwrap_or(lease.server);
            lease.server = server;
            Ok(ended(lease, &nak_msg, ifname))
        }
        None => Err(Error::system(format!(
            "rebinding the lease of {} on {ifname}: no server answered within {} s",
            lease.address,
            RENEW_WINDOW.as_secs()
        ))),
    }
}

/// The REQUEST of a renewal or a rebinding (RFC 2131 table 5: they differ
/// only in where it goes): the leased address in ciaddr, neither a server
/// identifier nor a requested address.
fn extend_message(lease: &Lease) -> Message {
    let mut m = Message::client(
        MsgType::Request,
        xid(),
        lease.chaddr,
        &lease.client_id_bytes(),
    );
    m.ciaddr = lease.address;
    m
}

/// Ends `lease` on the DHCPNAK `m` (from `lease.server`), now.
fn ended(lease: &mut Lease, m: &Message, ifname: &str) -> Outcome {
    let e = nak(lease.server, m, ifname);
    lease.end(
        m.text(opt::MESSAGE)
            .map_or_else(|| "DHCPNAK".to_owned(), |t| format!("DHCPNAK: {t}")),
        now(),
    );
    Outcome::Ended(e)
}

/// The MAC the calling thread's namespace knows `addr` by (its neighbour
/// table, where the server's ARP request for the leased address put it).
fn neighbour_mac(addr: Ipv4Addr) -> Option<Mac> {
    let table = std::fs::read_to_string("/proc/thread-self/net/arp").ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.first()? != &addr.to_string().as_str() {
            return None;
        }
        let mac: Mac = f.get(3)?.parse().ok()?;
        (mac != Mac::default()).then_some(mac)
    })
}

/// Gives `lease` back to its server from the node, on device `ifindex`
/// (named `device`) in frames tagged `tags`: the DHCPRELEASE framed as the
/// endpoint would send it, to the MAC the server answered from.
pub fn release_on_wire(ifindex: u32, tags: &[Tag], device: &str, lease: &Lease) -> Result<()> {
    let f = packet::frame(
        lease.chaddr,
        lease.server_mac,
        lease.address,
        lease.server,
        &release_message(lease).encode(),
    );
    send_on_wire(ifindex, tags, &f).map_err(|e| {
        Error::system(format!(
            "releasing the lease of {} on {device}: {e}",
            lease.address
        ))
    })
}

/// Tells `lease`'s server from the node, on device `ifindex` (named
/// `device`) in frames tagged `tags`, that its address is in use by
/// another host (RFC 2131 3.1.5): a DHCPDECLINE, broadcast from 0.0.0.0
/// as the endpoint has no address. The server then holds the address back
/// instead of offering it again.
pub fn decline_on_wire(ifindex: u32, tags: &[Tag], device: &str, lease: &Lease) -> Result<()> {
    let f = packet::frame(
        lease.chaddr,
        Mac([0xff; 6]),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        &decline_message(lease).encode(),
    );
    send_on_wire(ifindex, tags, &f).map_err(|e| {
        Error::system(format!(
            "declining the lease of {} on {device}: {e}",
            lease.address
        ))
    })
}

fn send_on_wire(ifindex: u32, tags: &[Tag], frame: &[u8]) -> io::Result<()> {
    PacketSocket::open(ifindex, tags)?.send(frame)
}

fn decline_message(lease: &Lease) -> Message {
    Message::client(
        MsgType::Decline,
        xid(),
        lease.chaddr,
        &lease.client_id_bytes(),
    )
    .with(opt::REQUESTED_IP, &lease.address.octets())
    .with(opt::SERVER_ID, &lease.server.octets())
}

fn release_message(lease: &Lease) -> Message {
    let mut m = Message::client(
        MsgType::Release,
        xid(),
        lease.chaddr,
        &lease.client_id_bytes(),
    )
    .with(opt::SERVER_ID, &lease.server.octets());
    m.ciaddr = lease.address;
    m
}

/// Gives `lease` back to its server (DHCPRELEASE, no answer). Runs in the
/// container's namespace.
pub fn release(ifname: &str, lease: &Lease) -> Result<()> {
    let io = |e: io::Error| {
        Error::system(format!(
            "releasing the lease of {} to {}: {e}",
            lease.address, lease.server
        ))
    };
    let sock = client_socket(ifname, lease.address).map_err(io)?;
    let m = release_message(lease);
    sock.send_to(&m.encode(), SocketAddrV4::new(lease.server, SERVER_PORT))
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decline_and_a_renewal_say_what_rfc_2131_asks() {
        let lease = Lease {
            address: Ipv4Addr::new(10, 0, 0, 5),
            prefix: 24,
            server: Ipv4Addr::new(10, 0, 0, 1),
            server_mac: Mac([2, 0, 0, 0, 0, 9]),
            client_id: "00:61".into(),
            chaddr: Mac([2, 0, 0, 0, 0, 1]),
            acquired_at: 0,
            renewed_at: 0,
            expires_at: 120,
            t1: 60,
            t2: 105,
            router: None,
            dns: Vec::new(),
            search: Vec::new(),
            mtu: None,
            refused: None,
        };
        let m = Message::decode(&decline_message(&lease).encode()).unwrap();
        assert_eq!(m.msg_type(), Some(MsgType::Decline as u8));
        // RFC 2131 table 5: ciaddr 0, the address in option 50, the
        // server in 54, no parameter request list.
        assert_eq!(m.ciaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(m.addr(opt::REQUESTED_IP), Some(lease.address));
        assert_eq!(m.addr(opt::SERVER_ID), Some(lease.server));
        assert_eq!(m.option(opt::CLIENT_ID), Some(&[0x00, 0x61][..]));
        assert!(m.option(opt::PARAMS).is_none());
        assert_eq!(m.chaddr, lease.chaddr);
        // RFC 2131 table 5, REQUEST when renewing or rebinding: ciaddr the
        // leased address, neither the server nor a requested address.
        let m = Message::decode(&extend_message(&lease).encode()).unwrap();
        assert_eq!(m.msg_type(), Some(MsgType::Request as u8));
        assert_eq!(m.ciaddr, lease.address);
        assert_eq!((m.flags, m.chaddr), (0, lease.chaddr));
        assert!(m.option(opt::SERVER_ID).is_none());
        assert!(m.option(opt::REQUESTED_IP).is_none());
        assert_eq!(m.option(opt::CLIENT_ID), Some(&[0x00, 0x61][..]));
    }
}
