//! The tables of the other kinds: ipvlan's addresses and ports, the
//! router's ports, nested endpoints, and the eBPF switch (ports, switches,
//! flood rows, FDB). Each is a [`Table`](super::table::Table) opened
//! through its definition in attach-common.

use std::net::IpAddr;

use attach_common::{
    Endpoint, FdbEntry, FdbKey, IP4_EPS, IP6_EPS, IPVL_PARENTS, Ip4Key, Ip6Key, IpvlanParent,
    MAX_PORTS_PER_SWITCH, NEST_IDS, NEST_PORTS, NEST_VLANS, NestKey, NestedEp, RT_PORTS,
    RouterPort, SW_FDB, SW_FLOOD, SW_PORTS, SWITCHES, SwPort, Switch,
};

use super::node::Datapath;
use super::object::check_row_len;
use crate::error::Result;

impl Datapath {
    /// Makes `ep` the owner of `addr` on its parent's ipvlan port.
    pub fn put_ip(&mut self, addr: IpAddr, ep: &Endpoint) -> Result<()> {
        let parent_ifindex = ep.parent_ifindex;
        match addr {
            IpAddr::V4(a) => self.table(IP4_EPS)?.put(
                &Ip4Key {
                    parent_ifindex,
                    addr: a.octets(),
                },
                ep,
            ),
            IpAddr::V6(a) => self.table(IP6_EPS)?.put(
                &Ip6Key {
                    parent_ifindex,
                    addr: a.octets(),
                },
                ep,
            ),
        }
    }

    /// Removes `addr` of `parent_ifindex` if the port on `host_ifindex`
    /// still owns it.
    pub fn remove_ip(
        &mut self,
        parent_ifindex: u32,
        addr: IpAddr,
        host_ifindex: u32,
    ) -> Result<()> {
        let owned = |e: &Endpoint| e.host_ifindex == host_ifindex;
        match addr {
            IpAddr::V4(a) => self.table(IP4_EPS)?.remove_if(
                &Ip4Key {
                    parent_ifindex,
                    addr: a.octets(),
                },
                owned,
            ),
            IpAddr::V6(a) => self.table(IP6_EPS)?.remove_if(
                &Ip6Key {
                    parent_ifindex,
                    addr: a.octets(),
                },
                owned,
            ),
        }
    }

    /// The ipvlan endpoint owning `addr` on `parent_ifindex`, if any.
    pub fn ip_owner(&mut self, parent_ifindex: u32, addr: IpAddr) -> Result<Option<Endpoint>> {
        match addr {
            IpAddr::V4(a) => self.table(IP4_EPS)?.get(&Ip4Key {
                parent_ifindex,
                addr: a.octets(),
            }),
            IpAddr::V6(a) => self.table(IP6_EPS)?.get(&Ip6Key {
                parent_ifindex,
                addr: a.octets(),
            }),
        }
    }

    pub fn ipvlan_parent(&mut self, ifindex: u32) -> Result<Option<IpvlanParent>> {
        self.table(IPVL_PARENTS)?.get(&ifindex)
    }

    pub fn put_ipvlan_parent(&mut self, ifindex: u32, port: &IpvlanParent) -> Result<()> {
        self.table(IPVL_PARENTS)?.put(&ifindex, port)
    }

    pub fn remove_ipvlan_parent(&mut self, ifindex: u32) -> Result<()> {
        self.table(IPVL_PARENTS)?.remove(&ifindex)
    }

    /// Enters a router port.
    pub fn put_router_port(&mut self, port: &RouterPort) -> Result<()> {
        self.table(RT_PORTS)?.put(&port.ep.host_ifindex, port)
    }

    pub fn remove_router_port(&mut self, host_ifindex: u32) -> Result<()> {
        self.table(RT_PORTS)?.remove(&host_ifindex)
    }

    pub fn router_port(&mut self, host_ifindex: u32) -> Result<Option<RouterPort>> {
        self.table(RT_PORTS)?.get(&host_ifindex)
    }

    /// Enters a nested endpoint by its VLAN key (both roles).
    pub fn put_nest_vlan(&mut self, key: &NestKey, n: &NestedEp) -> Result<()> {
        self.table(NEST_VLANS)?.put(key, n)
    }

    /// Removes `key` if it still names the endpoint `id`.
    pub fn remove_nest_vlan(&mut self, key: &NestKey, id: u32) -> Result<()> {
        self.table(NEST_VLANS)?.remove_if(key, |n| n.ep.id == id)
    }

