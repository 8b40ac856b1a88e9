//! The connection: one socket per network namespace; links looked up,
//! made (veth, macvlan, ipvlan), changed and deleted; bridge ports.

use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::{
    AddressFamily,
    address::AddressAttribute,
    link::{
        AfSpecBridge, BridgeVlanInfoFlags, InfoBridgePort, InfoData, InfoIpVlan, InfoKind,
        InfoMacVlan, InfoVeth, IpVlanFlags, IpVlanMode, LinkAttribute, LinkExtentMask, MacVlanMode,
    },
};
use rtnetlink::{Handle, LinkBridgePort, LinkBridgeVlan, LinkMessageBuilder, LinkUnspec};

use super::link::{Link, LinkChange, PortVlan};
use crate::{
    addr::Mac,
    error::{Error, ErrorKind, Result},
    netns::Netns,
};

/// A netlink connection whose socket lives in one network namespace.
#[derive(Clone)]
pub struct Rtnl {
    pub(super) handle: Handle,
    /// A second socket with strict checking (`NETLINK_GET_STRICT_CHK`), for
    /// the address dumps of one link: without it the kernel walks every
    /// link of the namespace (thousands beside endpoints' host sides) and
    /// the filter is applied here. Only these dumps use it: strict checking
    /// refuses requests the kernel otherwise lets through.
    strict: Handle,
}

/// A connection made in the calling thread's namespace: (ours, strict).
fn connect() -> std::io::Result<(
    rtnetlink::proto::Connection<netlink_packet_route::RouteNetlinkMessage>,
    Handle,
    rtnetlink::proto::Connection<netlink_packet_route::RouteNetlinkMessage>,
    Handle,
)> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    let (mut strict_conn, strict, _) = rtnetlink::new_connection()?;
    use netlink_sys::AsyncSocket;
    strict_conn
        .socket_mut()
        .socket_mut()
        .set_netlink_get_strict_chk(true)?;
    Ok((conn, handle, strict_conn, strict))
}

/// A deletion's result, where "already gone" counts as done.
pub(super) fn gone_ok(r: std::result::Result<(), rtnetlink::Error>) -> Result<()> {
    match r.map_err(Error::from) {
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

impl Rtnl {
    /// A connection in the calling thread's namespace (the node's).
    pub fn here() -> Result<Self> {
        let (conn, handle, strict_conn, strict) = connect()?;
        tokio::spawn(conn);
        tokio::spawn(strict_conn);
        Ok(Self { handle, strict })
    }

    /// A connection in `ns`: the socket is made on a thread inside it.
    pub fn in_netns(ns: &Netns) -> Result<Self> {
        let rt = tokio::runtime::Handle::current();
        let (conn, handle, strict_conn, strict) = ns.run(move || {
            let _guard = rt.enter();
            connect()
        })??;
        tokio::spawn(conn);
        tokio::spawn(strict_conn);
        Ok(Self { handle, strict })
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
        let mut req = self.strict.address().get().set_link_index_filter(index);
        // The kernel's filter (rtnetlink's own is applied to what comes back).
        req.message_mut().header.index = index;
        let mut s = req.execute();
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
    /// inside `peer_ns`. One queue each way on both ends, said outright: the
    /// kernel's default makes one queue per CPU and then brings the number in
    /// use down to one, and each end's lowering waits for an RCU grace period
    /// (two per attach, several milliseconds on a busy node); the pair works
    /// the same (one queue in use either way).
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
            .append_extra_attribute(LinkAttribute::NumTxQueues(1))
            .append_extra_attribute(LinkAttribute::NumRxQueues(1))
            .build();
        let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(host.to_owned())
            .mtu(mtu)
            .append_extra_attribute(LinkAttribute::NumTxQueues(1))
            .append_extra_attribute(LinkAttribute::NumRxQueues(1))
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
}
