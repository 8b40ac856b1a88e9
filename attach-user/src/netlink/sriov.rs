//! SR-IOV and device moves: what a VF's PF reports and is told
//! (IFLA_VFINFO_LIST), and moving a device between namespaces, with the
//! requests checked byte for byte.

use futures::TryStreamExt;
use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkMessage, LinkVfInfo, VfInfo, VfInfoMac, VfInfoRate,
    VfInfoSpoofCheck, VfInfoTrust, VfInfoVlan,
};
use rtnetlink::LinkUnspec;

use super::conn::Rtnl;
use crate::{addr::Mac, error::Result, netns::Netns};

/// A VF's settings as the PF reports them (`ip link show PF`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VfConfig {
    pub mac: Mac,
    pub vlan: u32,
    pub qos: u32,
    pub spoofchk: bool,
    pub trust: bool,
    pub min_rate: u32,
    pub max_rate: u32,
}

/// What to set on a VF through its PF; `None` leaves a setting alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VfSet {
    pub mac: Option<Mac>,
    /// (VLAN ID, 802.1p priority); (0, 0) turns VLAN tagging off.
    pub vlan: Option<(u32, u32)>,
    pub spoofchk: Option<bool>,
    pub trust: Option<bool>,
    /// (min, max) transmit rate in Mbit/s; 0 is unlimited.
    pub rate: Option<(u32, u32)>,
}

impl VfSet {
    pub fn is_empty(&self) -> bool {
        *self == VfSet::default()
    }
}

/// `ip link set PF vf N mac … vlan … qos … spoofchk … trust … min_tx_rate …
/// max_tx_rate …`: RTM_SETLINK on the PF with one IFLA_VFINFO_LIST holding
/// one IFLA_VF_INFO with an attribute per setting, in the order the kernel
/// applies them (`do_setvfinfo`).
pub fn vf_set_message(pf_index: u32, vf: u32, set: &VfSet) -> LinkMessage {
    let mut info = Vec::new();
    if let Some(m) = set.mac {
        info.push(VfInfo::Mac(VfInfoMac::new(vf, &m.0)));
    }
    if let Some((vlan, qos)) = set.vlan {
        info.push(VfInfo::Vlan(VfInfoVlan::new(vf, vlan, qos)));
    }
    if let Some((min, max)) = set.rate {
        info.push(VfInfo::Rate(VfInfoRate::new(vf, min, max)));
    }
    if let Some(on) = set.spoofchk {
        info.push(VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, on)));
    }
    if let Some(on) = set.trust {
        info.push(VfInfo::Trust(VfInfoTrust::new(vf, on)));
    }
    let mut m = LinkMessage::default();
    m.header.index = pf_index;
    m.attributes
        .push(LinkAttribute::VfInfoList(vec![LinkVfInfo(info)]));
    m
}

/// RTM_GETLINK of one link with `IFLA_EXT_MASK = RTEXT_FILTER_VF |
/// RTEXT_FILTER_SKIP_STATS`, so the answer lists its VFs
/// (`IFLA_VFINFO_LIST`) without their counters (a PF may have hundreds).
pub fn vf_get_message(pf_index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = pf_index;
    m.attributes.push(LinkAttribute::ExtMask(vec![
        LinkExtentMask::Vf,
        LinkExtentMask::SkipStats,
    ]));
    m
}

/// RTM_SETLINK moving a link into the namespace open as `ns_fd`
/// (`IFLA_NET_NS_FD`) under `name` (`IFLA_IFNAME`), as `ip link set IF
/// netns NS name NAME` does.
pub fn move_message(index: u32, ns_fd: i32, name: &str) -> LinkMessage {
    LinkUnspec::new_with_index(index)
        .setns_by_fd(ns_fd)
        .name(name.to_owned())
        .build()
}

/// VF `vf`'s settings in a PF's RTM_NEWLINK answer.
pub fn vf_config_of(m: &LinkMessage, vf: u32) -> Option<VfConfig> {
    let infos = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::VfInfoList(l) => Some(l),
        _ => None,
    })?;
    let info = infos.iter().find(|LinkVfInfo(i)| {
        i.iter()
            .any(|x| matches!(x, VfInfo::Mac(mac) if mac.vf_id == vf))
    })?;
    let mut c = VfConfig::default();
    for x in &info.0 {
        match x {
            VfInfo::Mac(m) => c.mac = Mac::from(&m.mac[..6]),
            VfInfo::Vlan(v) => {
                c.vlan = v.vlan_id;
                c.qos = v.qos;
            }
            VfInfo::SpoofCheck(s) => c.spoofchk = s.enabled,
            VfInfo::Trust(t) => c.trust = t.enabled,
            VfInfo::Rate(r) => {
                c.min_rate = r.min_tx_rate;
                c.max_rate = r.max_tx_rate;
            }
            _ => {}
        }
    }
    Some(c)
}

