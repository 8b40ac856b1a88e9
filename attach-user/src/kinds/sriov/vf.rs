//! What is set on a VF through its PF when it is taken, and what is put
//! back when it is given back: only what the request asked for.

use crate::{
    addr::Mac,
    model::SriovInfo,
    netlink::{VfConfig, VfSet},
};

/// What the attach sets on the VF, from the request in the record: the MAC
/// only when one was asked (`mac`, the record's, differs from the device's
/// own) and the VF does not have it already.
pub(super) fn vf_wanted(s: &SriovInfo, mac: Mac, saved: &VfConfig) -> VfSet {
    VfSet {
        mac: (mac != s.saved.mac && mac != saved.mac).then_some(mac),
        vlan: s
            .vlan
            .map(|v| (u32::from(v), u32::from(s.qos.unwrap_or(0)))),
        spoofchk: s.spoofchk,
        trust: s.trust,
        rate: s.max_rate.map(|max| (saved.min_rate, max)),
    }
}

/// What puts the VF back: the saved value of every setting `set` changes.
pub(super) fn vf_restore(set: &VfSet, saved: &VfConfig) -> VfSet {
    VfSet {
        mac: set.mac.map(|_| saved.mac),
        vlan: set.vlan.map(|_| (saved.vlan, saved.qos)),
        spoofchk: set.spoofchk.map(|_| saved.spoofchk),
        trust: set.trust.map(|_| saved.trust),
        rate: set.rate.map(|_| (saved.min_rate, saved.max_rate)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_was_asked_is_set_and_restored() {
        let saved = VfConfig {
            mac: "02:00:00:00:00:01".parse().unwrap(),
            vlan: 0,
            qos: 0,
            spoofchk: true,
            trust: false,
            min_rate: 10,
            max_rate: 0,
        };
        let s = SriovInfo {
            vlan: Some(100),
            qos: Some(5),
            trust: Some(true),
            max_rate: Some(1000),
            ..Default::default()
        };
        let mac: Mac = "02:11:22:33:44:55".parse().unwrap();
        let set = vf_wanted(&s, mac, &saved);
        assert_eq!(
            set,
            VfSet {
                mac: Some(mac),
                vlan: Some((100, 5)),
                spoofchk: None,
                trust: Some(true),
                rate: Some((10, 1000)),
            }
        );
        assert_eq!(
            vf_restore(&set, &saved),
            VfSet {
                mac: Some(saved.mac),
                vlan: Some((0, 0)),
                spoofchk: None,
                trust: Some(false),
                rate: Some((10, 0)),
            }
        );
        // The VF's own MAC kept: not set.
        assert_eq!(
            vf_wanted(&SriovInfo::default(), saved.mac, &saved),
            VfSet::default()
        );
    }
}
