//! Transmit admission, what every port's transmit hook does first: find
//! the port of the device the frame came in on, read the frame its
//! container sent and apply the port's source checks. Whatever fails is
//! dropped here, reported and counted on the port's endpoint; a device
//! that is no port of the hook's kind is passed on, counted `NotOurs`.
//!
//! [`sent`] is the prologue of `attach_tx`, `attach_nest_tx`, `attach_rt_tx`
//! and `attach_br_guard`; `attach_nest_tap` admits with [`admit`] once its
//! tags are off, and the switch checks its ports by the same [`Port`]
//! guard.

use attach_common::{
    Direction::Tx as DIR, Endpoint, NEST_F_HOST, NestedEp, RouterPort, SW_F_IPCHK, SW_F_SPOOFCHK,
    SwPort, Verdict,
};
use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    programs::TcContext,
};

use crate::{
    bw::{self, Way},
    eth::{self, EthHdr},
    events::{Pkt, report},
    maps::{NEST_PORTS, PORTS, RT_PORTS, SW_PORTS},
    skb,
    spoof::{self, Guard},
    stats,
};

/// A port a container sends through, as the admission sees it.
pub trait Port: Sized {
    /// The port on device `ifindex`, if it is one of this kind.
    fn find(ifindex: u32) -> Option<Self>;
    /// The endpoint id its counters are kept under.
    fn id(&self) -> u32;
    /// Its source checks.
    fn guard(&self) -> Guard;
}

impl Port for Endpoint {
    #[inline(always)]
    fn find(ifindex: u32) -> Option<Self> {
        // SAFETY: copied out at once.
        unsafe { PORTS.get(&ifindex) }.copied()
    }

    #[inline(always)]
    fn id(&self) -> u32 {
        self.id
    }

    #[inline(always)]
    fn guard(&self) -> Guard {
        Guard {
            mac: self.mac,
            owner: self.ip_owner(),
            flags: self.flags,
        }
    }
}

impl Port for NestedEp {
    #[inline(always)]
    fn find(ifindex: u32) -> Option<Self> {
        // SAFETY: copied out at once.
        let port = unsafe { NEST_PORTS.get(&ifindex) }.copied();
        // The host side of a nested endpoint (a tap) is not sent through.
        port.filter(|n| n.flags & NEST_F_HOST == 0)
    }

    #[inline(always)]
    fn id(&self) -> u32 {
        self.ep.id
    }

    #[inline(always)]
    fn guard(&self) -> Guard {
        self.ep.guard()
    }
}

impl Port for RouterPort {
    #[inline(always)]
    fn find(ifindex: u32) -> Option<Self> {
        // SAFETY: copied out at once.
        unsafe { RT_PORTS.get(&ifindex) }.copied()
    }

    #[inline(always)]
    fn id(&self) -> u32 {
        self.ep.id
    }

    #[inline(always)]
    fn guard(&self) -> Guard {
        self.ep.guard()
    }
}

/// A switch port (`SW_F_SPOOFCHK`, `SW_F_IPCHK`, with what it allows); its
/// addresses are kept under its device.
impl Port for SwPort {
    #[inline(always)]
    fn find(ifindex: u32) -> Option<Self> {
        // SAFETY: copied out at once.
        unsafe { SW_PORTS.get(&ifindex) }.copied()
    }

    #[inline(always)]
    fn id(&self) -> u32 {
        self.id
    }

    #[inline(always)]
    fn guard(&self) -> Guard {
        Guard {
            mac: self.mac,
            owner: self.ifindex,
            flags: (self.flags & (SW_F_SPOOFCHK | SW_F_IPCHK)) | self.allow,
        }
    }
}

/// An admitted frame: the device it came in on, its port, its header and
/// length.
pub struct Sent<P> {
    pub ifindex: u32,
    pub port: P,
    pub eth: EthHdr,
    pub len: u32,
}

impl<P> Sent<P> {
    /// What an event says about the frame, counted on `endpoint`.
    #[inline(always)]
    pub fn pkt(&self, endpoint: u32) -> Pkt<'_> {
        Pkt {
            ifindex: self.ifindex,
            endpoint,
            len: self.len,
            eth: &self.eth,
        }
    }
}

/// The transmit prologue: the port of the frame's device, and the frame
/// [`admit`]ted from it. Else the program's return: the frame passed on
/// (the device is no port of this kind), or dropped.
#[inline(always)]
pub fn sent<P: Port>(ctx: &TcContext) -> Result<Sent<P>, i32> {
    let ifindex = skb::ifindex(ctx);
    let Some(port) = P::find(ifindex) else {
        stats::verdict(DIR, Verdict::NotOurs);
        return Err(TC_ACT_UNSPEC);
    };
    let (eth, len) = admit(ctx, ifindex, &port)?;
    Ok(Sent {
        ifindex,
        port,
        eth,
        len,
    })
}

/// The header and length of what `port` sent on `ifindex`, if the frame
/// passes its source checks; else the program's return for the dropped
/// frame.
#[inline(always)]
pub fn admit<P: Port>(ctx: &TcContext, ifindex: u32, port: &P) -> Result<(EthHdr, u32), i32> {
    let Some(eth) = eth::read_tc(ctx) else {
        stats::verdict(DIR, Verdict::DropParse);
        stats::tx_dropped(port.id());
        return Err(TC_ACT_SHOT as i32);
    };
    let len = ctx.len();
    if let Err(why) = spoof::check(ctx, &port.guard(), &eth) {
        let pkt = Pkt {
            ifindex,
            endpoint: port.id(),
            len,
            eth: &eth,
        };
        return Err(drop(&pkt, why));
    }
    if !bw::pass(port.id(), Way::Out, len) {
        let pkt = Pkt {
            ifindex,
            endpoint: port.id(),
            len,
            eth: &eth,
        };
        return Err(drop(&pkt, Verdict::DropRateLimit));
    }
    Ok((eth, len))
}

/// Drops what an endpoint sent: reported, and counted on the endpoint.
#[inline(always)]
pub fn drop(pkt: &Pkt, why: Verdict) -> i32 {
    report(DIR, why, pkt);
    stats::tx_dropped(pkt.endpoint);
    TC_ACT_SHOT as i32
}
