//! ipvlan scenarios for the test runs: one parent `p0` whose ipvlan port has
//! a mode and a flag, endpoints `h1`, `h2`, ... with their addresses (and
//! the node's state the programs read: a host route per address in the
//! endpoint table, forwarding on the host side), and the node's own
//! addresses and routes on `p0` for l3 routing.

use std::net::IpAddr;

use attach::datapath::{Datapath, PROG_IPVL_RX, PROG_IPVL_TX};
use attach_common::{EP_F_DOWN, Endpoint, IPVL_ROUTE_TABLE, IpvlanParent, MacAddr};

use super::{
    PinGuard, fmt_mac, ifindex, ip_batch,
    lab::{Lab, Parent},
    outcome::Outcome,
    parent_mac, pin_dir, run_with_input, veth,
};

/// The node's addresses on the parent.
pub const NODE_V4: &str = "10.77.0.254";
pub const NODE_V6: &str = "fd77::fe";
/// A host on the wire the node has a (permanent) neighbour entry for.
pub const EXT_V4: [u8; 4] = [10, 77, 0, 1];
pub const EXT_V6: &str = "fd77::1";
/// A network the node routes to a blackhole.
pub const BLACKHOLE_V4: [u8; 4] = [192, 0, 2, 7];

pub struct IpvlanScenario {
    mode: u8,
    flags: u8,
    eps: Vec<(Vec<IpAddr>, bool)>,
}

impl IpvlanScenario {
    /// A port in `mode` (`IPVL_MODE_*`) with `flags` (`IPVL_F_*`).
    pub fn new(mode: u8, flags: u8) -> Self {
        Self {
            mode,
            flags,
            eps: Vec::new(),
        }
    }

    /// An endpoint owning these addresses.
    pub fn endpoint(mut self, ips: &[&str]) -> Self {
        self.eps
            .push((ips.iter().map(|s| s.parse().unwrap()).collect(), true));
        self
    }

    /// The last endpoint's container side is down (its host veth has no
    /// carrier, so its routes are "linkdown").
    pub fn down(mut self) -> Self {
        self.eps.last_mut().expect("an endpoint").1 = false;
        self
    }

    pub fn build(self) -> Lab {
        // IPv6 on, without link-local addresses (so no DAD, no router
        // solicitations), as the engine sets up host-side veths.
        for knob in ["all", "default"] {
            let path = format!("/proc/sys/net/ipv6/conf/{knob}/addr_gen_mode");
            std::fs::write(&path, "1").unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        let pmac = parent_mac(0);
        // IPv6 routing wants the loopback device up.
        let mut cmds = vec!["link set lo up".to_owned()];
        cmds.extend([veth("p0", Some(&pmac)), veth("x0", None)].concat());
        for (j, (_, up)) in self.eps.iter().enumerate() {
            let n = j + 1;
            cmds.push(format!(
                "link add h{n} type veth peer name h{n}peer address {}",
                fmt_mac(&pmac)
            ));
            cmds.push(format!("link set h{n} up"));
            if *up {
                cmds.push(format!("link set h{n}peer up"));
            }
        }
        ip_batch(&cmds);
        // IPv6 forwarding joins the all-routers groups, and the node reports
        // them (MLD, repeated up to a second later) out of every host veth:
        // frames the delivery counts must not see.
        run_with_input(
            "nft",
            &["-f", "-"],
            "table ip6 no_mld_reports {\n chain out {\n  type filter hook output priority 0;\n  \
             icmpv6 type mld2-listener-report drop\n }\n}\n",
        );
        // IPv6 on (without link-locals) where the node needs it.
        let mut devs = vec!["p0".to_owned()];
        devs.extend((1..=self.eps.len()).map(|n| format!("h{n}")));
        for dev in &devs {
            for (k, v) in [
                ("ipv4/conf/{}/forwarding", "1"),
                ("ipv4/conf/{}/ignore_routes_with_linkdown", "1"),
                ("ipv6/conf/{}/addr_gen_mode", "1"),
                ("ipv6/conf/{}/forwarding", "1"),
                ("ipv6/conf/{}/ignore_routes_with_linkdown", "1"),
                ("ipv6/conf/{}/disable_ipv6", "0"),
            ] {
                let path = format!("/proc/sys/net/{}", k.replace("{}", dev));
                std::fs::write(&path, v).unwrap_or_else(|e| panic!("{path}: {e}"));
            }
        }
        let mut cmds = vec![
            format!("addr add {NODE_V4}/24 dev p0"),
            format!("addr add {NODE_V6}/64 dev p0 nodad"),
            "neigh add 10.77.0.1 lladdr 52:54:00:12:34:56 dev p0 nud permanent".into(),
            format!("neigh add {EXT_V6} lladdr 52:54:00:12:34:56 dev p0 nud permanent"),
            "route add blackhole 192.0.2.0/24".into(),
        ];
        for (j, (ips, _)) in self.eps.iter().enumerate() {
            for ip in ips {
                let plen = if ip.is_ipv4() { 32 } else { 128 };
                cmds.push(format!(
                    "route add {ip}/{plen} dev h{} table {IPVL_ROUTE_TABLE}",
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
                mac: pmac,
                mode: self.mode,
                // As the engine keeps it for kernels whose FIB lookup
                // cannot name a table (before 6.8).
                flags: if self.eps[j].1 { 0 } else { EP_F_DOWN },
            })
            .collect();
        let dir = pin_dir();
        let pins = PinGuard(dir.clone());
        let mut dp = Datapath::open(&dir).expect("open the datapath");
        for (ep, (ips, _)) in eps.iter().zip(&self.eps) {
            dp.put_port(ep).expect("put_port");
            for ip in ips {
                dp.put_ip(*ip, ep).expect("put_ip");
            }
        }
        dp.write_flood_row(0, &eps).expect("write_flood_row");
        dp.put_ipvlan_parent(
            p.ifindex,
            &IpvlanParent {
                slot: 0,
                nports: eps.len() as u32,
                mac: pmac,
                mode: self.mode,
                flags: self.flags,
            },
        )
        .expect("put_ipvlan_parent");
        let mut lab = Lab::new(
            dp,
            pins,
            vec![p],
            eps,
            self.eps.iter().map(|e| e.1).collect(),
        );
        // What the models read: the addresses each endpoint owns.
        lab.ips = self.eps.into_iter().map(|e| e.0).collect();
        lab
    }
}

impl Lab {
    /// `attach_ipvl_rx` on parent 0.
    pub fn ipvl_rx(&mut self, frame: &[u8]) -> Outcome {
        let p = self.parent();
        self.tc(PROG_IPVL_RX, p, 0, frame)
    }

    /// `attach_ipvl_tx` on endpoint `i`'s host veth.
    pub fn ipvl_tx(&mut self, i: usize, frame: &[u8]) -> Outcome {
        let h = self.eps[i].host_ifindex;
        self.tc(PROG_IPVL_TX, h, 0, frame)
    }

    /// `attach_ipvl_rx` on parent 0, and the frame as the program left it.
    pub fn ipvl_rx_out(&mut self, frame: &[u8]) -> (Outcome, Vec<u8>) {
        let p = self.parent();
        self.tc_out(PROG_IPVL_RX, p, frame)
    }

    pub fn parent_mac(&self) -> MacAddr {
        self.parents[0].mac
    }
}
