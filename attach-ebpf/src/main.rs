//! The attach datapath. One entry point per hook; the rules live in modules.
//!
//! Hooks, all on devices in the node's namespace:
//! - `attach_rx` (tcx ingress on a parent): frames from the wire.
//! - `attach_rx_xdp` (XDP on a parent, `xdp` datapath): the unicast fast path.
//! - `attach_ep_xdp` (XDP on an `xdp` endpoint's container-side veth, before
//!   Linux 5.13 only): passes all; its presence turns on the veth's NAPI,
//!   without which that kernel drops what the parent's XDP redirects in.
//! - `attach_tx` (tcx ingress on an endpoint's host-side veth): what the
//!   container sends.
//! - `attach_host` (tcx egress on a parent): what the node's own stack sends,
//!   for `--host-access` endpoints.
//! - `attach_ipvl_rx` (tcx ingress on a parent, before `attach_rx`): ipvlan
//!   ports, frames from the wire demuxed by destination IP.
//! - `attach_ipvl_tx` (tcx ingress on an ipvlan endpoint's host-side veth).
//! - `attach_sw` (tcx ingress on every port of an eBPF switch: container
//!   host-side veths and the uplink).
//! - `attach_br_guard` (tcx ingress on a native bridge port's host-side
//!   veth, with `--spoofchk on`): source checks before the kernel bridge.
//! - `attach_rt_tx` (tcx ingress on a router endpoint's host-side veth):
//!   gateway ARP/ND answers, forwarding by the node's tables.
//! - `attach_rt_in` (tcx ingress on a router uplink, last): what the node
//!   routes to a router endpoint goes straight in.
//! - `attach_nest_tx` (tcx ingress on an in-VM nested endpoint's veth):
//!   tag and send out of the VM's uplink.
//! - `attach_nest_rx` (tcx ingress on the VM's uplink, first): untag and
//!   deliver by VLAN.
//! - `attach_nest_tap` (tcx ingress on a VM's tap on the host, first):
//!   untag and switch as that VLAN's endpoint.
//! - `attach_cg_in` / `attach_cg_eg` (cgroup_skb ingress/egress on a `host`
//!   attachment's cgroup): count its sockets' traffic.
//!
//! The `bench_*` programs serve `attach bench` only (see `bench.rs`).
// On the host (clippy, `cargo check --workspace`) this is an empty std
// binary, so the rules still get checked.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// The bindings' constant types differ between the bpf and host targets, and
// the entry-point macros take raw context pointers.
#![allow(clippy::unnecessary_cast, clippy::not_unsafe_ptr_arg_deref)]

/// Whether flood rows are walked open-coded (see `kernel::walk`): not in
/// this build, for kernels with `bpf_loop` (5.17).
const OPEN_WALK: bool = false;

include!("hooks.rs");
