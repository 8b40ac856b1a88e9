//! rtnetlink, bound to one network namespace per connection.

use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::{
    AddressFamily,
    address::{AddressAttribute, AddressFlags},
    link::{
        AfSpecBridge, BridgeVlanInfoFlags, InfoBridge, InfoBridgePort, InfoData, InfoIpVlan,
        InfoKind, InfoMacVlan, InfoPortData, InfoVeth, IpVlanFlags, IpVlanMode, LinkAttribute,
        LinkExtentMask, LinkFlags, LinkInfo, LinkLayerType, LinkMessage, LinkVfInfo, LinkXdp,
        MacVlanMode, VfInfo, VfInfoMac, VfInfoRate, VfInfoSpoofCheck, VfInfoTrust, VfInfoVlan,
    },
    neighbour::{NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState},
};
use rtnetlink::{
    Handle, LinkBridgePort, LinkBridgeVlan, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder,
};

use crate::{
    addr::{IpNet, Mac},
    error::{Error, ErrorKind, Result},
    model::VfConfig,
    netns::Netns,
};

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

/// A netlink connection whose socket lives in one network namespace.
#[derive(Clone)]
pub struct Rtnl {
    handle: Handle,
}

/// A deletion's result, where "already gone" counts as done.
fn gone_ok(r: std::result::Result<(), rtnetlink::Error>) -> Result<()> {
    match r.map_err(Error::from) {
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

impl Rtnl {
    /// A connection in the calling thread's namespace (the node's).
    pub fn here() -> Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// A connection in `ns`: the socket is made on a thread inside it.
    pub fn in_netns(ns: &Netns) -> Result<Self> {
        let rt = tokio::runtime::Handle::current();
        let (conn, handle, _) = ns.run(move || {
            let _guard = rt.enter();
            rtnetlink::new_connection()
        })??;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    async fn get_one(&self, mut req: rtnetlink::LinkGetRequest) -> Result<Option<Link>> {
        // No counters: [`Link`] has none, and they are most of an answer.
        req.message_mut()
            .attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        match req.execute().try_next().await {
            Ok(Some(m)) => Ok(Some(Link::from_message(&m))),
            Ok(None) => Ok(None),
            Err(e) => {
                let e = Error::from(e);
                if e.kind == ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>> {
        self.get_one(self.handle.link().get().match_name(name.to_owned()))
            .await
    }

    pub async fn link_by_index(&self, index: u32) -> Result<Option<Link>> {
        self.get_one(self.handle.link().get().match_index(index))
            .await
    }

    pub async fn links(&self) -> Result<Vec<Link>> {
        let mut out = Vec::new();
        let mut s = self.handle.link().get().execute();
        while let Some(m) = s.try_next().await? {
            out.push(Link::from_message(&m));
        }
        Ok(out)
    }

    /// The addresses configured on a link.
    pub async fn addresses(&self, index: u32) -> Result<Vec<IpAddr>> {
        let mut out = Vec::new();
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(m) = s.try_next().await? {
            for a in &m.attributes {
                if let AddressAttribute::Address(ip) = a {
                    out.push(*ip);
                }
            }
        }
        Ok(out)
    }

    /// Creates a veth pair (both ends down): `host` here, `peer` directly
    /// inside `peer_ns`.
    pub async fn add_veth(
        &self,
        host: &str,
        peer: &str,
        peer_ns: &Netns,
        peer_mac: Mac,
        mtu: u32,
    ) -> Result<()> {
        use std::os::fd::AsRawFd;
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_owned())
            .address(peer_mac.0.to_vec())
            .mtu(mtu)
            .setns_by_fd(peer_ns.fd().as_raw_fd())
            .build();
        let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(host.to_owned())
            .mtu(mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        self.handle.link().add(msg).execute().await?;
        Ok(())
    }

    /// Creates a macvlan on `parent` (an index here) directly inside `ns`.
    pub async fn add_macvlan(
        &self,
        name: &str,
        parent: u32,
        mode: MacVlanMode,
        ns: &Netns,
        mac: Option<Mac>,
        mtu: u32,
    ) -> Result<()> {
        use std::os::fd::AsRawFd;
        let mut b = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::MacVlan)
            .name(name.to_owned())
            .link(parent)
            .mtu(mtu)
            .set_info_data(InfoData::MacVlan(vec![InfoMacVlan::Mode(mode)]))
            .setns_by_fd(ns.fd().as_raw_fd());
        if let Some(m) = mac {
            b = b.address(m.0.to_vec());
        }
        self.handle.link().add(b.build()).execute().await?;
        Ok(())
    }

    /// `ip link add NAME link PARENT type ipvlan mode MODE FLAG`, made in
    /// the node and moved into `ns` in the same message.
    pub async fn add_ipvlan(
        &self,
        name: &str,
        parent: u32,
        mode: IpVlanMode,
        flags: IpVlanFlags,
        ns: &Netns,
        mtu: u32,
    ) -> Result<()> {
        use std::os::fd::AsRawFd;
        let b = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::IpVlan)
            .name(name.to_owned())
            .link(parent)
            .mtu(mtu)
            .set_info_data(InfoData::IpVlan(vec![
                InfoIpVlan::Mode(mode),
                InfoIpVlan::Flags(flags),
            ]))
            .setns_by_fd(ns.fd().as_raw_fd());
        self.handle.link().add(b.build()).execute().await?;
        Ok(())
    }

    /// `ip link set IF master BRIDGE`.
    pub async fn set_controller(&self, index: u32, controller: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index)
            .controller(controller)
            .build();
        self.handle.link().set(msg).execute().await?;
        Ok(())
    }

    /// `ip link set IF type bridge_slave isolated on|off`.
    pub async fn set_port_isolated(&self, index: u32, on: bool) -> Result<()> {
        let msg = LinkBridgePort::new(index)
            .append_info_data(InfoBridgePort::Isolated(on))
            .build();
        self.handle.link().set_port(msg).execute().await?;
        Ok(())
    }

    /// `bridge vlan add dev IF vid VID [pvid] [untagged]`.
    pub async fn add_port_vlan(
        &self,
        index: u32,
        vid: u16,
        pvid: bool,
        untagged: bool,
    ) -> Result<()> {
        let mut flags = BridgeVlanInfoFlags::empty();
        if pvid {
            flags |= BridgeVlanInfoFlags::Pvid;
        }
        if untagged {
            flags |= BridgeVlanInfoFlags::Untagged;
        }
        let msg = LinkBridgeVlan::new(index).vlan(vid, flags).build();
        self.handle.link().set(msg).execute().await?;
        Ok(())
    }

    /// `bridge vlan del dev IF vid VID`; absent is not an error.
    pub async fn del_port_vlan(&self, index: u32, vid: u16) -> Result<()> {
        let msg = LinkBridgeVlan::new(index)
            .vlan(vid, BridgeVlanInfoFlags::empty())
            .build();
        gone_ok(self.handle.link().del_with_message(msg).execute().await)
    }

    /// The VLANs of bridge port `index` (`bridge vlan show dev IF`).
    pub async fn port_vlans(&self, index: u32) -> Result<Vec<PortVlan>> {
        let mut out = Vec::new();
        let mut s = self
            .handle
            .link()
            .get()
            .set_filter_mask(AddressFamily::Bridge, vec![LinkExtentMask::Brvlan])
            .execute();
        while let Some(m) = s.try_next().await? {
            if m.header.index != index {
                continue;
            }
            for a in &m.attributes {
                if let LinkAttribute::AfSpecBridge(specs) = a {
                    for spec in specs {
                        if let AfSpecBridge::VlanInfo(v) = spec {
                            out.push(PortVlan {
                                vid: v.vid,
                                pvid: v.flags.contains(BridgeVlanInfoFlags::Pvid),
                                untagged: v.flags.contains(BridgeVlanInfoFlags::Untagged),
                            });
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    pub async fn set_link(&self, index: u32, c: &LinkChange) -> Result<()> {
        let mut b = LinkUnspec::new_with_index(index);
        if let Some(n) = &c.name {
            b = b.name(n.clone());
        }
        if let Some(m) = c.mac {
            b = b.address(m.0.to_vec());
        }
        if let Some(m) = c.mtu {
            b = b.mtu(m);
        }
        if let Some(p) = c.promisc {
            b = b.promiscuous(p);
        }
        if let Some(a) = c.arp {
            b = b.arp(a);
        }
        match c.up {
            Some(true) => b = b.up(),
            Some(false) => b = b.down(),
            None => {}
        }
        self.handle.link().set(b.build()).execute().await?;
        Ok(())
    }

    /// Deletes a link; a link already gone is not an error.
    pub async fn del_link(&self, index: u32) -> Result<()> {
        gone_ok(self.handle.link().del(index).execute().await)
    }

    /// Adds an address; IPv6 ones skip duplicate address detection so they
    /// work at once (uniqueness is the engine's job, per parent).
    pub async fn add_addr(&self, index: u32, net: &IpNet) -> Result<()> {
        let mut req = self.handle.address().add(index, net.addr, net.prefix);
        if net.addr.is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute().await?;
        Ok(())
    }

    pub async fn add_default_route(&self, index: u32, gateway: IpAddr) -> Result<()> {
        let msg = match gateway {
            IpAddr::V4(gw) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
            IpAddr::V6(gw) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
        };
        self.handle.route().add(msg).execute().await?;
        Ok(())
    }

    /// A default route through the device itself (no gateway), of the
    /// family of `v6`: for NOARP links, whose neighbours are the link.
    pub async fn add_default_dev_route(&self, index: u32, v6: bool) -> Result<()> {
        let msg = if v6 {
            RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .output_interface(index)
                .build()
        } else {
            RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .output_interface(index)
                .scope(netlink_packet_route::route::RouteScope::Link)
                .build()
        };
        self.handle.route().add(msg).execute().await?;
        Ok(())
    }

    /// A host route to `addr` through the device, in routing table `table`.
    pub async fn add_host_route(&self, index: u32, addr: IpAddr, table: u32) -> Result<()> {
        let msg = match addr {
            IpAddr::V4(a) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(a, 32)
                .output_interface(index)
                .scope(netlink_packet_route::route::RouteScope::Link)
                .table_id(table)
                .build(),
            IpAddr::V6(a) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(a, 128)
                .output_interface(index)
                .table_id(table)
                .build(),
        };
        self.handle.route().add(msg).execute().await?;
        Ok(())
    }

    /// `ip route replace DEFAULT via GW dev IF onlink`: a gateway reached on
    /// the link whatever the interface's addresses (router endpoints'
    /// link-local gateways).
    pub async fn add_default_route_onlink(&self, index: u32, gateway: IpAddr) -> Result<()> {
        let msg = match gateway {
            IpAddr::V4(gw) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .onlink()
                .build(),
            IpAddr::V6(gw) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
        };
        self.handle.route().add(msg).replace().execute().await?;
        Ok(())
    }

    /// Deletes the connected route the kernel made for address `net` on
    /// device `index` (its prefix); absent is not an error.
    pub async fn del_prefix_route(&self, index: u32, net: &IpNet) -> Result<()> {
        use netlink_packet_route::route::{RouteProtocol, RouteScope};
        let mut msg = match net.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(net.prefix))
                    .unwrap_or(0);
                RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                    .destination_prefix((u32::from(a) & mask).into(), net.prefix)
                    .output_interface(index)
                    .build()
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(net.prefix))
                    .unwrap_or(0);
                RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                    .destination_prefix((u128::from(a) & mask).into(), net.prefix)
                    .output_interface(index)
                    .build()
            }
        };
        msg.header.protocol = RouteProtocol::Unspec;
        msg.header.scope = RouteScope::NoWhere;
        gone_ok(self.handle.route().del(msg).execute().await)
    }

    /// A host route to `addr` through the device in the main table,
    /// replacing one that exists (repair).
    pub async fn replace_host_route(&self, index: u32, addr: IpAddr) -> Result<()> {
        let msg = match addr {
            IpAddr::V4(a) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(a, 32)
                .output_interface(index)
                .scope(netlink_packet_route::route::RouteScope::Link)
                .build(),
            IpAddr::V6(a) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(a, 128)
                .output_interface(index)
                .build(),
        };
        self.handle.route().add(msg).replace().execute().await?;
        Ok(())
    }

    /// The destinations of the main table's routes out of device `index`,
    /// as (address, prefix length).
    pub async fn routes_via(&self, index: u32) -> Result<Vec<(IpAddr, u8)>> {
        use netlink_packet_route::route::{RouteAddress, RouteAttribute};
        let mut out = Vec::new();
        for msg in [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ] {
            let mut s = self.handle.route().get(msg).execute();
            while let Some(m) = s.try_next().await? {
                let mut dst = None;
                let mut oif = None;
                let mut table = u32::from(m.header.table);
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(RouteAddress::Inet(v4)) => {
                            dst = Some(IpAddr::V4(*v4))
                        }
                        RouteAttribute::Destination(RouteAddress::Inet6(v6)) => {
                            dst = Some(IpAddr::V6(*v6))
                        }
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        RouteAttribute::Table(t) => table = *t,
                        _ => {}
                    }
                }
                if let (Some(d), Some(i)) = (dst, oif)
                    && i == index
                    && table == 254
                {
                    out.push((d, m.header.destination_prefix_length));
                }
            }
        }
        Ok(out)
    }

    /// `ip neigh replace ADDR lladdr MAC dev IF nud permanent`.
    pub async fn add_permanent_neigh(&self, index: u32, addr: IpAddr, mac: Mac) -> Result<()> {
        self.handle
            .neighbours()
            .add(index, addr)
            .link_layer_address(&mac.0)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await?;
        Ok(())
    }

    /// The device of the main table's IPv4 default route, else of the
    /// IPv6 one.
    pub async fn default_route_device(&self) -> Result<Option<u32>> {
        use netlink_packet_route::route::{RouteAttribute, RouteType};
        for msg in [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ] {
            let mut s = self.handle.route().get(msg).execute();
            while let Some(m) = s.try_next().await? {
                let mut table = u32::from(m.header.table);
                let mut oif = None;
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Table(t) => table = *t,
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        _ => {}
                    }
                }
                if m.header.destination_prefix_length == 0
                    && table == 254
                    && m.header.kind == RouteType::Unicast
                    && let Some(i) = oif
                {
                    return Ok(Some(i));
                }
            }
        }
        Ok(None)
    }

    /// `ip [-6] rule add fwmark MARK lookup TABLE pref PRIORITY`; one that
    /// exists already is kept.
    pub async fn add_fwmark_rule(&self, v6: bool, mark: u32, table: u32, pref: u32) -> Result<()> {
        if self.fwmark_rule(v6, pref).await?.is_some() {
            return Ok(());
        }
        let req = self
            .handle
            .rule()
            .add()
            .fw_mark(mark)
            .table_id(table)
            .priority(pref)
            .action(netlink_packet_route::rule::RuleAction::ToTable);
        if v6 {
            req.v6().execute().await?;
        } else {
            req.v4().execute().await?;
        }
        Ok(())
    }

    async fn fwmark_rule(
        &self,
        v6: bool,
        pref: u32,
    ) -> Result<Option<netlink_packet_route::rule::RuleMessage>> {
        use netlink_packet_route::rule::RuleAttribute;
        let version = if v6 {
            rtnetlink::IpVersion::V6
        } else {
            rtnetlink::IpVersion::V4
        };
        let mut s = self.handle.rule().get(version).execute();
        while let Some(m) = s.try_next().await? {
            if m.attributes.contains(&RuleAttribute::Priority(pref)) {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }

    /// Removes the rule `add_fwmark_rule` made; absent is not an error.
    pub async fn del_fwmark_rule(&self, v6: bool, pref: u32) -> Result<()> {
        if let Some(m) = self.fwmark_rule(v6, pref).await? {
            self.handle.rule().del(m).execute().await?;
        }
        Ok(())
    }

    /// `bridge fdb add MAC dev IF self`: puts MAC in the device's unicast
    /// filter, as a macvlan does for its address.
    pub async fn fdb_self_add(&self, index: u32, mac: Mac) -> Result<()> {
        self.handle
            .neighbours()
            .add_bridge(index, &mac.0)
            .flags(NeighbourFlags::Own)
            .replace()
            .execute()
            .await?;
        Ok(())
    }

    /// Removes what `fdb_self_add` added; absent is not an error.
    pub async fn fdb_self_del(&self, index: u32, mac: Mac) -> Result<()> {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = index;
        m.header.flags = NeighbourFlags::Own;
        // The default fdb handler only deletes static entries.
        m.header.state = NeighbourState::Permanent;
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
        gone_ok(self.handle.neighbours().del(m).execute().await)
    }
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

pub fn macvlan_mode(mode: &str) -> MacVlanMode {
    match mode {
        "private" => MacVlanMode::Private,
        "vepa" => MacVlanMode::Vepa,
        "passthru" => MacVlanMode::Passthrough,
        _ => MacVlanMode::Bridge,
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
