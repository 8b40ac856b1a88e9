//! The endpoint tables of the macvlan switch (shared by the kinds built on
//! it): the receive table and its cache, ports, the device map, the
//! addresses an endpoint may send from, parents and their flood rows, and
//! the counters.

use std::net::IpAddr;

use attach_common::{
    CG_STATS, CgroupStats, Direction, ENDPOINTS, EP_IPS, EP_STATS, Endpoint, EndpointKey,
    EndpointStats, EpIpKey, IPVL_PARENTS, MAP_DEVS, MAP_EP_CACHE, MAX_PARENTS, PARENTS, PORTS,
    ParentCfg, TableDef, VERDICTS, Verdict,
};
use aya::{
    Pod,
    maps::{Map, PerCpuValues},
};

use super::devmap;
use super::node::Datapath;
use crate::ep_cache::EpCache;
use crate::error::{Error, Result};

/// The key of `ip` in the table of the addresses port `host_ifindex` may
/// send from.
fn ip_key(host_ifindex: u32, ip: &IpAddr) -> EpIpKey {
    match ip {
        IpAddr::V4(v4) => EpIpKey::v4(host_ifindex, v4.octets()),
        IpAddr::V6(v6) => EpIpKey::v6(host_ifindex, v6.octets()),
    }
}

impl Datapath {
    /// Enters an endpoint in the receive table, the port table and the devmap.
    pub fn put_endpoint(&mut self, ep: &Endpoint) -> Result<()> {
        self.table(PORTS)?.put(&ep.host_ifindex, ep)?;
        self.put_rx_entry(ep)?;
        devmap::put(self.map_mut(MAP_DEVS)?, ep.host_ifindex, ep.host_ifindex)
    }

    pub fn remove_endpoint(
        &mut self,
        parent_ifindex: u32,
        mac: [u8; 6],
        host_ifindex: u32,
    ) -> Result<()> {
        let key = EndpointKey::new(parent_ifindex, mac);
        // Only remove the receive entry if it is still this port's (a MAC can
        // be re-added by a newer endpoint).
        self.remove_rx_entry(&key, |e| e.host_ifindex == host_ifindex)?;
        self.table(PORTS)?.remove(&host_ifindex)?;
        devmap::remove(self.map_mut(MAP_DEVS)?, host_ifindex)
    }

    /// Enters the addresses an endpoint may send from.
    pub fn put_endpoint_ips(&mut self, host_ifindex: u32, ips: &[IpAddr]) -> Result<()> {
        let mut table = self.table(EP_IPS)?;
        for ip in ips {
            table.put(&ip_key(host_ifindex, ip), &1)?;
        }
        Ok(())
    }

    pub fn remove_endpoint_ips(&mut self, host_ifindex: u32, ips: &[IpAddr]) -> Result<()> {
        let mut table = self.table(EP_IPS)?;
        for ip in ips {
            table.remove(&ip_key(host_ifindex, ip))?;
        }
        Ok(())
    }

    /// Whether every one of `ips` is entered for the endpoint.
    pub fn has_endpoint_ips(&mut self, host_ifindex: u32, ips: &[IpAddr]) -> Result<bool> {
        let table = self.table(EP_IPS)?;
        Ok(ips
            .iter()
            .all(|ip| table.contains(&ip_key(host_ifindex, ip))))
    }

    /// Enters an ipvlan endpoint's port (who sends on its host-side veth).
    pub fn put_port(&mut self, ep: &Endpoint) -> Result<()> {
        self.table(PORTS)?.put(&ep.host_ifindex, ep)
    }

    pub fn remove_port(&mut self, host_ifindex: u32) -> Result<()> {
        self.table(PORTS)?.remove(&host_ifindex)
    }

    pub fn port(&mut self, host_ifindex: u32) -> Result<Option<Endpoint>> {
        self.table(PORTS)?.get(&host_ifindex)
    }

