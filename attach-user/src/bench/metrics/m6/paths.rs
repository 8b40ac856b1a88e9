//! The decision paths M6 measures: for each, the program, the frame that
//! takes it, the verdict it must end with, and the calls that tell it
//! from the program's other paths in the instruction graph.

use crate::bench::generator::{PROG_BARE_TX, PROG_PEER};
use crate::datapath::{PROG_HOST, PROG_RX, PROG_RX_XDP, PROG_TX};

pub(super) const TC_ACT_UNSPEC: u32 = u32::MAX;
pub(super) const TC_ACT_REDIRECT: u32 = 7;
pub(super) const XDP_PASS: u32 = 2;
pub(super) const XDP_TX: u32 = 3;
pub(super) const XDP_REDIRECT: u32 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Hook {
    Tc,
    Xdp,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Frame {
    ToEndpoint,
    ToUncachedEndpoint,
    Unknown,
    Broadcast,
    FromEndpoint,
    EndpointToEndpoint,
    FromNode,
}

pub(super) struct PathDef {
    pub(super) id: &'static str,
    pub(super) what: &'static str,
    pub(super) prog: &'static str,
    pub(super) hook: Hook,
    pub(super) hot: bool,
    pub(super) frame: Frame,
    pub(super) min_endpoints: usize,
    pub(super) want: u32,
    /// The path passes this call (a substring of bpftool's disassembly) …
    pub(super) through: Option<&'static str>,
    /// … and none of these (besides subprogram calls and the non-linear
    /// header fallback, which no path here takes). `PARENTS_MAP` and
    /// `ENDPOINTS_MAP` stand for loading those maps: the unicast hot path
    /// finds its endpoint in the endpoint cache, without the endpoint table
    /// behind it or the parents map (only passthru parents need it).
    pub(super) avoid: &'static [&'static str],
}

pub(super) const PARENTS_MAP: &str = "@parents";
pub(super) const ENDPOINTS_MAP: &str = "@endpoints";

pub(super) const PATHS: [PathDef; 12] = [
    PathDef {
        id: "rx_unicast",
        what: "tc rx: unicast from the wire → endpoint (bpf_redirect_peer)",
        prog: PROG_RX,
        hook: Hook::Tc,
        hot: true,
        frame: Frame::ToEndpoint,
        min_endpoints: 1,
        want: TC_ACT_REDIRECT,
        through: Some("call bpf_redirect_peer#"),
        avoid: &[PARENTS_MAP, ENDPOINTS_MAP],
    },
    PathDef {
        id: "rx_uncached",
        what: "tc rx: unicast from the wire → endpoint not in the cache (table lookup)",
        prog: PROG_RX,
        hook: Hook::Tc,
        hot: false,
        frame: Frame::ToUncachedEndpoint,
        min_endpoints: 1,
        want: TC_ACT_REDIRECT,
        through: Some("call bpf_redirect_peer#"),
        avoid: &[PARENTS_MAP],
    },
    PathDef {
        id: "rx_unknown",
        what: "tc rx: unicast to no endpoint → the node's stack",
        prog: PROG_RX,
        hook: Hook::Tc,
        hot: false,
        frame: Frame::Unknown,
        min_endpoints: 1,
        want: TC_ACT_UNSPEC,
        through: None,
        avoid: &["call bpf_redirect"],
    },
    PathDef {
        id: "rx_broadcast",
        what: "tc rx: broadcast → a clone per endpoint of the parent, and the node",
        prog: PROG_RX,
        hook: Hook::Tc,
        hot: false,
        frame: Frame::Broadcast,
        min_endpoints: 1,
        want: TC_ACT_UNSPEC,
        through: None,
        avoid: &[],
    },
    PathDef {
        id: "xdp_unicast",
        what: "xdp rx: unicast from the wire → endpoint (devmap redirect)",
        prog: PROG_RX_XDP,
        hook: Hook::Xdp,
        hot: true,
        frame: Frame::ToEndpoint,
        min_endpoints: 1,
        want: XDP_REDIRECT,
        through: Some("redirect"),
        avoid: &[PARENTS_MAP, ENDPOINTS_MAP],
    },
    PathDef {
        id: "xdp_uncached",
        what: "xdp rx: unicast from the wire → endpoint not in the cache (table lookup)",
        prog: PROG_RX_XDP,
        hook: Hook::Xdp,
        hot: false,
        frame: Frame::ToUncachedEndpoint,
        min_endpoints: 1,
        want: XDP_REDIRECT,
        through: Some("redirect"),
        avoid: &[PARENTS_MAP],
    },
    PathDef {
        id: "xdp_broadcast",
        what: "xdp rx: broadcast → XDP_PASS (to tc)",
        prog: PROG_RX_XDP,
        hook: Hook::Xdp,
        hot: false,
        frame: Frame::Broadcast,
        min_endpoints: 1,
        want: XDP_PASS,
        through: None,
        avoid: &[],
    },
    PathDef {
        id: "tx_to_parent",
        what: "tc tx: endpoint → out of the parent (source check, bpf_redirect)",
        prog: PROG_TX,
        hook: Hook::Tc,
        hot: false,
        frame: Frame::FromEndpoint,
        min_endpoints: 1,
        want: TC_ACT_REDIRECT,
        through: Some("call bpf_redirect#"),
        avoid: &["bpf_clone_redirect"],
    },
    PathDef {
        id: "tx_local",
        what: "tc tx: endpoint → endpoint on the same parent (bridge mode, bpf_redirect_peer)",
        prog: PROG_TX,
        hook: Hook::Tc,
        hot: false,
        frame: Frame::EndpointToEndpoint,
        min_endpoints: 2,
        want: TC_ACT_REDIRECT,
        through: Some("call bpf_redirect_peer#"),
        avoid: &[],
    },
    PathDef {
        id: "host_to_wire",
        what: "tc host egress: the node's own unicast → the wire",
        prog: PROG_HOST,
        hook: Hook::Tc,
        hot: false,
        frame: Frame::FromNode,
        min_endpoints: 1,
        want: TC_ACT_UNSPEC,
        through: None,
        avoid: &["call bpf_redirect"],
    },
    PathDef {
        id: "ref_redirect_peer",
        what: "reference: a tc program doing only bpf_redirect_peer",
        prog: PROG_PEER,
        hook: Hook::Tc,
        hot: false,
        frame: Frame::ToEndpoint,
        min_endpoints: 1,
        want: TC_ACT_REDIRECT,
        through: Some("call bpf_redirect_peer#"),
        avoid: &[],
    },
    PathDef {
        id: "ref_xdp_tx",
        what: "reference: an XDP program doing only XDP_TX",
        prog: PROG_BARE_TX,
        hook: Hook::Xdp,
        hot: false,
        frame: Frame::ToEndpoint,
        min_endpoints: 1,
        want: XDP_TX,
        through: None,
        avoid: &[],
    },
];
