//! The capabilities a command needs, checked before it starts: without them
//! it would fail half-way, on the first denied call, with a message about
//! that call (a state directory, a pin, a netlink request) rather than about
//! privileges.

use crate::error::{Error, Result};

/// Links, addresses and filters (CAP_NET_ADMIN); entering namespaces, the
/// bpf syscall and its pins (CAP_SYS_ADMIN, which grants what CAP_BPF
/// would).
const NEEDED: [(u32, &str); 2] = [(12, "CAP_NET_ADMIN"), (21, "CAP_SYS_ADMIN")];

/// Refuses command `name` up front when this process lacks what it
/// needs. `list` only reads the records (root's: another user is told so
/// when there are some); `completions` and `man` only print.
pub fn check(name: &str) -> Result<()> {
    if matches!(name, "list" | "completions" | "man") {
        return Ok(());
    }
    // Unknown (no /proc): the kernel will say.
    let Some(effective) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| effective_caps(&s))
    else {
        return Ok(());
    };
    let missing = missing(effective);
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::system(format!(
        "attach {} needs CAP_NET_ADMIN and CAP_SYS_ADMIN (run it as root); this process lacks {}",
        name,
        missing.join(" and ")
    )))
}

fn missing(effective: u64) -> Vec<&'static str> {
    NEEDED
        .iter()
        .filter(|(bit, _)| effective & (1 << bit) == 0)
        .map(|(_, cap)| *cap)
        .collect()
}

/// The `CapEff` mask of a `/proc/<pid>/status`.
fn effective_caps(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_set() {
        let status = "Name:\tattach\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                      CapEff:\t0000000000201000\nCapBnd:\t000001ffffffffff\n";
        assert_eq!(effective_caps(status), Some(0x20_1000));
        assert_eq!(effective_caps("Name:\tx\n"), None);
        assert_eq!(effective_caps("CapEff:\tzz\n"), None);
    }

    #[test]
    fn names_what_is_missing() {
        assert!(missing(0x1ff_ffff_ffff).is_empty());
        assert!(missing(0x20_1000).is_empty());
        assert_eq!(missing(0x20_0000), ["CAP_NET_ADMIN"]);
        assert_eq!(missing(0), ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]);
    }
}
