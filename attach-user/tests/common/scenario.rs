//! [`Scenario`]: the macvlan tests' parents and endpoints, made as real
//! veth devices in the test's netns and written into freshly pinned maps.

use attach::datapath::Datapath;
use attach_common::{Endpoint, MacAddr, PARENT_F_PASSTHRU, ParentCfg};

use super::{
    PinGuard, fmt_mac, ifindex, ip_batch,
    lab::{Lab, Parent},
    parent_mac, pin_dir, veth,
};

struct ParentSpec {
    mac: MacAddr,
    passthru: bool,
}

struct EpSpec {
    parent: usize,
    mode: u8,
    mac: MacAddr,
    flags: u8,
    up: bool,
}

/// What a test needs: parents with endpoints. Device names: parents `p0`,
/// `p1`, ... (veth pairs with `p0peer`, ...), endpoint host veths `h1`, `h2`,
/// ... (peers `h1peer`, ... carry the endpoint MACs), and a stray veth `x0`
/// the datapath knows nothing about.
#[derive(Default)]
pub struct Scenario {
    parents: Vec<ParentSpec>,
    eps: Vec<EpSpec>,
}

impl Scenario {
    pub fn new() -> Self {
        Self::default()
    }

    /// A parent with macvlan-like endpoints.
    pub fn parent(mut self) -> Self {
        let i = self.parents.len();
        self.parents.push(ParentSpec {
            mac: parent_mac(i),
            passthru: false,
        });
        self
    }

    /// A parent whose one endpoint (add it next, `MODE_PASSTHRU`) takes every
    /// unicast frame.
    pub fn passthru_parent(mut self) -> Self {
        let i = self.parents.len();
        self.parents.push(ParentSpec {
            mac: parent_mac(i),
            passthru: true,
        });
        self
    }

    /// An endpoint on the last parent.
    pub fn endpoint(self, mode: u8, mac: MacAddr) -> Self {
        self.endpoint_with(mode, mac, 0)
    }

    /// An endpoint on the last parent, with `EP_F_*` flags.
    pub fn endpoint_with(mut self, mode: u8, mac: MacAddr, flags: u8) -> Self {
        assert!(!self.parents.is_empty(), "add a parent first");
        self.eps.push(EpSpec {
            parent: self.parents.len() - 1,
            mode,
            mac,
            flags,
            up: true,
        });
        self
    }

    /// Leaves the last endpoint's host veth down.
    pub fn down(mut self) -> Self {
        self.eps.last_mut().expect("an endpoint").up = false;
        self
    }

    /// Makes the devices (in the calling thread's netns) and fills the maps.
    pub fn build(self) -> Lab {
        // No IPv6 on the new devices: their own router solicitations, DAD
        // and MLD reports would add frames to the delivery counts.
        for knob in ["all", "default"] {
            let path = format!("/proc/sys/net/ipv6/conf/{knob}/disable_ipv6");
            std::fs::write(&path, "1").unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        let mut cmds = Vec::new();
        for (i, p) in self.parents.iter().enumerate() {
            cmds.push(format!(
                "link add p{i} address {} type veth peer name p{i}peer",
                fmt_mac(&p.mac)
            ));
            cmds.push(format!("link set p{i} up"));
            cmds.push(format!("link set p{i}peer up"));
        }
        for (j, e) in self.eps.iter().enumerate() {
            let n = j + 1;
            cmds.push(format!(
                "link add h{n} type veth peer name h{n}peer address {}",
                fmt_mac(&e.mac)
            ));
            cmds.push(format!("link set h{n}peer up"));
            if e.up {
                cmds.push(format!("link set h{n} up"));
            }
        }
        cmds.extend(veth("x0", None));
        ip_batch(&cmds);

        let parents: Vec<Parent> = self
            .parents
            .iter()
            .enumerate()
            .map(|(i, p)| Parent {
                ifindex: ifindex(&format!("p{i}")),
                mac: p.mac,
                passthru: p.passthru,
            })
            .collect();
        let eps: Vec<Endpoint> = self
            .eps
            .iter()
            .enumerate()
            .map(|(j, e)| Endpoint {
                host_ifindex: ifindex(&format!("h{}", j + 1)),
                parent_ifindex: parents[e.parent].ifindex,
                // Ids start at 1: id 0 is a bystander no frame may touch.
                id: j as u32 + 1,
                mac: e.mac,
                mode: e.mode,
                flags: e.flags,
            })
            .collect();

        let dir = pin_dir();
        let pins = PinGuard(dir.clone());
        let mut dp = Datapath::open(&dir).expect("open the datapath");
        for ep in &eps {
            dp.put_endpoint(ep).expect("put_endpoint");
        }
        for (slot, p) in parents.iter().enumerate() {
            let row: Vec<Endpoint> = eps
                .iter()
                .filter(|e| e.parent_ifindex == p.ifindex)
                .copied()
                .collect();
            dp.write_flood_row(slot as u32, &row)
                .expect("write_flood_row");
            let mut cfg = ParentCfg {
                slot: slot as u32,
                nports: row.len() as u32,
                mac: p.mac,
                ..Default::default()
            };
            if p.passthru {
                assert_eq!(row.len(), 1, "a passthru parent has one endpoint");
                cfg.flags = PARENT_F_PASSTHRU;
                cfg.passthru = row[0];
            }
            dp.put_parent(p.ifindex, &cfg).expect("put_parent");
        }
        Lab::new(
            dp,
            pins,
            parents,
            eps,
            self.eps.iter().map(|e| e.up).collect(),
        )
    }
}