    pub fn endpoint(&mut self, parent_ifindex: u32, mac: [u8; 6]) -> Result<Option<Endpoint>> {
        self.table(ENDPOINTS)?
            .get(&EndpointKey::new(parent_ifindex, mac))
    }

    /// Enters an endpoint in the receive table only: a nested endpoint,
    /// whose `host_ifindex` (the VM's tap) is neither a port nor an XDP
    /// redirect target.
    pub fn put_rx_endpoint(&mut self, ep: &Endpoint) -> Result<()> {
        self.put_rx_entry(ep)
    }

    /// Removes the receive entry of `mac` on `parent_ifindex` if it is
    /// still endpoint `id`'s.
    pub fn remove_rx_endpoint(&mut self, parent_ifindex: u32, mac: [u8; 6], id: u32) -> Result<()> {
        let key = EndpointKey::new(parent_ifindex, mac);
        self.remove_rx_entry(&key, |e| e.id == id)
    }

    /// The endpoint cache, mapped (see [`crate::ep_cache`]).
    pub fn ep_cache(&mut self) -> Result<EpCache> {
        match self.map_mut(MAP_EP_CACHE)? {
            Map::Array(data) => EpCache::map(data),
            _ => Err(Error::system(format!("{MAP_EP_CACHE} is not an array map"))),
        }
    }

    /// Makes the endpoint cache agree with the receive table (see
    /// [`EpCache::sync`]).
    pub fn sync_ep_cache(&mut self) -> Result<crate::ep_cache::SyncReport> {
        let table = self.rx_entries()?;
        Ok(self.ep_cache()?.sync(&table))
    }

    /// Checks the cache slot of `(parent_ifindex, mac)` against the receive
    /// table's entry `want`: the slot must hold `want`, or another key (the
    /// slot was taken first); empty, it should have been filled.
    pub fn check_cached(&mut self, want: &Endpoint) -> Result<()> {
        let cache = self.ep_cache()?;
        let slot = attach_common::ep_cache_slot(want.parent_ifindex, &want.mac);
        let mac = crate::addr::Mac(want.mac);
        let Some(now) = cache.read(slot) else {
            return Err(Error::system(format!(
                "the endpoint cache's slot {slot} (for {mac}) was left half written"
            )));
        };
        let same_key = now.parent_ifindex == want.parent_ifindex && now.mac == want.mac;
        if same_key && now != *want {
            return Err(Error::system(format!(
                "the endpoint cache holds a stale entry for {mac} on parent ifindex {}",
                want.parent_ifindex
            )));
        }
        if crate::ep_cache::ENABLED && now.parent_ifindex == 0 {
            return Err(Error::system(format!(
                "{mac} is missing from the endpoint cache (its slot {slot} is free)"
            )));
        }
        Ok(())
    }

    /// Every entry of the receive table.
    pub fn rx_entries(&mut self) -> Result<Vec<(EndpointKey, Endpoint)>> {
        self.table(ENDPOINTS)?.entries()
    }

    /// Enters `ep` in the receive table, then in its cache slot.
    fn put_rx_entry(&mut self, ep: &Endpoint) -> Result<()> {
        self.table(ENDPOINTS)?
            .put(&EndpointKey::new(ep.parent_ifindex, ep.mac), ep)?;
        self.ep_cache()?.put(ep);
        Ok(())
    }

    /// Removes `key` from the receive table if its entry is still `owned`,
    /// out of its cache slot first (a slot never holds what the table lacks).
    pub(super) fn remove_rx_entry(
        &mut self,
        key: &EndpointKey,
        owned: impl Fn(&Endpoint) -> bool,
    ) -> Result<()> {
        if self.table(ENDPOINTS)?.holds(key, owned) {
            self.ep_cache()?.remove(key.parent_ifindex, &key.mac);
            self.table(ENDPOINTS)?.remove(key)?;
        }
        Ok(())
    }

