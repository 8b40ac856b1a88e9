//! Switch scenarios for the test runs: switches with container ports
//! `h1`, `h2`, ... (peers `h1peer`, ... carry the ports' MACs), each with a
//! VLAN and flags, and optionally one uplink `u0` (peer `u0peer`) on
//! switch 0. Port `i` (in the order added) has endpoint id `i + 1`. The
//! uplink may also be the parent of macvlan endpoints (after the ports:
//! `h{n}` on, ids going on), marked as the switch's (`PARENT_F_SWITCH`).

use attach::datapath::{Datapath, PROG_BR_GUARD, PROG_SW};
use attach_common::{
    DATAPATH_TC, Endpoint, FdbEntry, FdbKey, MacAddr, PARENT_F_SWITCH, ParentCfg, SW_AGEING_NS,
    SW_F_UPLINK, SwPort, Switch,
};

use super::{
    PinGuard, fmt_mac, ifindex, ip_batch,
    lab::{Lab, Parent},
    outcome::Outcome,
    pin_dir, veth,
};

/// The uplink's own MAC.
pub const UPLINK_MAC: MacAddr = [0x02, 0xaa, 0, 0, 0, 0x75];

struct PortSpec {
    switch_id: u32,
    mac: MacAddr,
    vlan: u16,
    flags: u8,
    ips: Vec<std::net::IpAddr>,
}

#[derive(Default)]
pub struct SwitchScenario {
    ports: Vec<PortSpec>,
    switch_id: u32,
    uplink: bool,
    /// Macvlan endpoints on the uplink: (MAC, mode).
    macvlans: Vec<(MacAddr, u8)>,
    /// Whether the uplink's parent config lacks `PARENT_F_SWITCH`.
    unmarked: bool,
}

impl SwitchScenario {
    /// Switch 0, no uplink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ports added from now on belong to switch `id`.
    pub fn switch(mut self, id: u32) -> Self {
        self.switch_id = id;
        self
    }

    /// A port with this MAC, access VLAN (0: none) and `SW_F_*` flags.
    pub fn port(mut self, mac: MacAddr, vlan: u16, flags: u8) -> Self {
        self.ports.push(PortSpec {
            switch_id: self.switch_id,
            mac,
            vlan,
            flags,
            ips: Vec::new(),
        });
        self
    }

    /// The last port may send from these addresses (`SW_F_IPCHK`).
    pub fn ips(mut self, ips: &[&str]) -> Self {
        self.ports.last_mut().expect("a port").ips =
            ips.iter().map(|s| s.parse().unwrap()).collect();
        self
    }

    /// Switch 0 gets the uplink `u0`.
    pub fn uplink(mut self) -> Self {
        self.uplink = true;
        self
    }

    /// A macvlan endpoint with this MAC and mode on the uplink (which it
    /// gets).
    pub fn macvlan(mut self, mac: MacAddr, mode: u8) -> Self {
        self.uplink = true;
        self.macvlans.push((mac, mode));
        self
    }

    /// The uplink's parent config without `PARENT_F_SWITCH`.
    pub fn unmarked(mut self) -> Self {
        self.unmarked = true;
        self
    }

