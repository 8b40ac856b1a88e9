//! Router scenarios for the test runs: an uplink `p0` (the node's
//! 10.77.0.254/24, fd77::fe/64, a permanent neighbour for the host on the
//! wire, a blackhole route), router endpoints `h1`, `h2`, ... (their
//! container sides `h1peer`, ... carry the endpoint MACs) with the node's
//! host route and permanent neighbour per address, and forwarding on.

use std::net::IpAddr;

use attach::datapath::{Datapath, PROG_RT_IN, PROG_RT_TX};
use attach_common::{EP_F_IPCHK, EP_F_SPOOFCHK, Endpoint, MacAddr, RouterPort};

use super::{
    PinGuard, fmt_mac, ifindex, ip_batch,
    lab::{Lab, Parent},
    outcome::Outcome,
    parent_mac, pin_dir, veth,
};

pub const EXT_MAC: MacAddr = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

/// The MAC of endpoint `i`'s container side.
pub const fn ep_mac(i: usize) -> MacAddr {
    [0x02, 0xc0, 0, 0, 0, i as u8 + 1]
}

/// The MAC of endpoint `i`'s host side (its gateway).
pub const fn gw_mac(i: usize) -> MacAddr {
    [0x02, 0x6a, 0, 0, 0, i as u8 + 1]
}

pub struct RouterScenario {
    eps: Vec<Vec<IpAddr>>,
}

impl RouterScenario {
    pub fn new() -> Self {
        Self { eps: Vec::new() }
    }

    /// An endpoint with these addresses (anti-spoofing on).
    pub fn endpoint(mut self, ips: &[&str]) -> Self {
        self.eps
            .push(ips.iter().map(|s| s.parse().unwrap()).collect());
        self
    }

    pub fn build(self) -> Lab {
        for knob in ["all", "default"] {
            let path = format!("/proc/sys/net/ipv6/conf/{knob}/addr_gen_mode");
            std::fs::write(&path, "1").unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        for (k, v) in [("ipv4/ip_forward", "1"), ("ipv6/conf/all/forwarding", "1")] {
            let path = format!("/proc/sys/net/{k}");
            std::fs::write(&path, v).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        let pmac = parent_mac(0);
        let mut cmds = vec!["link set lo up".to_owned()];
        cmds.extend([veth("p0", Some(&pmac)), veth("x0", None)].concat());
        for j in 0..self.eps.len() {
            let n = j + 1;
            cmds.push(format!(
                "link add h{n} address {} type veth peer name h{n}peer address {}",
                fmt_mac(&gw_mac(j)),
                fmt_mac(&ep_mac(j))
            ));
            cmds.push(format!("link set h{n} up"));
            cmds.push(format!("link set h{n}peer up"));
        }
        ip_batch(&cmds);
        let mut cmds = vec![
            "addr add 10.77.0.254/24 dev p0".into(),
            "addr add fd77::fe/64 dev p0 nodad".into(),
            format!(
                "neigh add 10.77.0.1 lladdr {} dev p0 nud permanent",
                fmt_mac(&EXT_MAC)
            ),
            format!(
                "neigh add fd77::1 lladdr {} dev p0 nud permanent",
                fmt_mac(&EXT_MAC)
            ),
            "route add blackhole 192.0.2.0/24".into(),
        ];
        for (j, ips) in self.eps.iter().enumerate() {
            for ip in ips {
                let plen = if ip.is_ipv4() { 32 } else { 128 };
                cmds.push(format!("route add {ip}/{plen} dev h{}", j + 1));
                cmds.push(format!(
                    "neigh add {ip} lladdr {} dev h{} nud permanent",
                    fmt_mac(&ep_mac(j)),
                    j + 1
                ));
            }
        }
        ip_batch(&cmds);

        let p = Parent {
            ifindex: ifindex("p0"),
            mac: pmac,
            passthru: false,
        };
        let eps: Vec<Endpoint> = (0..self.eps.len())
            .map(|j| Endpoint {
                host_ifindex: ifindex(&format!("h{}", j + 1)),
                parent_ifindex: p.ifindex,
                id: j as u32 + 1,
                mac: ep_mac(j),
                mode: 0,
                flags: EP_F_SPOOFCHK | EP_F_IPCHK,
            })
            .collect();
        let dir = pin_dir();
        let pins = PinGuard(dir.clone());
        let mut dp = Datapath::open(&dir).expect("open the datapath");
        for (j, (ep, ips)) in eps.iter().zip(&self.eps).enumerate() {
            dp.put_router_port(&RouterPort {
                ep: *ep,
                gw_mac: gw_mac(j),
                _pad: [0; 2],
            })
            .expect("put_router_port");
            dp.put_endpoint_ips(ep.host_ifindex, ips)
                .expect("put_endpoint_ips");
        }
        let up = vec![true; eps.len()];
        Lab::new(dp, pins, vec![p], eps, up)
    }
}

impl Lab {
    /// `attach_rt_tx` on endpoint `i`'s host veth, and the frame after.
    pub fn rt_tx(&mut self, i: usize, frame: &[u8]) -> (Outcome, Vec<u8>) {
        let h = self.eps[i].host_ifindex;
        self.tc_out(PROG_RT_TX, h, frame)
    }

    /// `attach_rt_in` on the uplink, and the frame after.
    pub fn rt_in(&mut self, frame: &[u8]) -> (Outcome, Vec<u8>) {
        let p = self.parent();
        self.tc_out(PROG_RT_IN, p, frame)
    }
}