    pub fn nest_vlan(&mut self, key: &NestKey) -> Result<Option<NestedEp>> {
        self.table(NEST_VLANS)?.get(key)
    }

    /// Enters an in-VM nested endpoint's port (its host-side veth).
    pub fn put_nest_port(&mut self, n: &NestedEp) -> Result<()> {
        self.table(NEST_PORTS)?.put(&n.ep.host_ifindex, n)
    }

    pub fn remove_nest_port(&mut self, host_ifindex: u32) -> Result<()> {
        self.table(NEST_PORTS)?.remove(&host_ifindex)
    }

    pub fn nest_port(&mut self, host_ifindex: u32) -> Result<Option<NestedEp>> {
        self.table(NEST_PORTS)?.get(&host_ifindex)
    }

    /// Enters a host-side nested endpoint's tags by its endpoint id.
    pub fn put_nest_id(&mut self, n: &NestedEp) -> Result<()> {
        self.table(NEST_IDS)?.put(&n.ep.id, n)
    }

    pub fn remove_nest_id(&mut self, id: u32) -> Result<()> {
        self.table(NEST_IDS)?.remove(&id)
    }

    pub fn nest_id(&mut self, id: u32) -> Result<Option<NestedEp>> {
        self.table(NEST_IDS)?.get(&id)
    }

    /// A switch port (or uplink, or guarded native bridge port) by ifindex.
    pub fn sw_port(&mut self, ifindex: u32) -> Result<Option<SwPort>> {
        self.table(SW_PORTS)?.get(&ifindex)
    }

    pub fn put_sw_port(&mut self, port: &SwPort) -> Result<()> {
        self.table(SW_PORTS)?.put(&port.ifindex, port)
    }

    pub fn remove_sw_port(&mut self, ifindex: u32) -> Result<()> {
        self.table(SW_PORTS)?.remove(&ifindex)
    }

    pub fn switch(&mut self, id: u32) -> Result<Option<Switch>> {
        self.table(SWITCHES)?.get(&id)
    }

    pub fn put_switch(&mut self, id: u32, sw: &Switch) -> Result<()> {
        self.table(SWITCHES)?.put(&id, sw)
    }

    pub fn remove_switch(&mut self, id: u32) -> Result<()> {
        self.table(SWITCHES)?.remove(&id)
    }

    /// Writes switch `id`'s flood row. Callers then publish the new count
    /// in the switch's entry.
    pub fn write_sw_flood(&mut self, id: u32, ports: &[SwPort]) -> Result<()> {
        check_row_len(ports.len(), MAX_PORTS_PER_SWITCH, "a switch", "ports")?;
        self.write_array(SW_FLOOD, id * MAX_PORTS_PER_SWITCH, ports)
    }

    /// The switch flood row of `id`, its first `n` entries.
    pub fn sw_flood(&mut self, id: u32, n: u32) -> Result<Vec<SwPort>> {
        let row = self.array(SW_FLOOD)?;
        let base = id * MAX_PORTS_PER_SWITCH;
        (0..n.min(MAX_PORTS_PER_SWITCH))
            .map(|i| Ok(row.get(&(base + i), 0)?))
            .collect()
    }

    pub fn fdb_get(&mut self, key: &FdbKey) -> Result<Option<FdbEntry>> {
        self.table(SW_FDB)?.get(key)
    }

    pub fn fdb_put(&mut self, key: &FdbKey, entry: &FdbEntry) -> Result<()> {
        self.table(SW_FDB)?.put(key, entry)
    }

    /// Every FDB entry.
    pub fn fdb(&mut self) -> Result<Vec<(FdbKey, FdbEntry)>> {
        Ok(self.table(SW_FDB)?.iter().collect())
    }

    /// Removes the FDB entries `doomed` picks; returns how many.
    pub fn fdb_remove_where(
        &mut self,
        doomed: impl Fn(&FdbKey, &FdbEntry) -> bool,
    ) -> Result<usize> {
        let mut fdb = self.table(SW_FDB)?;
        let gone: Vec<FdbKey> = fdb
            .iter()
            .filter(|(k, e)| doomed(k, e))
            .map(|(k, _)| k)
            .collect();
        for k in &gone {
            fdb.remove(k)?;
        }
        Ok(gone.len())
    }
}