impl Rtnl {
    /// Moves a link into `ns` under `name` (see [`move_message`]).
    pub async fn move_link(&self, index: u32, ns: &Netns, name: &str) -> Result<()> {
        use std::os::fd::AsRawFd;
        let msg = move_message(index, ns.fd().as_raw_fd(), name);
        self.handle.link().set(msg).execute().await?;
        Ok(())
    }

    /// The settings of VF `vf` of the PF `pf_index`, as the PF reports them.
    pub async fn vf_config(&self, pf_index: u32, vf: u32) -> Result<Option<VfConfig>> {
        let mut req = self.handle.link().get().match_index(pf_index);
        *req.message_mut() = vf_get_message(pf_index);
        let Some(m) = req.execute().try_next().await? else {
            return Ok(None);
        };
        Ok(vf_config_of(&m, vf))
    }

    /// Sets VF `vf`'s settings through its PF (see [`vf_set_message`]).
    pub async fn set_vf(&self, pf_index: u32, vf: u32, set: &VfSet) -> Result<()> {
        if set.is_empty() {
            return Ok(());
        }
        self.handle
            .link()
            .set(vf_set_message(pf_index, vf, set))
            .execute()
            .await?;
        Ok(())
    }
}

/// The requests to a PF, byte for byte. Expected bytes are written out from
/// the kernel UAPI (`include/uapi/linux/{netlink,rtnetlink,if_link}.h`), not
/// from the library that builds them:
///
/// - `struct nlmsghdr { __u32 nlmsg_len; __u16 nlmsg_type; __u16
///   nlmsg_flags; __u32 nlmsg_seq; __u32 nlmsg_pid; }`, with RTM_GETLINK =
///   18, RTM_SETLINK = 19, NLM_F_REQUEST 0x1, NLM_F_ACK 0x4, NLM_F_EXCL
///   0x200, NLM_F_CREATE 0x400 (rtnetlink's `link().set()` sends all four;
///   the kernel's RTM_SETLINK ignores EXCL/CREATE);
/// - `struct ifinfomsg { unsigned char ifi_family; unsigned char __ifi_pad;
///   unsigned short ifi_type; int ifi_index; unsigned ifi_flags; unsigned
///   ifi_change; }`;
/// - `struct nlattr { __u16 nla_len; __u16 nla_type; }`, payload padded to
///   4 bytes; IFLA_IFNAME 3, IFLA_VFINFO_LIST 22, IFLA_NET_NS_FD 28,
///   IFLA_EXT_MASK 29 (`RTEXT_FILTER_VF` 1 | `RTEXT_FILTER_SKIP_STATS` 8); inside IFLA_VFINFO_LIST one
///   IFLA_VF_INFO (1) nest, holding IFLA_VF_MAC 1 (`struct ifla_vf_mac {
///   __u32 vf; __u8 mac[32]; }`), IFLA_VF_VLAN 2 (`struct ifla_vf_vlan {
///   __u32 vf; __u32 vlan; __u32 qos; }`), IFLA_VF_SPOOFCHK 4 (`struct
///   ifla_vf_spoofchk { __u32 vf; __u32 setting; }`), IFLA_VF_RATE 6
///   (`struct ifla_vf_rate { __u32 vf; __u32 min_tx_rate; __u32
///   max_tx_rate; }`), IFLA_VF_TRUST 9 (`struct ifla_vf_trust { __u32 vf;
///   __u32 setting; }`). All host byte order (these tests run on x86-64:
///   little endian).
#[cfg(test)]
mod wire_tests {
    use netlink_packet_core::{
        NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
    };
    use netlink_packet_route::RouteNetlinkMessage;

    use super::*;

    /// The bytes rtnetlink puts on the wire for `msg` (sequence number 1).
    fn wire(msg: RouteNetlinkMessage, flags: u16) -> Vec<u8> {
        let mut nl = NetlinkMessage::from(msg);
        nl.header.flags = flags;
        nl.header.sequence_number = 1;
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        buf
    }

    const SET_FLAGS: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE;

