//! What we read of a link and what we change on it, in one request each.

use netlink_packet_route::link::{
    InfoBridge, InfoBridgePort, InfoData, InfoPortData, LinkAttribute, LinkFlags, LinkInfo,
    LinkLayerType, LinkMessage, LinkXdp, MacVlanMode,
};

use crate::addr::Mac;

/// What we read of a link.
#[derive(Clone, Debug)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Mac,
    pub mtu: u32,
    pub up: bool,
    /// `IFF_LOWER_UP`: the device has carrier (a veth: its peer is up).
    pub carrier: bool,
    pub promisc: bool,
    /// `IFLA_INFO_KIND` ("veth", "macvlan", "bridge", ...), if any.
    pub kind: Option<String>,
    /// Whether the device has a controller (bridge, bond, ...).
    pub has_controller: bool,
    /// Its controller's index, if any.
    pub controller: Option<u32>,
    /// Whether it is an Ethernet device (`ARPHRD_ETHER`), as macvlan needs.
    pub ether: bool,
    /// The device it sits on (`IFLA_PARENT_DEV_NAME`: a PCI address for a
    /// NIC or VF) and that device's bus (`IFLA_PARENT_DEV_BUS_NAME`, "pci").
    pub parent_dev: Option<String>,
    pub parent_bus: Option<String>,
    /// `IFLA_PERM_ADDRESS`: the hardware's own MAC, if it has one.
    pub perm_mac: Option<Mac>,
    /// A bridge's VLAN settings.
    pub bridge: Option<BridgeSettings>,
    /// A bridge port's `isolated` flag.
    pub port_isolated: Option<bool>,
    /// The XDP programs attached (ids; one per mode: native, generic,
    /// offloaded).
    pub xdp_progs: Vec<u32>,
}

/// What we read of a Linux bridge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BridgeSettings {
    /// Whether the kernel has bridge VLAN filtering at all
    /// (CONFIG_BRIDGE_VLAN_FILTERING: it reports the VLAN settings).
    pub vlan_support: bool,
    pub vlan_filtering: bool,
    /// The VLAN new ports get (untagged, as their PVID); 0: none.
    pub default_pvid: u16,
}

/// A VLAN of a bridge port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortVlan {
    pub vid: u16,
    pub pvid: bool,
    pub untagged: bool,
}

impl Link {
    pub fn from_message(m: &LinkMessage) -> Self {
        let mut link = Link {
            index: m.header.index,
            name: String::new(),
            mac: Mac::default(),
            mtu: 0,
            up: m.header.flags.contains(LinkFlags::Up),
            carrier: m.header.flags.contains(LinkFlags::LowerUp),
            promisc: m.header.flags.contains(LinkFlags::Promisc),
            kind: None,
            has_controller: false,
            controller: None,
            ether: m.header.link_layer_type == LinkLayerType::Ether,
            bridge: None,
            port_isolated: None,
            parent_dev: None,
            parent_bus: None,
            perm_mac: None,
            xdp_progs: Vec::new(),
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Address(b) => link.mac = Mac::from(b.as_slice()),
                LinkAttribute::Mtu(v) => link.mtu = *v,
                LinkAttribute::Controller(c) => {
                    link.has_controller = true;
                    link.controller = Some(*c);
                }
                LinkAttribute::Xdp(xdp) => {
                    for x in xdp {
                        match x {
                            LinkXdp::ProgId(id)
                            | LinkXdp::DrvProgId(id)
                            | LinkXdp::SkbProgId(id)
                            | LinkXdp::HwProgId(id)
                                if *id != 0 && !link.xdp_progs.contains(id) =>
                            {
                                link.xdp_progs.push(*id)
                            }
                            _ => {}
                        }
                    }
                }
                LinkAttribute::ParentDevName(n) => link.parent_dev = Some(n.clone()),
                LinkAttribute::ParentDevBusName(n) => link.parent_bus = Some(n.clone()),
                LinkAttribute::PermAddress(b) => {
                    let m = Mac::from(b.as_slice());
                    link.perm_mac = (!m.is_zero()).then_some(m);
                }
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        match i {
                            LinkInfo::Kind(k) => link.kind = Some(k.to_string()),
                            LinkInfo::Data(InfoData::Bridge(b)) => {
                                let mut s = BridgeSettings::default();
                                for a in b {
                                    match a {
                                        InfoBridge::VlanFiltering(on) => s.vlan_filtering = *on,
                                        InfoBridge::VlanDefaultPvid(v) => {
                                            s.vlan_support = true;
                                            s.default_pvid = *v;
                                        }
                                        InfoBridge::VlanProtocol(_) => s.vlan_support = true,
                                        _ => {}
                                    }
                                }
                                link.bridge = Some(s);
                            }
                            LinkInfo::PortData(InfoPortData::BridgePort(p)) => {
                                for a in p {
                                    if let InfoBridgePort::Isolated(on) = a {
                                        link.port_isolated = Some(*on);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// Changes to apply to a link in one request.
#[derive(Default, Debug, Clone)]
pub struct LinkChange {
    pub name: Option<String>,
    pub mac: Option<Mac>,
    pub mtu: Option<u32>,
    pub up: Option<bool>,
    pub promisc: Option<bool>,
    /// `false`: `arp off` (IFF_NOARP).
    pub arp: Option<bool>,
}

pub fn macvlan_mode(mode: &str) -> MacVlanMode {
    match mode {
        "private" => MacVlanMode::Private,
        "vepa" => MacVlanMode::Vepa,
        "passthru" => MacVlanMode::Passthrough,
        _ => MacVlanMode::Bridge,
    }
}
