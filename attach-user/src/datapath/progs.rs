//! The names of the object's programs (its entry points, one per hook; see
//! attach-ebpf's main.rs). A leaf: what asks about programs by name
//! (`attach features`) needs nothing else of the datapath.

pub const PROG_RX: &str = "attach_rx";
pub const PROG_TX: &str = "attach_tx";
pub const PROG_HOST: &str = "attach_host";
pub const PROG_RX_XDP: &str = "attach_rx_xdp";
/// Passes all, on an xdp endpoint's container side before Linux 5.13.
pub const PROG_EP_XDP: &str = "attach_ep_xdp";
pub const PROG_IPVL_RX: &str = "attach_ipvl_rx";
pub const PROG_IPVL_TX: &str = "attach_ipvl_tx";
pub const PROG_SW: &str = "attach_sw";
pub const PROG_BR_GUARD: &str = "attach_br_guard";
pub const PROG_RT_TX: &str = "attach_rt_tx";
pub const PROG_RT_IN: &str = "attach_rt_in";
pub const PROG_NEST_TX: &str = "attach_nest_tx";
pub const PROG_NEST_RX: &str = "attach_nest_rx";
pub const PROG_NEST_TAP: &str = "attach_nest_tap";
pub const PROG_CG_IN: &str = "attach_cg_in";
pub const PROG_CG_EG: &str = "attach_cg_eg";
