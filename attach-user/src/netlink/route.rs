//! Addresses, routes, neighbours, policy rules and FDB entries of a
//! connection's namespace.

use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::{
    AddressFamily,
    address::{AddressAttribute, AddressFlags},
    neighbour::{NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState},
};
use rtnetlink::RouteMessageBuilder;

use super::conn::{Rtnl, gone_ok};
use crate::{
    addr::{IpNet, Mac},
    error::Result,
};

impl Rtnl {
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
        // Replace: idempotent, for repairs.
        self.handle.route().add(msg).replace().execute().await?;
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
        self.routes_via_in(index, 254).await
    }

    /// [`Self::routes_via`] in routing table `table_id`.
    pub async fn routes_via_in(&self, index: u32, table_id: u32) -> Result<Vec<(IpAddr, u8)>> {
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
                    && table == table_id
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
