//! Nested scenarios for the test runs.
//!
//! In the VM ([`VmScenario`]): an uplink `p0`, container veths `h1`, `h2`,
//! ... each on a VLAN (inside an S-tag or not).
//!
//! On the host ([`HostScenario`]): a parent `p0` whose macvlan switch has
//! veth endpoints (`h1`, ...) and nested endpoints, VLANs of the VM's tap
//! `t0` (its peer `t0peer` is the VM's uplink), in the order added.

use attach::datapath::{Datapath, PROG_NEST_RX, PROG_NEST_TAP, PROG_NEST_TX};
use attach_common::{
    EP_F_IPCHK, EP_F_NESTED, EP_F_SPOOFCHK, Endpoint, MODE_BRIDGE, MacAddr, NEST_F_HOST,
    NEST_F_KEEP_TAG, NestKey, NestedEp, ParentCfg,
};

use super::{
    PinGuard, fmt_mac, ifindex, ip_batch,
    lab::{Lab, Parent},
    outcome::Outcome,
    parent_mac, pin_dir, veth,
};

fn quiet() {
    // No IPv6 on the new devices: their own solicitations would add frames
    // to the delivery counts.
    for knob in ["all", "default"] {
        let path = format!("/proc/sys/net/ipv6/conf/{knob}/disable_ipv6");
        std::fs::write(&path, "1").unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

/// The VM side.
pub struct VmScenario {
    /// (MAC, VLAN, S-tag or 0)
    eps: Vec<(MacAddr, u16, u16)>,
}

impl VmScenario {
    pub fn new() -> Self {
        Self { eps: Vec::new() }
    }

    /// A container with `mac` on VLAN `vid` (inside S-tag `outer`, 0: none).
    pub fn endpoint(mut self, mac: MacAddr, vid: u16, outer: u16) -> Self {
        self.eps.push((mac, vid, outer));
        self
    }

    pub fn build(self) -> Lab {
        quiet();
        let pmac = parent_mac(0);
        let mut cmds = [veth("p0", Some(&pmac)), veth("x0", None)].concat();
        for (j, (mac, _, _)) in self.eps.iter().enumerate() {
            let n = j + 1;
            cmds.push(format!(
                "link add h{n} type veth peer name h{n}peer address {}",
                fmt_mac(mac)
            ));
            cmds.push(format!("link set h{n} up"));
            cmds.push(format!("link set h{n}peer up"));
        }
        ip_batch(&cmds);
        let p = Parent {
            ifindex: ifindex("p0"),
            mac: pmac,
            passthru: false,
        };
        let dir = pin_dir();
        let pins = PinGuard(dir.clone());
        let mut dp = Datapath::open(&dir).expect("open the datapath");
        let mut eps = Vec::new();
        for (j, &(mac, vid, outer)) in self.eps.iter().enumerate() {
            let ep = Endpoint {
                host_ifindex: ifindex(&format!("h{}", j + 1)),
                parent_ifindex: p.ifindex,
                id: j as u32 + 1,
                mac,
                mode: 0,
                flags: EP_F_SPOOFCHK,
            };
            let n = NestedEp {
                ep,
                vid,
                outer,
                flags: 0,
                _pad: [0; 3],
            };
            dp.put_nest_port(&n).expect("put_nest_port");
            dp.put_nest_vlan(
                &NestKey {
                    ifindex: p.ifindex,
                    outer,
                    vid,
                },
                &n,
            )
            .expect("put_nest_vlan");
            eps.push(ep);
        }
        let up = vec![true; eps.len()];
        Lab::new(dp, pins, vec![p], eps, up)
    }
}

enum HostEp {
    Veth(MacAddr),
    /// MAC, VLAN, S-tag (0: none), keep the tag.
    Nested(MacAddr, u16, u16, bool),
}

/// The host side.
pub struct HostScenario {
    eps: Vec<HostEp>,
}

impl HostScenario {
    pub fn new() -> Self {
        Self { eps: Vec::new() }
    }

    /// A veth (macvlan bridge) endpoint of the parent's switch.
    pub fn veth(mut self, mac: MacAddr) -> Self {
        self.eps.push(HostEp::Veth(mac));
        self
    }

    /// A nested endpoint: VLAN `vid` (in S-tag `outer`) of the tap.
    pub fn nested(mut self, mac: MacAddr, vid: u16, outer: u16, keep_tag: bool) -> Self {
        self.eps.push(HostEp::Nested(mac, vid, outer, keep_tag));
        self
    }

    pub fn build(self) -> Lab {
        quiet();
        let pmac = parent_mac(0);
        let mut cmds = [veth("p0", Some(&pmac)), veth("t0", None), veth("x0", None)].concat();
        for (j, e) in self.eps.iter().enumerate() {
            if let HostEp::Veth(mac) = e {
                let n = j + 1;
                cmds.push(format!(
                    "link add h{n} type veth peer name h{n}peer address {}",
                    fmt_mac(mac)
                ));
                cmds.push(format!("link set h{n} up"));
                cmds.push(format!("link set h{n}peer up"));
            }
        }
        ip_batch(&cmds);
        let p = Parent {
            ifindex: ifindex("p0"),
            mac: pmac,
            passthru: false,
        };
        let tap = ifindex("t0");
        let dir = pin_dir();
        let pins = PinGuard(dir.clone());
        let mut dp = Datapath::open(&dir).expect("open the datapath");
        let mut eps = Vec::new();
        for (j, e) in self.eps.iter().enumerate() {
            let id = j as u32 + 1;
            let ep = match *e {
                HostEp::Veth(mac) => {
                    let ep = Endpoint {
                        host_ifindex: ifindex(&format!("h{}", j + 1)),
                        parent_ifindex: p.ifindex,
                        id,
                        mac,
                        mode: MODE_BRIDGE,
                        flags: 0,
                    };
                    dp.put_endpoint(&ep).expect("put_endpoint");
                    ep
                }
                HostEp::Nested(mac, vid, outer, keep) => {
                    let ep = Endpoint {
                        host_ifindex: tap,
                        parent_ifindex: p.ifindex,
                        id,
                        mac,
                        mode: MODE_BRIDGE,
                        flags: EP_F_NESTED | EP_F_SPOOFCHK,
                    };
                    let n = NestedEp {
                        ep,
                        vid,
                        outer,
                        flags: NEST_F_HOST | if keep { NEST_F_KEEP_TAG } else { 0 },
                        _pad: [0; 3],
                    };
                    dp.put_nest_id(&n).expect("put_nest_id");
                    dp.put_nest_vlan(
                        &NestKey {
                            ifindex: tap,
                            outer,
                            vid,
                        },
                        &n,
                    )
                    .expect("put_nest_vlan");
                    dp.put_rx_endpoint(&ep).expect("put_rx_endpoint");
                    ep
                }
            };
            eps.push(ep);
        }
        dp.write_flood_row(0, &eps).expect("write_flood_row");
        dp.put_parent(
            p.ifindex,
            &ParentCfg {
                slot: 0,
                nports: eps.len() as u32,
                mac: pmac,
                ..Default::default()
            },
        )
        .expect("put_parent");
        let up = vec![true; eps.len()];
        Lab::new(dp, pins, vec![p], eps, up)
    }
}

/// A nested endpoint with addresses to check sources against.
pub fn with_ips(lab: &mut Lab, i: usize, ips: &[&str]) {
    let ep = &mut lab.eps[i];
    ep.flags |= EP_F_IPCHK;
    let ep = *ep;
    let ips: Vec<std::net::IpAddr> = ips.iter().map(|s| s.parse().unwrap()).collect();
    lab.dp
        .put_endpoint_ips(ep.ip_owner(), &ips)
        .expect("put_endpoint_ips");
    let mut n = lab.dp.nest_id(ep.id).unwrap().expect("a nested endpoint");
    n.ep = ep;
    lab.dp.put_nest_id(&n).unwrap();
    lab.dp
        .put_nest_vlan(
            &NestKey {
                ifindex: ep.host_ifindex,
                outer: n.outer,
                vid: n.vid,
            },
            &n,
        )
        .unwrap();
    lab.dp.put_rx_endpoint(&ep).unwrap();
}

impl Lab {
    /// `attach_nest_tx` on endpoint `i`'s veth (in the VM), and the frame after.
    pub fn nest_tx(&mut self, i: usize, frame: &[u8]) -> (Outcome, Vec<u8>) {
        let h = self.eps[i].host_ifindex;
        self.tc_out(PROG_NEST_TX, h, frame)
    }

    /// `attach_nest_rx` on the VM's uplink, and the frame after.
    pub fn nest_rx(&mut self, frame: &[u8]) -> (Outcome, Vec<u8>) {
        let p = self.parent();
        self.tc_out(PROG_NEST_RX, p, frame)
    }

    /// `attach_nest_tap` on the host's tap `t0`, and the frame after.
    pub fn nest_tap(&mut self, frame: &[u8]) -> (Outcome, Vec<u8>) {
        let t = ifindex("t0");
        self.tc_out(PROG_NEST_TAP, t, frame)
    }

    /// Frames the VM's side of the tap has received.
    pub fn tap_delivered(&self) -> u64 {
        let out = std::process::Command::new("ip")
            .args(["-j", "-s", "link", "show", "dev", "t0peer"])
            .output()
            .expect("run ip");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
        v[0]["stats64"]["rx"]["packets"].as_u64().unwrap_or(0)
    }
}
