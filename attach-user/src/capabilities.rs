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

/// What of ours works on this kernel, and how.
pub fn capabilities() -> Vec<Capability> {
    use crate::datapath::progs::*;
    let hooks = match tc_hooks() {
        TcHooks::Tcx => "tcx links",
        TcHooks::Clsact => "clsact filters",
    };
    let ebpf = [Feature::Veth, Feature::Clsact];
    let xdp = [Feature::Veth, Feature::Clsact, Feature::VethGroNapi];
    let macvlan = &[PROG_RX, PROG_TX, PROG_HOST];
    vec![
        capability(
            "macvlan --backend ebpf --datapath tc",
            &ebpf,
            hooks,
            macvlan,
        ),
        capability(
            "macvlan --backend ebpf --datapath xdp",
            &xdp,
            hooks,
            &[PROG_RX, PROG_TX, PROG_HOST, PROG_RX_XDP],
        ),
        capability(
            "macvlan --backend native",
            &[Feature::Macvlan],
            "the kernel's macvlan",
            &[],
        ),
        capability(
            "ipvlan --backend ebpf",
            &ebpf,
            hooks,
            &[PROG_IPVL_RX, PROG_IPVL_TX],
        ),
        capability(
            "ipvlan --backend native",
            &[Feature::Ipvlan],
            "the kernel's ipvlan",
            &[],
        ),
        capability("bridge --backend ebpf", &ebpf, hooks, &[PROG_SW]),
        capability(
            "bridge --backend native",
            &[Feature::Bridge, Feature::Veth],
            "a Linux bridge",
            &[PROG_BR_GUARD],
        ),
        capability(
            "router --datapath ebpf",
            &ebpf,
            hooks,
            &[PROG_RT_TX, PROG_RT_IN],
        ),
        capability(
            "router --datapath kernel",
            &[Feature::Veth],
            "the node forwards",
            &[],
        ),
        capability("nested", &ebpf, hooks, &[PROG_NEST_TX, PROG_NEST_RX]),
        capability("nested-host", &ebpf, hooks, &[PROG_NEST_TAP]),
        capability(
            "host",
            &[],
            "cgroup_skb counters",
            &[PROG_CG_IN, PROG_CG_EG],
        ),
        capability("container", &[], "a bind mount holds the namespace", &[]),
        capability("sriov", &[], "the device moves in", &[]),
    ]
}
