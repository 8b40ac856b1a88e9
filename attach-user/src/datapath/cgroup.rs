//! The cgroup counter programs of `host` attachments: cgroup_skb links,
//! pinned, and switched in place to an instance loaded with the
//! attachment's counter slot.

use std::fs;

use aya::programs::{CgroupAttachMode, CgroupSkbAttachType, links::FdLink};

use super::attach::Attached;
use super::node::Datapath;
use super::pins;
use super::progs::PROG_CG_IN;
use crate::error::{Error, Result};

impl Datapath {
    /// Attaches a cgroup_skb counter program (`PROG_CG_IN`/`PROG_CG_EG`) to
    /// the cgroup open as `cgroup` with a bpf_link (beside any other program
    /// there), and pins the link as `pin`.
    pub fn attach_cgroup(&mut self, prog: &str, cgroup: &fs::File, pin: &str) -> Result<()> {
        self.unpin(pin)?;
        let path = pins::link_path(self.dir(), pin);
        let at = if prog == PROG_CG_IN {
            CgroupSkbAttachType::Ingress
        } else {
            CgroupSkbAttachType::Egress
        };
        let p = self.cgroup_program(prog)?;
        // A bpf_link takes no attach flags (the kernel refuses any with
        // EINVAL) and always sits beside other programs, as multi-attach.
        let id = p
            .attach(cgroup, at, CgroupAttachMode::Single)
            .map_err(|e| Error::from(e).context(format!("attaching {prog} to the cgroup")))?;
        let link: FdLink = p.take_link(id)?.try_into()?;
        link.pin(&path)?;
        Ok(())
    }

    /// [`Self::update_link`] for a cgroup counter link: `bpf_link_update`
    /// to this instance's `prog` (loaded with the attachment's counter slot,
    /// see [`Self::open_counting`]); aya has no `attach_to_link` for
    /// cgroup_skb, so the syscall is made here.
    pub fn update_cgroup_link(&mut self, prog: &str, pin: &str, force: bool) -> Result<Attached> {
        use std::os::fd::{AsFd, AsRawFd};
        let current = self.cgroup_program(prog)?.info()?.tag();
        if !force && self.pinned_program_tag(pin) == Some(current) {
            return Ok(Attached::Kept);
        }
        let path = std::ffi::CString::new(
            pins::link_path(self.dir(), pin)
                .as_os_str()
                .as_encoded_bytes(),
        )
        .map_err(|_| Error::system("a pin path with a NUL byte"))?;
        #[repr(C)]
        struct ObjGet {
            pathname: u64,
            bpf_fd: u32,
            file_flags: u32,
        }
        #[repr(C)]
        struct LinkUpdate {
            link_fd: u32,
            new_prog_fd: u32,
            flags: u32,
            old_prog_fd: u32,
        }
        const BPF_OBJ_GET: libc::c_long = 7;
        const BPF_LINK_UPDATE: libc::c_long = 29;
        let get = ObjGet {
            pathname: path.as_ptr() as u64,
            bpf_fd: 0,
            file_flags: 0,
        };
        // SAFETY: a valid bpf_attr prefix for BPF_OBJ_GET; the path lives.
        let link_fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_OBJ_GET,
                &get as *const ObjGet,
                std::mem::size_of::<ObjGet>(),
            )
        };
        if link_fd < 0 {
            return Err(Error::system(format!(
                "opening the link pinned as {pin}: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: the kernel just gave us this fd; it is closed on drop.
        let link_fd = unsafe {
            <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(link_fd as i32)
        };
        let prog_fd = self.cgroup_program(prog)?.fd()?.as_fd().as_raw_fd();
        let upd = LinkUpdate {
            link_fd: link_fd.as_raw_fd() as u32,
            new_prog_fd: prog_fd as u32,
            flags: 0,
            old_prog_fd: 0,
        };
        // SAFETY: a valid bpf_attr prefix for BPF_LINK_UPDATE; both fds live.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_LINK_UPDATE,
                &upd as *const LinkUpdate,
                std::mem::size_of::<LinkUpdate>(),
            )
        };
        if r != 0 {
            return Err(Error::system(format!(
                "updating {prog} ({pin}): {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(Attached::Updated)
    }
}