    pub fn build(self) -> Lab {
        // No IPv6 on the new devices: their own router solicitations, DAD
        // and MLD reports would add frames to the delivery counts.
        for knob in ["all", "default"] {
            let path = format!("/proc/sys/net/ipv6/conf/{knob}/disable_ipv6");
            std::fs::write(&path, "1").unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        let mut cmds = [veth("u0", Some(&UPLINK_MAC)), veth("x0", None)].concat();
        let macs = self.ports.iter().map(|p| p.mac);
        for (j, mac) in macs.chain(self.macvlans.iter().map(|m| m.0)).enumerate() {
            let n = j + 1;
            cmds.push(format!(
                "link add h{n} type veth peer name h{n}peer address {}",
                fmt_mac(&mac)
            ));
            cmds.push(format!("link set h{n} up"));
            cmds.push(format!("link set h{n}peer up"));
        }
        ip_batch(&cmds);

        let up = Parent {
            ifindex: ifindex("u0"),
            mac: UPLINK_MAC,
            passthru: false,
        };
        let ports: Vec<SwPort> = self
            .ports
            .iter()
            .enumerate()
            .map(|(j, p)| SwPort {
                ifindex: ifindex(&format!("h{}", j + 1)),
                switch_id: p.switch_id,
                id: j as u32 + 1,
                vlan: p.vlan,
                flags: p.flags,
                allow: 0,
                mac: p.mac,
                _pad2: [0; 2],
            })
            .collect();
        let dir = pin_dir();
        let pins = PinGuard(dir.clone());
        let mut dp = Datapath::open(&dir).expect("open the datapath");
        for (port, spec) in ports.iter().zip(&self.ports) {
            dp.put_sw_port(port).expect("put_sw_port");
            dp.put_endpoint_ips(port.ifindex, &spec.ips)
                .expect("put_endpoint_ips");
        }
        let mut ids: Vec<u32> = ports.iter().map(|p| p.switch_id).collect();
        ids.push(0);
        ids.sort();
        ids.dedup();
        for id in ids {
            let row: Vec<SwPort> = ports
                .iter()
                .filter(|p| p.switch_id == id)
                .copied()
                .collect();
            dp.write_sw_flood(id, &row).expect("write_sw_flood");
            let uplink = if self.uplink && id == 0 {
                up.ifindex
            } else {
                0
            };
            dp.put_switch(
                id,
                &Switch {
                    nports: row.len() as u32,
                    uplink,
                    ageing_ns: SW_AGEING_NS,
                },
            )
            .expect("put_switch");
        }
        if self.uplink {
            dp.put_sw_port(&SwPort {
                ifindex: up.ifindex,
                switch_id: 0,
                id: u32::MAX,
                vlan: 0,
                flags: SW_F_UPLINK,
                allow: 0,
                mac: UPLINK_MAC,
                _pad2: [0; 2],
            })
            .expect("put the uplink");
        }
        // The harness counts by `Endpoint`: the ports, as endpoints.
        let mut eps = ports
            .iter()
            .map(|p| Endpoint {
                host_ifindex: p.ifindex,
                parent_ifindex: p.switch_id,
                id: p.id,
                mac: p.mac,
                mode: 0,
                flags: p.flags,
            })
            .collect::<Vec<_>>();
        let macvlans: Vec<Endpoint> = self
            .macvlans
            .iter()
            .enumerate()
            .map(|(j, &(mac, mode))| {
                let n = ports.len() + j + 1;
                Endpoint {
                    host_ifindex: ifindex(&format!("h{n}")),
                    parent_ifindex: up.ifindex,
                    id: n as u32,
                    mac,
                    mode,
                    flags: 0,
                }
            })
            .collect();
        if !macvlans.is_empty() {
            for ep in &macvlans {
                dp.put_endpoint(ep).expect("put_endpoint");
            }
            dp.write_flood_row(0, &macvlans).expect("write_flood_row");
            dp.put_parent(
                up.ifindex,
                &ParentCfg {
                    slot: 0,
                    nports: macvlans.len() as u32,
                    passthru: Endpoint::default(),
                    mac: UPLINK_MAC,
                    flags: if self.unmarked { 0 } else { PARENT_F_SWITCH },
                    datapath: DATAPATH_TC,
                    mtu: 1500,
                },
            )
            .expect("put_parent");
        }
        eps.extend(macvlans);
        let all_up = vec![true; eps.len()];
        Lab::new(dp, pins, vec![up], eps, all_up)
    }
}

impl Lab {
    /// `attach_sw` on port `i`'s host veth: what that container sends.
    pub fn sw(&mut self, i: usize, frame: &[u8]) -> Outcome {
        let h = self.eps[i].host_ifindex;
        self.tc(PROG_SW, h, 0, frame)
    }

    /// `attach_sw` on the uplink: a frame from the wire.
    pub fn sw_uplink(&mut self, frame: &[u8]) -> Outcome {
        let u = self.parents[0].ifindex;
        self.tc(PROG_SW, u, 0, frame)
    }

    /// `attach_br_guard` on port `i`'s host veth.
    pub fn guard(&mut self, i: usize, frame: &[u8]) -> Outcome {
        let h = self.eps[i].host_ifindex;
        self.tc(PROG_BR_GUARD, h, 0, frame)
    }

    pub fn uplink_ifindex(&self) -> u32 {
        self.parents[0].ifindex
    }

    /// The FDB entry of (switch, VLAN, MAC).
    pub fn fdb(&mut self, switch_id: u32, vlan: u16, mac: MacAddr) -> Option<FdbEntry> {
        self.dp
            .fdb_get(&FdbKey {
                switch_id,
                vlan,
                mac,
            })
            .expect("fdb lookup")
    }

    pub fn put_fdb(&mut self, switch_id: u32, vlan: u16, mac: MacAddr, entry: FdbEntry) {
        self.dp
            .fdb_put(
                &FdbKey {
                    switch_id,
                    vlan,
                    mac,
                },
                &entry,
            )
            .expect("fdb insert");
    }

    /// Which ports' containers received frames since `before` (from
    /// [`Lab::deliveries`]).
    pub fn delivered_since(&self, before: &[u64]) -> Vec<u64> {
        self.deliveries()
            .iter()
            .zip(before)
            .map(|(a, b)| a - b)
            .collect()
    }
}
