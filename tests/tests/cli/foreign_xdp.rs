//! Another tool's XDP program on a device of the node, for the cases whose
//! XDP slot is taken.

use std::fs;

use attach_tests::lab::{Lab, NETNS_PREFIX, Netns};

/// A do-nothing XDP program attached to a device of the node in generic
/// mode over netlink, as another tool would: our XDP link can then attach in
/// neither mode. Detached on drop.
pub(crate) struct ForeignXdp<'a> {
    node: &'a Netns,
    dev: &'static str,
}

impl<'a> ForeignXdp<'a> {
    pub(crate) fn attach(lab: &'a Lab, dev: &'static str) -> ForeignXdp<'a> {
        #[repr(C)]
        struct ProgLoad {
            prog_type: u32,
            insn_cnt: u32,
            insns: u64,
            license: u64,
            log_level: u32,
            log_size: u32,
            log_buf: u64,
            kern_version: u32,
            prog_flags: u32,
            prog_name: [u8; 16],
        }
        #[repr(C)]
        struct ObjPin {
            pathname: u64,
            bpf_fd: u32,
            file_flags: u32,
        }
        const BPF_PROG_LOAD: libc::c_long = 5;
        const BPF_OBJ_PIN: libc::c_long = 6;
        const BPF_PROG_TYPE_XDP: u32 = 6;
        // r0 = XDP_PASS; exit
        let insns: [u64; 2] = [
            u64::from_le_bytes([0xb7, 0, 0, 0, 2, 0, 0, 0]),
            u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
        ];
        let license = c"GPL";
        let mut name = [0u8; 16];
        name[..9].copy_from_slice(b"atl_xpass");
        let attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: 2,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 0,
            log_size: 0,
            log_buf: 0,
            kern_version: 0,
            prog_flags: 0,
            prog_name: name,
        };
        // SAFETY: a valid bpf_attr prefix for BPF_PROG_LOAD; pointers live.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const ProgLoad,
                std::mem::size_of::<ProgLoad>(),
            )
        };
        assert!(
            fd >= 0,
            "loading an XDP program: {}",
            std::io::Error::last_os_error()
        );
        let pin = format!("/sys/fs/bpf/{NETNS_PREFIX}-{}-xdp", lab.tag());
        let cpin = std::ffi::CString::new(pin.clone()).unwrap();
        let attr = ObjPin {
            pathname: cpin.as_ptr() as u64,
            bpf_fd: fd as u32,
            file_flags: 0,
        };
        // SAFETY: a valid bpf_attr prefix for BPF_OBJ_PIN; pointers live.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_OBJ_PIN,
                &attr as *const ObjPin,
                std::mem::size_of::<ObjPin>(),
            )
        };
        let err = std::io::Error::last_os_error();
        // SAFETY: closing the fd we were given.
        unsafe { libc::close(fd as i32) };
        assert_eq!(r, 0, "pinning the XDP program at {pin}: {err}");
        let attached = lab.node().ok(&[
            "bpftool",
            "net",
            "attach",
            "xdpgeneric",
            "pinned",
            &pin,
            "dev",
            dev,
        ]);
        fs::remove_file(&pin).unwrap();
        attached.unwrap();
        ForeignXdp {
            node: lab.node(),
            dev,
        }
    }
}

impl Drop for ForeignXdp<'_> {
    fn drop(&mut self) {
        let _ = self
            .node
            .exec(&["bpftool", "net", "detach", "xdpgeneric", "dev", self.dev]);
    }
}
