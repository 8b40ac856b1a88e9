//! A packet socket on one device of the calling thread's namespace, for
//! the frames the engine speaks on a wire before an endpoint exists (ARP
//! probes, DAD, DHCP): promiscuous while open, since the answers go to the
//! endpoint's MAC, which the NIC may not accept yet.
//!
//! A socket speaks on one VLAN path of its device: untagged, or the tags
//! a nested endpoint's frames carry on a VM's uplink (802.1Q, inside an
//! 802.1ad S-tag with QinQ). It pushes them on what it sends and receives
//! only frames of that path, tags taken off. On receive the kernel has
//! moved a frame's outermost tag into the packet's metadata before a
//! packet socket sees it (read back from `PACKET_AUXDATA`); inner tags
//! stay in the frame.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Instant,
};

const ETH_P_ALL: u16 = 0x0003;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

/// A VLAN tag of a frame: its TPID and VLAN id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    pub tpid: u16,
    pub vid: u16,
}

impl Tag {
    /// An 802.1Q tag (a C-tag).
    pub const fn q(vid: u16) -> Tag {
        Tag {
            tpid: ETH_P_8021Q,
            vid,
        }
    }

    /// An 802.1ad tag (a QinQ S-tag).
    pub const fn ad(vid: u16) -> Tag {
        Tag {
            tpid: ETH_P_8021AD,
            vid,
        }
    }
}

/// A packet socket on one device and VLAN path, promiscuous while open.
pub(crate) struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
    /// The frames' tags, outermost first; empty: untagged.
    tags: Vec<Tag>,
}

impl PacketSocket {
    /// A socket for the frames of device `ifindex` tagged `tags` (outermost
    /// first; none: untagged).
    pub(crate) fn open(ifindex: u32, tags: &[Tag]) -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned at once.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sll = sockaddr(ifindex);
        // SAFETY: `sll` is a valid sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let mreq = libc::packet_mreq {
            mr_ifindex: ifindex as i32,
            mr_type: libc::PACKET_MR_PROMISC as u16,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        // SAFETY: `mreq` is a valid packet_mreq of the size given; the
        // kernel drops the membership when the socket closes.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&raw const mreq).cast(),
                size_of::<libc::packet_mreq>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // The outermost tag of what is received, which the kernel keeps
        // out of the frame.
        let on: libc::c_int = 1;
        // SAFETY: an int option of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_AUXDATA,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            ifindex,
            tags: tags.to_vec(),
        })
    }

    /// Sends `frame` (untagged: the socket's tags are pushed).
    pub(crate) fn send(&self, frame: &[u8]) -> io::Result<()> {
        let tagged;
        let frame = if self.tags.is_empty() || frame.len() < 12 {
            frame
        } else {
            tagged = push_tags(frame, &self.tags);
            &tagged
        };
        let sll = sockaddr(self.ifindex);
        // SAFETY: `frame` and `sll` are valid for the lengths given.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// One frame of the socket's VLAN path received on the device (not
    /// one we sent), its tags taken off, or `None` at `deadline`.
    pub(crate) fn recv(&self, buf: &mut [u8], deadline: Instant) -> io::Result<Option<usize>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&raw mut pfd, 1, ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if rc == 0 {
                continue;
            }
            let Some((n, outgoing, meta)) = self.recv_one(buf)? else {
                continue;
            };
            if outgoing {
                continue;
            }
            if let Some(len) = untag(&mut buf[..n], meta, &self.tags) {
                return Ok(Some(len));
            }
        }
    }

    /// One frame: its length, whether we sent it, and the tag the kernel
    /// took out of it; `None` when nothing was there after all.
    fn recv_one(&self, buf: &mut [u8]) -> io::Result<Option<(usize, bool, Option<Tag>)>> {
        // SAFETY: zeroed sockaddr_ll is a valid out-parameter.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        // Room for one tpacket_auxdata control message, aligned.
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid msghdr; its pointers are set below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&raw mut from).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control);
        // SAFETY: `msg` points at buffers valid for the lengths it gives.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(e);
        }
        let mut meta = None;
        // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk the
        // control buffer it describes.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                    let aux: libc::tpacket_auxdata =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    meta = aux_tag(&aux);
                }
                c = libc::CMSG_NXTHDR(&raw const msg, c);
            }
        }
        Ok(Some((
            n as usize,
            from.sll_pkttype == libc::PACKET_OUTGOING,
            meta,
        )))
    }
}

