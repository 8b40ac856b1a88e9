//! Packet sockets for the runs for real of [`super::live`]: one that
//! receives what arrives on a device (not what it sends), with VLAN tags the
//! device took into the skb's metadata put back, and one that sends a frame
//! out of a device.

use std::{
    ffi::CString,
    mem::{size_of, zeroed},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use super::live::Target;

/// How long a frame may take to arrive (the whole path is softirq work
/// done by the time the send returns, natively; emulated kernels are slow).
pub(crate) const DEADLINE: Duration = Duration::from_secs(3);

/// `struct tpacket_auxdata` (UAPI).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct AuxData {
    status: u32,
    len: u32,
    snaplen: u32,
    mac: u16,
    net: u16,
    vlan_tci: u16,
    vlan_tpid: u16,
}
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

pub(crate) fn check(rc: libc::c_int, what: &str) {
    assert!(rc >= 0, "{what}: {}", std::io::Error::last_os_error());
}

pub(crate) fn dev_index(name: &str) -> Option<u32> {
    let c = CString::new(name).expect("no NUL in a device name");
    // SAFETY: valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

pub(crate) fn dev_name(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    assert!(!p.is_null(), "no device with ifindex {ifindex}");
    // SAFETY: if_indextoname wrote a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// A packet socket: for `protocol` 0 it receives nothing (a sender).
fn packet_socket(protocol: u16) -> OwnedFd {
    // SAFETY: plain syscall; the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(protocol.to_be()),
        )
    };
    check(fd, "socket(AF_PACKET)");
    // SAFETY: a new fd of ours.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn sockaddr(ifindex: u32, protocol: u16) -> libc::sockaddr_ll {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sa: libc::sockaddr_ll = unsafe { zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = protocol.to_be();
    sa.sll_ifindex = ifindex as i32;
    sa
}

/// Receives what arrives on one device (not what it sends), from the
/// moment it is made: made with protocol 0 (nothing) and bound to the
/// device before it asks for every protocol, so no other device's frame
/// slips in between.
pub(crate) struct Capture {
    pub(crate) target: Target,
    pub(crate) dev: String,
    fd: OwnedFd,
}

impl Capture {
    pub(crate) fn new(target: Target, dev: String, ifindex: u32) -> Capture {
        let fd = packet_socket(0);
        let on: libc::c_int = 1;
        // SAFETY: valid fd and option value.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_AUXDATA,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        check(rc, "PACKET_AUXDATA");
        let sa = sockaddr(ifindex, libc::ETH_P_ALL as u16);
        // SAFETY: valid fd and address.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        check(rc, &format!("bind a packet socket to {dev}"));
        Capture { target, dev, fd }
    }

    /// The frames received so far (a VLAN tag the device took out of the
    /// frame is put back, as it was on the wire).
    pub(crate) fn drain(&self) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        loop {
            let mut buf = vec![0u8; 65536];
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: all-zero is a valid sockaddr_ll.
            let mut from: libc::sockaddr_ll = unsafe { zeroed() };
            let mut cbuf = [0u64; 16];
            // SAFETY: all-zero is a valid msghdr; pointers set below.
            let mut msg: libc::msghdr = unsafe { zeroed() };
            msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
            msg.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = size_of::<[u64; 16]>();
            // SAFETY: msg points at live buffers.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                // A device that is down receives nothing.
                assert!(
                    matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENETDOWN)),
                    "recvmsg on {}: {e}",
                    self.dev
                );
                return got;
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            buf.truncate(n as usize);
            let mut aux = AuxData::default();
            // SAFETY: walking the control messages recvmsg wrote.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA
                    {
                        aux = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
            }
            if aux.status & TP_STATUS_VLAN_VALID != 0 && buf.len() >= 12 {
                let tpid = if aux.status & TP_STATUS_VLAN_TPID_VALID != 0 {
                    aux.vlan_tpid
                } else {
                    0x8100
                };
                let tag = [tpid.to_be_bytes(), aux.vlan_tci.to_be_bytes()].concat();
                buf.splice(12..12, tag);
            }
            got.push(buf);
        }
    }
}

/// Waits until one of `caps` has a frame to read, or the deadline.
pub(crate) fn wait_any(caps: &[Capture], until: Instant) {
    let mut fds: Vec<libc::pollfd> = caps
        .iter()
        .map(|c| libc::pollfd {
            fd: c.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        // SAFETY: valid pollfds.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as _, left.as_millis() as i32) };
        if rc >= 0 {
            return;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.raw_os_error(), Some(libc::EINTR), "poll: {e}");
    }
}

/// Sends `frame` out of device `ifindex` (through its tc egress hook),
/// with `mark` (a veth keeps it into a peer of the same namespace).
pub(crate) fn send(ifindex: u32, frame: &[u8], mark: u32) {
    let fd = packet_socket(0);
    if mark != 0 {
        // SAFETY: valid fd and option value.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_MARK,
                (&mark as *const u32).cast(),
                size_of::<u32>() as u32,
            )
        };
        check(rc, "SO_MARK");
    }
    let proto = u16::from_be_bytes([frame[12], frame[13]]);
    let sa = sockaddr(ifindex, proto);
    // SAFETY: valid fd, buffer and address.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sa as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    check(
        n as i32,
        &format!("send {} bytes on ifindex {ifindex}", frame.len()),
    );
}