    /// A hand-written message: little-endian fields, appended in order.
    #[derive(Default)]
    struct Bytes(Vec<u8>);

    impl Bytes {
        fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        fn u16(mut self, v: u16) -> Self {
            self.0.extend(v.to_le_bytes());
            self
        }
        fn u32(mut self, v: u32) -> Self {
            self.0.extend(v.to_le_bytes());
            self
        }
        fn raw(mut self, v: &[u8]) -> Self {
            self.0.extend(v);
            self
        }
        /// nlmsghdr for a message of `len` bytes in all, sequence 1, pid 0.
        fn nlmsghdr(self, len: u32, ty: u16, flags: u16) -> Self {
            self.u32(len).u16(ty).u16(flags).u32(1).u32(0)
        }
        /// ifinfomsg: AF_UNSPEC, no type, `index`, no flags or change mask.
        fn ifinfomsg(self, index: i32) -> Self {
            self.u8(0).u8(0).u16(0).u32(index as u32).u32(0).u32(0)
        }
        fn nla(self, len: u16, ty: u16) -> Self {
            self.u16(len).u16(ty)
        }
    }

    const RTM_GETLINK: u16 = 18;
    const RTM_SETLINK: u16 = 19;
    const IFLA_IFNAME: u16 = 3;
    const IFLA_VFINFO_LIST: u16 = 22;
    const IFLA_NET_NS_FD: u16 = 28;
    const IFLA_EXT_MASK: u16 = 29;
    const IFLA_VF_INFO: u16 = 1;
    const IFLA_VF_MAC: u16 = 1;
    const IFLA_VF_VLAN: u16 = 2;
    const IFLA_VF_SPOOFCHK: u16 = 4;
    const IFLA_VF_RATE: u16 = 6;
    const IFLA_VF_TRUST: u16 = 9;

