// The modules and the entry points, shared by the two builds of the
// programs (`main.rs`: kernels with `bpf_loop`; `compat.rs`: before 5.17).
// Included, not a module: each binary is its own crate root, so
// `crate::OPEN_WALK` is that build's constant.

mod admit;
mod bench;
mod bw;
mod cgroup;
mod eth;
mod events;
mod fib;
mod flood;
mod ipvlan;
mod kernel;
mod l3;
mod macvlan;
mod maps;
mod neigh;
mod nested;
mod peers;
mod proto;
mod router;
mod skb;
mod spoof;
mod stats;
mod switch;
mod swpeers;
mod tc_br_guard;
mod tc_host;
mod tc_ipvlan_rx;
mod tc_ipvlan_tx;
mod tc_nested_rx;
mod tc_nested_tap;
mod tc_nested_tx;
mod tc_router_in;
mod tc_router_tx;
mod tc_rx;
mod tc_switch;
mod tc_tx;
mod xdp_rx;
mod xmit;

use aya_ebpf::{
    macros::{cgroup_skb, classifier, xdp},
    programs::{SkBuffContext, TcContext, XdpContext},
};

#[classifier]
pub fn attach_rx(ctx: TcContext) -> i32 {
    tc_rx::run(&ctx)
}

#[classifier]
pub fn attach_tx(ctx: TcContext) -> i32 {
    tc_tx::run(&ctx)
}

#[classifier]
pub fn attach_host(ctx: TcContext) -> i32 {
    tc_host::run(&ctx)
}

#[classifier]
pub fn attach_ipvl_rx(ctx: TcContext) -> i32 {
    tc_ipvlan_rx::run(&ctx)
}

#[classifier]
pub fn attach_ipvl_tx(ctx: TcContext) -> i32 {
    tc_ipvlan_tx::run(&ctx)
}

#[classifier]
pub fn attach_sw(ctx: TcContext) -> i32 {
    tc_switch::run(&ctx)
}

#[classifier]
pub fn attach_br_guard(ctx: TcContext) -> i32 {
    tc_br_guard::run(&ctx)
}

#[classifier]
pub fn attach_rt_tx(ctx: TcContext) -> i32 {
    tc_router_tx::run(&ctx)
}

#[classifier]
pub fn attach_rt_in(ctx: TcContext) -> i32 {
    tc_router_in::run(&ctx)
}

#[classifier]
pub fn attach_nest_tx(ctx: TcContext) -> i32 {
    tc_nested_tx::run(&ctx)
}

#[classifier]
pub fn attach_nest_rx(ctx: TcContext) -> i32 {
    tc_nested_rx::run(&ctx)
}

#[classifier]
pub fn attach_nest_tap(ctx: TcContext) -> i32 {
    tc_nested_tap::run(&ctx)
}

#[xdp]
pub fn attach_rx_xdp(ctx: XdpContext) -> u32 {
    xdp_rx::run(&ctx)
}

/// On an `xdp` endpoint's container-side veth, on kernels before 5.13 only:
/// a veth there receives redirected XDP frames only while it runs NAPI,
/// which only an XDP program of its own turns on. It passes every frame.
#[xdp]
pub fn attach_ep_xdp(_ctx: XdpContext) -> u32 {
    aya_ebpf::bindings::xdp_action::XDP_PASS
}

#[classifier]
pub fn bench_peer(_ctx: TcContext) -> i32 {
    bench::peer()
}

#[classifier]
pub fn bench_out(_ctx: TcContext) -> i32 {
    bench::out()
}

#[xdp]
pub fn bench_tx(ctx: XdpContext) -> u32 {
    bench::tx(&ctx)
}

#[xdp]
pub fn bench_bare_tx(_ctx: XdpContext) -> u32 {
    bench::bare_tx()
}

#[xdp]
pub fn bench_drop(_ctx: XdpContext) -> u32 {
    bench::drop()
}

#[cgroup_skb(ingress)]
pub fn attach_cg_in(ctx: SkBuffContext) -> i32 {
    cgroup::ingress(&ctx)
}

#[cgroup_skb(egress)]
pub fn attach_cg_eg(ctx: SkBuffContext) -> i32 {
    cgroup::egress(&ctx)
}

// What each build needs besides its programs.

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
