//! DHCPv4 messages (RFC 2131, options of RFC 2132 and RFC 3397) and the
//! Ethernet/IPv4/UDP frames that carry them while the client has no
//! address yet (sent and read on a packet socket).

use std::net::Ipv4Addr;

use crate::{
    addr::Mac,
    checksum::{internet, udp_pseudo_header},
};

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// The fixed BOOTP header, before the magic cookie.
const HEADER: usize = 236;
const ETH_P_IP: u16 = 0x0800;
const UDP: u8 = 17;
/// Ask for replies by broadcast: the endpoint's MAC is not (yet) one the
/// wire device accepts, and ipvlan endpoints share theirs.
pub const BROADCAST: u16 = 0x8000;

/// DHCP message types (option 53).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MsgType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
}

/// Option codes.
pub mod opt {
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const DOMAIN: u8 = 15;
    pub const MTU: u8 = 26;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MSG_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMS: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const T1: u8 = 58;
    pub const T2: u8 = 59;
    pub const CLIENT_ID: u8 = 61;
    pub const SEARCH: u8 = 119;
    pub const PAD: u8 = 0;
    pub const END: u8 = 255;
}

/// What the client asks the server for (option 55).
const WANTED: [u8; 10] = [
    opt::SUBNET_MASK,
    opt::ROUTER,
    opt::DNS,
    opt::DOMAIN,
    opt::MTU,
    opt::LEASE_TIME,
    opt::SERVER_ID,
    opt::T1,
    opt::T2,
    opt::SEARCH,
];

/// One DHCP message: the BOOTP fields a client uses, and the options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// 1: from a client, 2: from a server.
    pub op: u8,
    pub xid: u32,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub chaddr: Mac,
    pub options: Vec<(u8, Vec<u8>)>,
}

impl Message {
    /// A client's message of type `kind`, identified by `client_id`.
    pub fn client(kind: MsgType, xid: u32, chaddr: Mac, client_id: &[u8]) -> Self {
        let mut m = Self {
            op: 1,
            xid,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            options: vec![
                (opt::MSG_TYPE, vec![kind as u8]),
                (opt::CLIENT_ID, client_id.to_vec()),
            ],
        };
        // Giving an address back asks for no parameters.
        if !matches!(kind, MsgType::Release | MsgType::Decline) {
            m.options.push((opt::PARAMS, WANTED.to_vec()));
        }
        m
    }

    pub fn with(mut self, code: u8, data: &[u8]) -> Self {
        self.options.push((code, data.to_vec()));
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER];
        b[0] = self.op;
        b[1] = 1; // Ethernet
        b[2] = 6;
        b[4..8].copy_from_slice(&self.xid.to_be_bytes());
        b[10..12].copy_from_slice(&self.flags.to_be_bytes());
        b[12..16].copy_from_slice(&self.ciaddr.octets());
        b[16..20].copy_from_slice(&self.yiaddr.octets());
        b[28..34].copy_from_slice(&self.chaddr.0);
        b.extend_from_slice(&MAGIC);
        for (code, data) in &self.options {
            b.push(*code);
            b.push(data.len().min(255) as u8);
            b.extend_from_slice(&data[..data.len().min(255)]);
        }
        b.push(opt::END);
        // The minimum BOOTP message some servers and relays insist on.
        if b.len() < 300 {
            b.resize(300, 0);
        }
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < HEADER + 4 || b[HEADER..HEADER + 4] != MAGIC || b[1] != 1 || b[2] != 6 {
            return None;
        }
        let v4 = |at: usize| Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
        let mut options = Vec::new();
        let mut i = HEADER + 4;
        while i < b.len() {
            match b[i] {
                opt::PAD => i += 1,
                opt::END => break,
                code => {
                    let len = usize::from(*b.get(i + 1)?);
                    let data = b.get(i + 2..i + 2 + len)?;
                    // Long options come split in pieces (RFC 3396).
                    match options.iter_mut().find(|(c, _)| *c == code) {
                        Some((_, d)) => Vec::extend_from_slice(d, data),
                        None => options.push((code, data.to_vec())),
                    }
                    i += 2 + len;
                }
            }
        }
        Some(Self {
            op: b[0],
            xid: u32::from_be_bytes(b[4..8].try_into().ok()?),
            flags: u16::from_be_bytes([b[10], b[11]]),
            ciaddr: v4(12),
            yiaddr: v4(16),
            chaddr: Mac(b[28..34].try_into().ok()?),
            options,
        })
    }

    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, d)| d.as_slice())
    }

    pub fn msg_type(&self) -> Option<u8> {
        self.option(opt::MSG_TYPE)?.first().copied()
    }

    /// The addresses of an address-list option.
    pub fn addrs(&self, code: u8) -> Vec<Ipv4Addr> {
        self.option(code)
            .unwrap_or_default()
            .as_chunks::<4>()
            .0
            .iter()
            .map(|c| Ipv4Addr::from(*c))
            .collect()
    }

    pub fn addr(&self, code: u8) -> Option<Ipv4Addr> {
        self.addrs(code).first().copied()
    }

    pub fn u32(&self, code: u8) -> Option<u32> {
        Some(u32::from_be_bytes(self.option(code)?.try_into().ok()?))
    }

    pub fn u16(&self, code: u8) -> Option<u16> {
        Some(u16::from_be_bytes(self.option(code)?.try_into().ok()?))
    }

    pub fn text(&self, code: u8) -> Option<String> {
        let t = String::from_utf8_lossy(self.option(code)?);
        let t = t.trim_end_matches('\0').trim();
        (!t.is_empty()).then(|| t.to_owned())
    }

    /// Whether this is a server's reply to our `xid` for `chaddr`.
    pub fn answers(&self, xid: u32, chaddr: Mac) -> bool {
        self.op == 2 && self.xid == xid && self.chaddr == chaddr
    }
}

