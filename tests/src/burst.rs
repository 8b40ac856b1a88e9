//! Many frames at once from an endpoint, for what a flood of events does to
//! the event ring and its counters.

use anyhow::ensure;

use crate::reach::Endpoint;

/// Sends `n` broadcast frames from the endpoint's eth0 with a source MAC that is not
/// the endpoint's: the datapath drops (and reports) each one it sees.
pub fn spoofed(ep: &Endpoint, n: usize) {
    ep.ns
        .run(move || {
            // SAFETY: plain socket calls on a socket this closure owns.
            unsafe {
                let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
                ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
                let mut addr: libc::sockaddr_ll = std::mem::zeroed();
                addr.sll_family = libc::AF_PACKET as u16;
                addr.sll_ifindex = libc::if_nametoindex(c"eth0".as_ptr()) as i32;
                addr.sll_halen = 6;
                let mut frame = [0u8; 60];
                frame[..6].copy_from_slice(&[0xff; 6]);
                frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0x0e, 0x99]);
                frame[12..14].copy_from_slice(&[0x08, 0x00]);
                let mut sent = 0;
                while sent < n {
                    let r = libc::sendto(
                        fd,
                        frame.as_ptr().cast(),
                        frame.len(),
                        0,
                        (&raw const addr).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    );
                    if r < 0 {
                        // A full queue: let it drain.
                        std::thread::yield_now();
                        continue;
                    }
                    sent += 1;
                }
                libc::close(fd);
            }
            Ok(())
        })
        .unwrap();
}
