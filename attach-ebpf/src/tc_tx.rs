//! Endpoint transmit (tcx ingress on the host-side veth): what a container
//! sends, admitted (`admit.rs`), then delivered locally or out of the
//! parent by its mode (`xmit.rs`).

use attach_common::Endpoint;
use aya_ebpf::programs::TcContext;

use crate::{admit, xmit};

pub fn run(ctx: &TcContext) -> i32 {
    match admit::sent::<Endpoint>(ctx) {
        Ok(s) => xmit::switch(ctx, s.ifindex, &s.port, &s.eth),
        Err(ret) => ret,
    }
}