    /// `struct ifla_vf_mac`'s 32-byte MAC field.
    fn mac32(m: [u8; 6]) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[..6].copy_from_slice(&m);
        b
    }

    fn setlink(msg: LinkMessage) -> Vec<u8> {
        wire(RouteNetlinkMessage::SetLink(msg), SET_FLAGS)
    }

    const PF: u32 = 7;
    const VF: u32 = 3;
    const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

    #[test]
    fn every_vf_setting_in_one_request() {
        let set = VfSet {
            mac: Some(Mac(MAC)),
            vlan: Some((100, 5)),
            spoofchk: Some(false),
            trust: Some(true),
            rate: Some((0, 1000)),
        };
        // 16 nlmsghdr + 16 ifinfomsg + list(4 + info(4 + 40 + 16 + 16 + 12 + 12)).
        let want = Bytes::default()
            .nlmsghdr(136, RTM_SETLINK, 0x0605)
            .ifinfomsg(PF as i32)
            .nla(104, IFLA_VFINFO_LIST)
            .nla(100, IFLA_VF_INFO)
            .nla(40, IFLA_VF_MAC)
            .u32(VF)
            .raw(&mac32(MAC))
            .nla(16, IFLA_VF_VLAN)
            .u32(VF)
            .u32(100)
            .u32(5)
            .nla(16, IFLA_VF_RATE)
            .u32(VF)
            .u32(0)
            .u32(1000)
            .nla(12, IFLA_VF_SPOOFCHK)
            .u32(VF)
            .u32(0)
            .nla(12, IFLA_VF_TRUST)
            .u32(VF)
            .u32(1);
        assert_eq!(setlink(vf_set_message(PF, VF, &set)), want.0);
    }

    /// One message per setting alone, as a restore that changed one thing
    /// sends it.
    #[test]
    fn each_vf_setting_alone() {
        let only = |set: VfSet| setlink(vf_set_message(PF, VF, &set));
        // 16 + 16 + 4 + 4 + attribute.
        let head = |attr_len: u16| {
            let total = 40 + u32::from(attr_len);
            Bytes::default()
                .nlmsghdr(total, RTM_SETLINK, 0x0605)
                .ifinfomsg(PF as i32)
                .nla(8 + attr_len, IFLA_VFINFO_LIST)
                .nla(4 + attr_len, IFLA_VF_INFO)
        };
        assert_eq!(
            only(VfSet {
                mac: Some(Mac(MAC)),
                ..Default::default()
            }),
            head(40).nla(40, IFLA_VF_MAC).u32(VF).raw(&mac32(MAC)).0,
            "IFLA_VF_MAC"
        );
        assert_eq!(
            only(VfSet {
                vlan: Some((0, 0)),
                ..Default::default()
            }),
            head(16).nla(16, IFLA_VF_VLAN).u32(VF).u32(0).u32(0).0,
            "IFLA_VF_VLAN off"
        );
        assert_eq!(
            only(VfSet {
                vlan: Some((4094, 7)),
                ..Default::default()
            }),
            head(16).nla(16, IFLA_VF_VLAN).u32(VF).u32(4094).u32(7).0,
            "IFLA_VF_VLAN 4094 qos 7"
        );
        assert_eq!(
            only(VfSet {
                spoofchk: Some(true),
                ..Default::default()
            }),
            head(12).nla(12, IFLA_VF_SPOOFCHK).u32(VF).u32(1).0,
            "IFLA_VF_SPOOFCHK on"
        );
        assert_eq!(
            only(VfSet {
                trust: Some(false),
                ..Default::default()
            }),
            head(12).nla(12, IFLA_VF_TRUST).u32(VF).u32(0).0,
            "IFLA_VF_TRUST off"
        );
        assert_eq!(
            only(VfSet {
                rate: Some((10, 0)),
                ..Default::default()
            }),
            head(16).nla(16, IFLA_VF_RATE).u32(VF).u32(10).u32(0).0,
            "IFLA_VF_RATE unlimited"
        );
    }

    #[test]
    fn reading_the_vfs_asks_for_rtext_filter_vf() {
        let want = Bytes::default()
            .nlmsghdr(40, RTM_GETLINK, 0x0001)
            .ifinfomsg(PF as i32)
            .nla(8, IFLA_EXT_MASK)
            .u32(1 | 8);
        assert_eq!(
            wire(
                RouteNetlinkMessage::GetLink(vf_get_message(PF)),
                NLM_F_REQUEST
            ),
            want.0
        );
    }

    #[test]
    fn moving_a_device_names_the_namespace_fd_and_the_name() {
        // "attmp0001" + NUL = 10 bytes, padded to 12.
        let want = Bytes::default()
            .nlmsghdr(56, RTM_SETLINK, 0x0605)
            .ifinfomsg(12)
            .nla(8, IFLA_NET_NS_FD)
            .u32(9)
            .nla(14, IFLA_IFNAME)
            .raw(b"attmp0001\0\0\0");
        assert_eq!(setlink(move_message(12, 9, "attmp0001")), want.0);
    }

    /// A PF's answer (as a kernel would send it for VF 3 among two) parses
    /// back into the VF's settings.
    #[test]
    fn a_pf_answer_yields_the_vf_settings() {
        let vf_info = |vf: u32, mac: [u8; 6], vlan: u32, spoof: u32, trust: u32, max: u32| {
            Bytes::default()
                .nla(100, IFLA_VF_INFO)
                .nla(40, IFLA_VF_MAC)
                .u32(vf)
                .raw(&mac32(mac))
                .nla(16, IFLA_VF_VLAN)
                .u32(vf)
                .u32(vlan)
                .u32(0)
                .nla(16, IFLA_VF_RATE)
                .u32(vf)
                .u32(0)
                .u32(max)
                .nla(12, IFLA_VF_SPOOFCHK)
                .u32(vf)
                .u32(spoof)
                .nla(12, IFLA_VF_TRUST)
                .u32(vf)
                .u32(trust)
                .0
        };
        let list: Vec<u8> = [
            vf_info(2, [2, 0, 0, 0, 0, 2], 0, 1, 0, 0),
            vf_info(VF, MAC, 42, 0, 1, 500),
        ]
        .concat();
        let body = Bytes::default()
            .ifinfomsg(PF as i32)
            .nla(4 + list.len() as u16, IFLA_VFINFO_LIST)
            .raw(&list)
            .0;
        let total = 16 + body.len() as u32;
        let bytes = Bytes::default()
            .nlmsghdr(total, 16 /* RTM_NEWLINK */, 0)
            .raw(&body)
            .0;
        let nl = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes).unwrap();
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) = nl.payload else {
            panic!("not a link message: {nl:?}");
        };
        let c = vf_config_of(&m, VF).unwrap();
        assert_eq!(c.mac, Mac(MAC));
        assert_eq!((c.vlan, c.qos), (42, 0));
        assert!(!c.spoofchk && c.trust);
        assert_eq!((c.min_rate, c.max_rate), (0, 500));
        assert!(vf_config_of(&m, 5).is_none());
    }
}
