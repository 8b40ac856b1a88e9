//! A seeded, deterministic generator of structured frames for the datapath
//! fuzzer: every ethertype class the programs branch on (IPv4, IPv6, ARP,
//! 802.1Q and 802.1ad tags, unknown ethertypes, LLC lengths), IPv6
//! extension-header chains, ARP and neighbour-discovery variants, DHCP
//! ports, destinations and sources known and unknown, truncations at header
//! boundaries and random bytes. Frame `k` of seed `s` is always the same.

use attach_common::MacAddr;

use super::{XorShift, frames::*};

/// Who the generator draws addresses from.
pub struct Cast {
    /// The endpoints' MACs.
    pub macs: Vec<MacAddr>,
    pub parent: MacAddr,
    /// Addresses some endpoint owns (v4, v6).
    pub own4: Vec<[u8; 4]>,
    pub own6: Vec<[u8; 16]>,
    /// The subnet's /24 prefix, for other hosts on it.
    pub net4: [u8; 3],
}

/// The modified EUI-64 link-local address the kernel gives `mac`.
pub fn eui64_ll(mac: &MacAddr) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfe;
    a[1] = 0x80;
    a[8] = mac[0] ^ 2;
    a[9] = mac[1];
    a[10] = mac[2];
    a[11] = 0xff;
    a[12] = 0xfe;
    a[13..].copy_from_slice(&mac[3..]);
    a
}

pub struct Gen<'a> {
    pub rng: XorShift,
    cast: &'a Cast,
}