    /// A flood-table row no macvlan parent and no ipvlan port uses.
    pub fn free_flood_slot(&mut self) -> Result<u32> {
        let mut used: Vec<u32> = self.parents()?.iter().map(|(_, c)| c.slot).collect();
        used.extend(self.table(IPVL_PARENTS)?.iter().map(|(_, p)| p.slot));
        (0..MAX_PARENTS)
            .find(|s| !used.contains(s))
            .ok_or_else(|| Error::conflict(format!("the node already uses {MAX_PARENTS} parents")))
    }

    pub fn parent(&mut self, ifindex: u32) -> Result<Option<ParentCfg>> {
        self.table(PARENTS)?.get(&ifindex)
    }

    pub fn parents(&mut self) -> Result<Vec<(u32, ParentCfg)>> {
        Ok(self.table(PARENTS)?.iter().collect())
    }

    pub fn put_parent(&mut self, ifindex: u32, cfg: &ParentCfg) -> Result<()> {
        self.table(PARENTS)?.put(&ifindex, cfg)
    }

    pub fn remove_parent(&mut self, ifindex: u32) -> Result<()> {
        self.table(PARENTS)?.remove(&ifindex)
    }

    /// Zeroes entry `id` of per-CPU array `def` on every CPU.
    fn zero_per_cpu<V: Pod + Default + Clone>(
        &mut self,
        def: TableDef<u32, V>,
        id: u32,
    ) -> Result<()> {
        let ncpus = aya::util::nr_cpus().map_err(|(_, e)| Error::from(e))?;
        self.per_cpu(def)?.set(
            id,
            PerCpuValues::try_from(vec![V::default(); ncpus.get() as usize])?,
            0,
        )?;
        Ok(())
    }

    /// Entry `id` of per-CPU array `def`, summed over CPUs by `add`.
    fn sum_per_cpu<V: Pod + Default>(
        &mut self,
        def: TableDef<u32, V>,
        id: u32,
        add: impl Fn(&mut V, &V),
    ) -> Result<V> {
        let mut sum = V::default();
        for v in self.per_cpu(def)?.get(&id, 0)?.iter() {
            add(&mut sum, v);
        }
        Ok(sum)
    }

    pub fn zero_stats(&mut self, id: u32) -> Result<()> {
        self.zero_per_cpu(EP_STATS, id)
    }

    /// An endpoint's counters, summed over CPUs.
    pub fn stats(&mut self, id: u32) -> Result<EndpointStats> {
        self.sum_per_cpu(EP_STATS, id, EndpointStats::add)
    }

    pub fn zero_cgroup_stats(&mut self, id: u32) -> Result<()> {
        self.zero_per_cpu(CG_STATS, id)
    }

    /// A `host` attachment's cgroup counters, summed over CPUs.
    pub fn cgroup_stats(&mut self, id: u32) -> Result<CgroupStats> {
        self.sum_per_cpu(CG_STATS, id, CgroupStats::add)
    }

    /// Every non-zero verdict counter, summed over CPUs.
    pub fn verdicts(&mut self) -> Result<Vec<(Direction, Verdict, u64)>> {
        // One batched read of every slot (a lookup each cost 90 syscalls).
        let slots = self.sum_per_cpu_u64(VERDICTS)?;
        let mut out = Vec::new();
        for dir in Direction::ALL {
            for v in Verdict::ALL {
                let n = slots.get(v.slot(dir) as usize).copied().unwrap_or(0);
                if n > 0 {
                    out.push((dir, v, n));
                }
            }
        }
        Ok(out)
    }

    /// Events the programs had no room for in the ring buffer, summed over
    /// directions and CPUs (since the verdict table was made).
    pub fn events_lost(&mut self) -> Result<u64> {
        let counters = self.per_cpu(VERDICTS)?;
        let mut n = 0u64;
        for dir in Direction::ALL {
            let slot = attach_common::events_lost_slot(dir);
            n += counters.get(&slot, 0)?.iter().sum::<u64>();
        }
        Ok(n)
    }
}
