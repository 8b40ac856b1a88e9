//! rtnetlink, bound to one network namespace per connection.

use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::{
    AddressFamily,
    address::{AddressAttribute, AddressFlags},
    link::{
        AfSpecBridge, BridgeVlanInfoFlags, InfoBridge, InfoBridgePort, InfoData, InfoKind,
        InfoMacVlan, InfoPortData, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo,
        LinkLayerType, LinkMessage, MacVlanMode,
    },
    neighbour::{NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState},
};
use rtnetlink::{
    Handle, LinkBridgePort, LinkBridgeVlan, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder,
};

use crate::{
    addr::{IpNet, Mac},
    error::{Error, ErrorKind, Result},
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
    pub promisc: bool,
    /// `IFLA_INFO_KIND` ("veth", "macvlan", "bridge", ...), if any.
    pub kind: Option<String>,
    /// Whether the device has a controller (bridge, bond, ...).
    pub has_controller: bool,
    /// Its controller's index, if any.
    pub controller: Option<u32>,
    /// Whether it is an Ethernet device (`ARPHRD_ETHER`), as macvlan needs.
    pub ether: bool,
    /// A bridge's VLAN settings.
    pub bridge: Option<BridgeSettings>,
    /// A bridge port's `isolated` flag.
    pub port_isolated: Option<bool>,
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
    fn from_message(m: &LinkMessage) -> Self {
        let mut link = Link {
            index: m.header.index,
            name: String::new(),
            mac: Mac::default(),
            mtu: 0,
            up: m.header.flags.contains(LinkFlags::Up),
            promisc: m.header.flags.contains(LinkFlags::Promisc),
            kind: None,
            has_controller: false,
            controller: None,
            ether: m.header.link_layer_type == LinkLayerType::Ether,
            bridge: None,
            port_isolated: None,
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

    async fn get_one(&self, req: rtnetlink::LinkGetRequest) -> Result<Option<Link>> {
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

    /// Creates a veth pair: `host` here, `peer` directly inside `peer_ns`.
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
        match self.handle.link().del_with_message(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = Error::from(e);
                if e.kind == ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
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
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = Error::from(e);
                if e.kind == ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
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
        match self.handle.route().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = Error::from(e);
                if e.kind == ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
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
        match self.handle.neighbours().del(m).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = Error::from(e);
                if e.kind == ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
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