impl<'a> Gen<'a> {
    pub fn new(seed: u64, cast: &'a Cast) -> Self {
        Gen {
            rng: XorShift::new(seed),
            cast,
        }
    }

    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.rng.range(0, v.len() as u64 - 1) as usize]
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.rng.range(1, one_in) == 1
    }

    fn dst(&mut self) -> MacAddr {
        match self.rng.range(0, 9) {
            0..=3 => self.pick(&self.cast.macs.clone()),
            4 => BROADCAST,
            5 => [0x33, 0x33, 0xff, 0, 0, self.rng.range(0, 255) as u8],
            6 => ipv4_multicast_mac([224, 0, 0, self.rng.range(1, 255) as u8]),
            7 => self.cast.parent,
            8 => OUTSIDE,
            _ => self.rng.mac(),
        }
    }

    /// A source: `own` mostly (a container's own MAC), else anyone's.
    fn src(&mut self, own: Option<MacAddr>) -> MacAddr {
        match (own, self.rng.range(0, 7)) {
            (Some(m), 0..=4) => m,
            (_, 0..=2) => self.pick(&self.cast.macs.clone()),
            (_, 3..=5) => OUTSIDE,
            _ => self.rng.mac(),
        }
    }

    fn mac_like(&mut self, own: MacAddr) -> MacAddr {
        if self.chance(3) { self.src(None) } else { own }
    }

    fn ip4(&mut self) -> [u8; 4] {
        match self.rng.range(0, 5) {
            0..=2 => self.pick(&self.cast.own4.clone()),
            3 => [0; 4],
            4 => {
                let [a, b, c] = self.cast.net4;
                [a, b, c, self.rng.range(1, 254) as u8]
            }
            _ => {
                let mut a = [0; 4];
                self.rng.fill(&mut a);
                a
            }
        }
    }

    fn ip6(&mut self, own: MacAddr) -> [u8; 16] {
        match self.rng.range(0, 7) {
            0..=1 => self.pick(&self.cast.own6.clone()),
            2 => eui64_ll(&own),
            3 => {
                let m = self.src(None);
                eui64_ll(&m)
            }
            4 => [0; 16],
            5 => ll6(self.rng.range(1, 254) as u8),
            6 => ALL_NODES,
            _ => {
                let mut a = [0; 16];
                self.rng.fill(&mut a);
                a
            }
        }
    }

    /// One frame, as sent by a device whose own MAC is `own` (None: from
    /// the wire); with the header boundaries it has, for truncations.
    pub fn frame(&mut self, own: Option<MacAddr>) -> Vec<u8> {
        let dst = self.dst();
        let src = self.src(own);
        let me = own.unwrap_or(src);
        let mut f = Vec::with_capacity(128);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        let mut cuts = vec![12usize, 14];
        // Tags: none mostly, 802.1Q, QinQ (802.1ad or 802.1Q outer), three.
        let tags: &[u16] = match self.rng.range(0, 9) {
            0 => &[ETH_P_8021Q],
            1 => &[0x88a8, ETH_P_8021Q],
            2 => &[ETH_P_8021Q, ETH_P_8021Q],
            3 => &[0x88a8, ETH_P_8021Q, ETH_P_8021Q],
            _ => &[],
        };
        for t in tags {
            f.extend_from_slice(&t.to_be_bytes());
            f.extend_from_slice(&(self.rng.range(1, 4094) as u16).to_be_bytes());
            cuts.push(f.len());
        }
        let l3 = match self.rng.range(0, 11) {
            0..=2 => {
                f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
                self.ipv6(me)
            }
            3..=4 => {
                f.extend_from_slice(&ETH_P_IP.to_be_bytes());
                self.ipv4()
            }
            5..=6 => {
                f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
                self.arp(me)
            }
            7 => {
                // An 802.3 length and LLC/SNAP.
                f.extend_from_slice(&(self.rng.range(3, 1500) as u16).to_be_bytes());
                let mut b = vec![0xaa, 0xaa, 3, 0, 0, 0];
                b.extend_from_slice(&self.pick(&[ETH_P_IP, ETH_P_IPV6, ETH_P_ARP]).to_be_bytes());
                (b, vec![])
            }
            8 => {
                let t = self.pick(&[0x88cc, 0x8035, 0x8847, 0x88e5, 0x9100, 0x0842]);
                f.extend_from_slice(&(t as u16).to_be_bytes());
                (vec![], vec![])
            }
            _ => {
                f.extend_from_slice(&(self.rng.range(0, 0xffff) as u16).to_be_bytes());
                (vec![], vec![])
            }
        };
        cuts.push(f.len());
        let base = f.len();
        let (body, inner) = l3;
        f.extend_from_slice(&body);
        cuts.extend(inner.iter().map(|c| base + c));
        // Some random tail (padding, payload) now and then.
        if self.chance(4) {
            let n = self.rng.range(0, 64) as usize;
            let at = f.len();
            f.resize(at + n, 0);
            self.rng.fill(&mut f[at..]);
        }
        match self.rng.range(0, 11) {
            // Cut at a header boundary, or just before or after one.
            0..=1 => {
                let c = self.pick(&cuts) as i64 + self.rng.range(0, 2) as i64 - 1;
                f.truncate(c.clamp(14, f.len() as i64) as usize);
            }
            2 => {
                let c = self.rng.range(14, f.len().max(14) as u64) as usize;
                f.truncate(c);
            }
            // Random bytes after the addresses.
            3 => {
                let n = self.rng.range(14, 200) as usize;
                f.resize(n, 0);
                self.rng.fill(&mut f[12..]);
            }
            _ => {}
        }
        if f.len() < 14 {
            f.resize(14, 0);
        }
        f
    }

    /// ARP: requests, replies, gratuitous ones, with the sender MAC and IP
    /// the sender's own or not, and now and then a malformed header.
    fn arp(&mut self, me: MacAddr) -> (Vec<u8>, Vec<usize>) {
        let mut a = Vec::with_capacity(28);
        let (hrd, pro, hln, pln) = if self.chance(8) {
            (
                self.pick(&[1u16, 6, 32, 0]),
                self.pick(&[ETH_P_IP, ETH_P_IPV6]),
                self.pick(&[6u8, 8, 0]),
                self.pick(&[4u8, 16, 0]),
            )
        } else {
            (1, ETH_P_IP, 6, 4)
        };
        a.extend_from_slice(&hrd.to_be_bytes());
        a.extend_from_slice(&pro.to_be_bytes());
        a.extend_from_slice(&[hln, pln]);
        a.extend_from_slice(&self.pick(&[1u16, 2, 3, 4, 8]).to_be_bytes());
        let sha = self.mac_like(me);
        a.extend_from_slice(&sha);
        let sip = self.ip4();
        a.extend_from_slice(&sip);
        let tha = self.src(None);
        a.extend_from_slice(&tha);
        let tip = self.ip4();
        a.extend_from_slice(&tip);
        (a, vec![8, 14, 18, 24, 28])
    }

    fn ipv4(&mut self) -> (Vec<u8>, Vec<usize>) {
        let ihl = if self.chance(12) {
            self.rng.range(0, 4) as u8
        } else {
            self.rng.range(5, 7) as u8
        };
        let version = if self.chance(16) { 6 } else { 4 };
        let proto = self.pick(&[17u8, 17, 17, 6, 1, 2]);
        let sport = self.pick(&[67u16, 67, 68, 53, 40000]);
        let dport = self.pick(&[68u16, 67, 53, 5353]);
        let hl = usize::from(ihl.max(5)) * 4;
        let payload = self.rng.range(0, 40) as usize;
        let total = hl + 8 + payload;
        let mut h = vec![0u8; hl];
        h[0] = version << 4 | ihl;
        h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        // Fragments: first (MF), later ones, whole.
        match self.rng.range(0, 5) {
            0 => h[6] = 0x20,
            1 => {
                let off = self.rng.range(1, 0x1fff) as u16;
                h[6..8].copy_from_slice(&off.to_be_bytes());
            }
            _ => h[6] = 0x40,
        }
        h[8] = 64;
        h[9] = proto;
        let s = self.ip4();
        h[12..16].copy_from_slice(&s);
        let d = self.ip4();
        h[16..20].copy_from_slice(&d);
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&dport.to_be_bytes());
        h.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        h.extend_from_slice(&[0, 0]);
        let at = h.len();
        h.resize(at + payload, 0);
        self.rng.fill(&mut h[at..]);
        (h, vec![12, 16, 20, hl, hl + 2, hl + 8])
    }

    fn ipv6(&mut self, me: MacAddr) -> (Vec<u8>, Vec<usize>) {
        let mut cuts = vec![8, 24, 40];
        let mut p = vec![0u8; 40];
        p[0] = if self.chance(16) { 0x40 } else { 0x60 };
        p[7] = 255;
        let s = self.ip6(me);
        p[8..24].copy_from_slice(&s);
        let d = self.ip6(me);
        p[24..40].copy_from_slice(&d);
        // The extension-header chain: 0 mostly, up to 6.
        let n = match self.rng.range(0, 9) {
            0..=4 => 0,
            5..=6 => 1,
            7 => 2,
            8 => self.rng.range(3, 4),
            _ => self.rng.range(5, 6),
        };
        let mut next_at = 6;
        for _ in 0..n {
            let ty = self.pick(&[0u8, 43, 60, 44, 60]);
            p[next_at] = ty;
            next_at = p.len();
            if ty == 44 {
                // First fragment mostly, else a later one.
                let off: u16 = if self.chance(3) {
                    (self.rng.range(1, 0x1fff) as u16) << 3
                } else {
                    1
                };
                p.extend_from_slice(&[0, 0]);
                p.extend_from_slice(&off.to_be_bytes());
                p.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
            } else {
                let len = self.pick(&[0u8, 0, 1, 2]);
                let at = p.len();
                p.resize(at + (usize::from(len) + 1) * 8, 0);
                self.rng.fill(&mut p[at + 2..]);
                p[at + 1] = len;
            }
            cuts.push(next_at);
            cuts.push(next_at + 2);
        }
        let upper = self.pick(&[58u8, 58, 58, 58, 17, 17, 6, 59, 51]);
        p[next_at] = upper;
        let l4 = p.len();
        match upper {
            58 => self.icmp6(me, &mut p),
            17 => {
                let sport = self.pick(&[547u16, 547, 546, 53, 40000]);
                p.extend_from_slice(&sport.to_be_bytes());
                p.extend_from_slice(&self.pick(&[546u16, 547]).to_be_bytes());
                p.extend_from_slice(&[0, 16, 0, 0]);
                p.extend_from_slice(b"dhcpv6 advert");
            }
            _ => {
                let at = p.len();
                p.resize(at + self.rng.range(0, 32) as usize, 0);
                self.rng.fill(&mut p[at..]);
            }
        }
        cuts.extend([l4, l4 + 1, l4 + 2, l4 + 8]);
        let plen = (p.len() - 40) as u16;
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        (p, cuts)
    }

    /// ICMPv6: echo, or a neighbour-discovery message (RS, RA, NS, NA,
    /// redirect) with link-layer options carrying its own MAC or another,
    /// other options, now and then a zero-length one; NA and NS targets the
    /// sender's or not; DAD (from ::).
    fn icmp6(&mut self, me: MacAddr, p: &mut Vec<u8>) {
        let ty = self.pick(&[128u8, 129, 133, 134, 135, 135, 136, 136, 137, 1]);
        p.extend_from_slice(&[ty, 0, 0, 0]);
        let fixed = match ty {
            133 => 4,
            134 => 12,
            135 | 136 => 20,
            137 => 36,
            _ => 4,
        };
        let at = p.len();
        p.resize(at + fixed, 0);
        if matches!(ty, 135..=137) {
            p[at] = 0x60;
            let t = self.ip6(me);
            p[at + 4..at + 20].copy_from_slice(&t);
        }
        if ty == 135 && self.chance(4) {
            // DAD: from the unspecified address, no options.
            p[8..24].fill(0);
            return;
        }
        if !matches!(ty, 133..=137) {
            return;
        }
        let n = match self.rng.range(0, 9) {
            0..=2 => 0,
            3..=6 => 1,
            7 => 2,
            8 => self.rng.range(3, 7),
            _ => self.rng.range(14, 20),
        };
        for _ in 0..n {
            let oty = self.pick(&[1u8, 1, 2, 2, 14, 3, 5, 25, 200]);
            let olen = if self.chance(20) {
                0
            } else if matches!(oty, 1 | 2) {
                1
            } else {
                self.rng.range(1, 3) as u8
            };
            let at = p.len();
            p.resize(at + usize::from(olen.max(1)) * 8, 0);
            p[at] = oty;
            p[at + 1] = olen;
            if matches!(oty, 1 | 2) {
                let m = self.mac_like(me);
                p[at + 2..at + 8].copy_from_slice(&m);
            } else {
                self.rng.fill(&mut p[at + 2..]);
            }
        }
    }
}

/// `f` in hex, 16 bytes a line.
pub fn hex(f: &[u8]) -> String {
    f.chunks(16)
        .map(|c| {
            c.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n        ")
}