/// The tag `aux` says the kernel took out of a frame, if any (a VLAN id
/// of 0 is a priority tag only: no VLAN).
fn aux_tag(aux: &libc::tpacket_auxdata) -> Option<Tag> {
    if aux.tp_status & libc::TP_STATUS_VLAN_VALID == 0 {
        return None;
    }
    let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
        aux.tp_vlan_tpid
    } else {
        ETH_P_8021Q
    };
    Some(Tag {
        tpid,
        vid: aux.tp_vlan_tci & 0xfff,
    })
}

/// `frame` with `tags` (outermost first) pushed after its MACs.
fn push_tags(frame: &[u8], tags: &[Tag]) -> Vec<u8> {
    let mut f = Vec::with_capacity(frame.len() + 4 * tags.len());
    f.extend_from_slice(&frame[..12]);
    for t in tags {
        f.extend_from_slice(&t.tpid.to_be_bytes());
        f.extend_from_slice(&(t.vid & 0xfff).to_be_bytes());
    }
    f.extend_from_slice(&frame[12..]);
    f
}

/// Whether the received `frame` (whose outermost tag the kernel may have
/// taken out: `meta`) is on the VLAN path `want`; then its tags still in
/// it are taken off in place and its new length returned.
fn untag(frame: &mut [u8], meta: Option<Tag>, want: &[Tag]) -> Option<usize> {
    let mut tags: Vec<Tag> = meta.filter(|t| t.vid != 0).into_iter().collect();
    let mut inline = 0;
    while let Some(h) = frame.get(12 + 4 * inline..16 + 4 * inline) {
        let tpid = u16::from_be_bytes([h[0], h[1]]);
        if tpid != ETH_P_8021Q && tpid != ETH_P_8021AD {
            break;
        }
        let vid = u16::from_be_bytes([h[2], h[3]]) & 0xfff;
        if vid != 0 {
            tags.push(Tag { tpid, vid });
        }
        inline += 1;
    }
    // The TPIDs are not compared: which one a switch on the way used for
    // an outer tag is its business; the VLAN ids tell the path.
    let same = tags.len() == want.len() && tags.iter().zip(want).all(|(a, b)| a.vid == b.vid);
    if !same {
        return None;
    }
    let cut = 4 * inline;
    frame.copy_within(12 + cut.., 12);
    Some(frame.len() - cut)
}

fn sockaddr(ifindex: u32) -> libc::sockaddr_ll {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL.to_be();
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ethertype: u16) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(b"payload");
        f
    }

    #[test]
    fn tags_pushed_are_taken_off_again_in_the_packet_or_its_metadata() {
        let plain = frame(0x0806);
        let path = [Tag::ad(10), Tag::q(100)];
        let tagged = push_tags(&plain, &path);
        assert_eq!(&tagged[12..20], &[0x88, 0xa8, 0, 10, 0x81, 0, 0, 100]);
        // Both tags in the packet.
        let mut f = tagged.clone();
        let n = untag(&mut f, None, &path).unwrap();
        assert_eq!(&f[..n], &plain[..]);
        // The outer one in the metadata, as the kernel gives it.
        let mut f = push_tags(&plain, &path[1..]);
        let n = untag(&mut f, Some(Tag::ad(10)), &path).unwrap();
        assert_eq!(&f[..n], &plain[..]);
        // A single 802.1Q tag, in the metadata.
        let mut f = plain.clone();
        assert_eq!(
            untag(&mut f, Some(Tag::q(100)), &[Tag::q(100)]),
            Some(plain.len())
        );
    }

    #[test]
    fn frames_of_another_vlan_path_are_not_received() {
        let plain = frame(0x0806);
        // Another VLAN, a missing or extra tag.
        assert_eq!(
            untag(&mut plain.clone(), Some(Tag::q(200)), &[Tag::q(100)]),
            None
        );
        assert_eq!(untag(&mut plain.clone(), None, &[Tag::q(100)]), None);
        assert_eq!(untag(&mut plain.clone(), Some(Tag::q(100)), &[]), None);
        let mut f = push_tags(&plain, &[Tag::q(100)]);
        assert_eq!(
            untag(&mut f, Some(Tag::ad(11)), &[Tag::ad(10), Tag::q(100)]),
            None
        );
        // Untagged, and priority-tagged (VLAN 0), are the untagged path.
        assert_eq!(untag(&mut plain.clone(), None, &[]), Some(plain.len()));
        assert_eq!(
            untag(&mut plain.clone(), Some(Tag::q(0)), &[]),
            Some(plain.len())
        );
    }
}