/// An Ethernet frame carrying `payload` in UDP from the client port to the
/// server port.
pub fn frame(src_mac: Mac, dst_mac: Mac, src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    udp.extend_from_slice(&SERVER_PORT.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let pseudo = udp_pseudo_header(src, dst, udp_len);
    let sum = match internet(&[pseudo.as_slice(), &udp].concat()) {
        // 0 means "no checksum" in UDP: all ones stands for it.
        0 => 0xffff,
        s => s,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    let mut ip = vec![0x45, 0x10];
    ip.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, 64, UDP, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let sum = internet(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut f = Vec::with_capacity(14 + ip.len() + udp.len());
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&ETH_P_IP.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

/// The source MAC and UDP payload of a frame to the client port (IPv4,
/// unfragmented); `None` for any other frame.
pub fn client_payload(f: &[u8]) -> Option<(Mac, &[u8])> {
    if f.get(12..14)? != ETH_P_IP.to_be_bytes() {
        return None;
    }
    let ip = f.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    // Not a fragment (more-fragments clear, offset zero).
    let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
    if ip[0] >> 4 != 4 || ip.get(9)? != &UDP || frag & 0x3fff != 0 || ihl < 20 {
        return None;
    }
    let udp = ip.get(ihl..total.min(ip.len()))?;
    if udp.get(2..4)? != CLIENT_PORT.to_be_bytes() {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([udp[4], udp[5]])).min(udp.len());
    Some((Mac(f[6..12].try_into().ok()?), udp.get(8..len)?))
}

/// The domain names of a domain search option (RFC 3397: DNS wire format,
/// compression pointers into the option itself).
pub fn search_list(data: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let (name, next) = match name_at(data, i) {
            Some(n) => n,
            None => break,
        };
        if !name.is_empty() {
            names.push(name);
        }
        i = next;
    }
    names
}

/// The name at `at`, and where the next one starts.
fn name_at(data: &[u8], at: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    let mut i = at;
    let mut next = None;
    // Pointers only go back; the bound stops a loop of them anyway.
    for _ in 0..128 {
        let len = *data.get(i)?;
        match len {
            0 => {
                return Some((labels.join("."), next.unwrap_or(i + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let to = usize::from(u16::from_be_bytes([l & 0x3f, *data.get(i + 1)?]));
                next.get_or_insert(i + 2);
                i = to;
            }
            l => {
                let l = usize::from(l);
                labels.push(String::from_utf8_lossy(data.get(i + 1..i + 1 + l)?).into_owned());
                i += 1 + l;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Mac = Mac([2, 0, 0, 0, 0, 1]);

    #[test]
    fn a_message_round_trips_and_long_options_are_joined() {
        let m = Message::client(MsgType::Discover, 0x1234_5678, US, b"\0attach:x")
            .with(opt::REQUESTED_IP, &[10, 0, 0, 5]);
        let b = m.encode();
        assert_eq!(b.len(), 300);
        assert_eq!(Message::decode(&b), Some(m));
        let mut b = Message::client(MsgType::Ack, 1, US, b"id").encode();
        let end = b.iter().rposition(|x| *x == opt::END).unwrap();
        b.truncate(end);
        b.extend_from_slice(&[
            opt::DNS,
            4,
            10,
            0,
            0,
            53,
            opt::DNS,
            4,
            10,
            0,
            0,
            54,
            opt::END,
        ]);
        let d = Message::decode(&b).unwrap();
        assert_eq!(
            d.addrs(opt::DNS),
            [Ipv4Addr::new(10, 0, 0, 53), Ipv4Addr::new(10, 0, 0, 54)]
        );
        assert_eq!(d.msg_type(), Some(MsgType::Ack as u8));
    }

    #[test]
    fn frames_carry_right_checksums_and_are_read_back() {
        let payload = Message::client(MsgType::Request, 7, US, b"id").encode();
        let f = frame(
            US,
            Mac([0xff; 6]),
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            &payload,
        );
        // A right checksum sums (with its header) to zero.
        assert_eq!(internet(&f[14..34]), 0);
        let udp = &f[34..];
        let mut pseudo = vec![0, 0, 0, 0, 255, 255, 255, 255, 0, UDP];
        pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(udp);
        assert_eq!(internet(&pseudo), 0);
        // Sent to the server port: not a frame for the client.
        assert!(client_payload(&f).is_none());
        let mut back = f.clone();
        back[34..36].copy_from_slice(&SERVER_PORT.to_be_bytes());
        back[36..38].copy_from_slice(&CLIENT_PORT.to_be_bytes());
        let (src, p) = client_payload(&back).unwrap();
        assert_eq!((src, p), (US, payload.as_slice()));
    }

    #[test]
    fn search_lists_follow_compression_pointers() {
        // "eng.example.com", then "example.com" as a pointer into it.
        let mut d = vec![3];
        d.extend_from_slice(b"eng");
        d.push(7);
        d.extend_from_slice(b"example");
        d.push(3);
        d.extend_from_slice(b"com");
        d.push(0);
        d.extend_from_slice(&[0xc0, 4]);
        assert_eq!(search_list(&d), ["eng.example.com", "example.com"]);
        assert!(search_list(&[0xc0, 0]).is_empty());
    }
}
