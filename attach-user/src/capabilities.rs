//! `attach features`: the kernel features the engine uses, whether this
//! kernel has them, and what of ours works here, with every program checked
//! by the kernel's verifier.

use serde::Serialize;

use crate::features::{Feature, TcHooks, kernel_release, tc_hooks};

/// One line of `attach features`: a kernel feature and whether it is here.
#[derive(Debug, Serialize)]
pub struct FeatureLine {
    pub feature: Feature,
    pub what: &'static str,
    pub since: &'static str,
    pub present: bool,
    pub used_for: &'static str,
    /// What the engine does without it.
    pub without: &'static str,
}

/// Whether one of ours (a kind, a datapath, an option) works here.
#[derive(Debug, Serialize)]
pub struct Capability {
    pub name: &'static str,
    pub available: bool,
    /// How it works here (fallbacks taken), or why it cannot.
    pub note: String,
    /// The programs it runs (by their names in the object).
    #[serde(skip)]
    pub programs: &'static [&'static str],
}

/// `attach features`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    pub tc_hooks: TcHooks,
    pub node_id: Option<String>,
    pub features: Vec<FeatureLine>,
    pub capabilities: Vec<Capability>,
    /// Each program of the build this kernel gets, and whether its
    /// verifier accepts it; empty with the reason when none could be tried.
    pub programs: Vec<crate::verifier::ProgramCheck>,
    pub programs_error: Option<String>,
}

impl Report {
    /// Probes everything (`node_id`: the node's, if it has one yet).
    pub fn probe(node_id: Option<String>) -> Self {
        let features = Feature::ALL
            .iter()
            .map(|&f| FeatureLine {
                feature: f,
                what: f.what(),
                since: f.since(),
                present: f.present(),
                used_for: f.role().0,
                without: f.role().1,
            })
            .collect();
        let (programs, programs_error) = match crate::verifier::check_programs() {
            Ok(p) => (p, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        let mut capabilities = capabilities();
        // A kind whose programs the verifier refuses does not work here,
        // whatever the feature list says.
        for c in capabilities.iter_mut() {
            let refused = programs
                .iter()
                .find(|p| p.refused.is_some() && c.programs.contains(&p.program.as_str()));
            if let Some(p) = refused {
                c.available = false;
                c.note = format!("this kernel's verifier refuses {}", p.program);
            }
        }
        Self {
            kernel: kernel_release(),
            tc_hooks: tc_hooks(),
            node_id,
            features,
            capabilities,
            programs,
            programs_error,
        }
    }
}

fn capability(
    name: &'static str,
    needs: &[Feature],
    works: &str,
    programs: &'static [&'static str],
) -> Capability {
    match needs.iter().find(|f| !f.present()) {
        None => Capability {
            name,
            available: true,
            note: works.into(),
            programs,
        },
        Some(f) => Capability {
            name,
            available: false,
            programs,
            note: format!(
                "needs the {}{}",
                f.what(),
                match f.since() {
                    "-" => String::new(),
                    v => format!(" (Linux {v})"),
                }
            ),
        },
    }
}

/// How one of our ways works where the kernel has what it needs.
#[derive(Clone, Copy)]
enum Works {
    /// Our programs on tc hooks: tcx links or clsact filters, as the
    /// kernel has them.
    Hooks,
    Says(&'static str),
}

/// One way of ours to attach: what it needs of the kernel, how it works,
/// the programs it runs. `add` refuses a way whose needs are missing
/// (before it makes anything) and `attach features` lists every way, from
/// this one table.
pub struct Way {
    pub name: &'static str,
    pub needs: &'static [Feature],
    works: Works,
    pub programs: &'static [&'static str],
}

const EBPF: &[Feature] = &[Feature::Veth, Feature::Clsact];

/// Every way, in the order `attach features` lists them.
pub const WAYS: &[Way] = {
    use crate::datapath::progs::*;
    &[
        Way {
            name: "macvlan --backend ebpf --datapath tc",
            needs: EBPF,
            works: Works::Hooks,
            programs: &[PROG_RX, PROG_TX, PROG_HOST],
        },
        Way {
            name: "macvlan --backend ebpf --datapath xdp",
            // Before 5.13 (no NAPI by GRO on a veth) the container side
            // gets an XDP program of its own, attach_ep_xdp.
            needs: EBPF,
            works: Works::Hooks,
            programs: &[PROG_RX, PROG_TX, PROG_HOST, PROG_RX_XDP, PROG_EP_XDP],
        },
        Way {
            name: "macvlan --backend native",
            needs: &[Feature::Macvlan],
            works: Works::Says("the kernel's macvlan"),
            programs: &[],
        },
        Way {
            name: "ipvlan --backend ebpf",
            needs: EBPF,
            works: Works::Hooks,
            programs: &[PROG_IPVL_RX, PROG_IPVL_TX],
        },
        Way {
            name: "ipvlan --backend native",
            needs: &[Feature::Ipvlan],
            works: Works::Says("the kernel's ipvlan"),
            programs: &[],
        },
        Way {
            name: "bridge --backend ebpf",
            needs: EBPF,
            works: Works::Hooks,
            programs: &[PROG_SW],
        },
        Way {
            name: "bridge --backend native",
            needs: &[Feature::Bridge, Feature::Veth],
            works: Works::Says("a Linux bridge"),
            programs: &[PROG_BR_GUARD],
        },
        Way {
            name: "router --datapath ebpf",
            needs: EBPF,
            works: Works::Hooks,
            programs: &[PROG_RT_TX, PROG_RT_IN],
        },
        Way {
            name: "router --datapath kernel",
            needs: &[Feature::Veth],
            works: Works::Says("the node forwards"),
            programs: &[],
        },
        Way {
            name: "nested",
            needs: EBPF,
            works: Works::Hooks,
            programs: &[PROG_NEST_TX, PROG_NEST_RX],
        },
        // The VM's tap is given: no veth is made.
        Way {
            name: "nested-host",
            needs: &[Feature::Clsact],
            works: Works::Hooks,
            programs: &[PROG_NEST_TAP],
        },
        Way {
            name: "host",
            needs: &[],
            works: Works::Says("cgroup_skb counters"),
            programs: &[PROG_CG_IN, PROG_CG_EG],
        },
        Way {
            name: "container",
            needs: &[],
            works: Works::Says("a bind mount holds the namespace"),
            programs: &[],
        },
        Way {
            name: "sriov",
            needs: &[],
            works: Works::Says("the device moves in"),
            programs: &[],
        },
    ]
};

/// The way named `name` (one of [`WAYS`]).
pub fn way(name: &str) -> &'static Way {
    WAYS.iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no way named {name:?}"))
}

/// What of ours works on this kernel, and how.
pub fn capabilities() -> Vec<Capability> {
    let hooks = match tc_hooks() {
        TcHooks::Tcx => "tcx links",
        TcHooks::Clsact => "clsact filters",
    };
    WAYS.iter()
        .map(|w| {
            let works = match w.works {
                Works::Hooks => hooks,
                Works::Says(s) => s,
            };
            capability(w.name, w.needs, works, w.programs)
        })
        .collect()
}
