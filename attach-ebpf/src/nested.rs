//! Nested endpoints (containers inside a VM): reading, pushing and popping
//! the VLAN tags that tell them apart on the VM's uplink / tap.
//!
//! Tags are pushed and popped with `bpf_skb_vlan_push`/`pop`, which keep
//! the outermost tag in the skb's metadata (as the stack and NICs do) and
//! any inner one in the packet. On receive the stack has already moved the
//! outermost tag of a frame into the metadata before tc runs; a frame from
//! BPF_PROG_TEST_RUN carries its tags in the packet. Both are read here.

use attach_common::{Endpoint, NEST_F_KEEP_TAG, NestKey, NestedEp, Verdict};
use aya_ebpf::{
    EbpfContext,
    bindings::__sk_buff,
    helpers::{bpf_redirect, bpf_skb_vlan_pop, bpf_skb_vlan_push},
    programs::TcContext,
};

use crate::{
    maps::{NEST_IDS, NEST_VLANS},
    proto::{ETH_P_8021AD, ETH_P_8021Q},
};

/// A VLAN tag: its TPID (host order; 0: no tag) and VLAN id.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Tag {
    pub tpid: u16,
    pub vid: u16,
}

impl Tag {
    pub const NONE: Tag = Tag { tpid: 0, vid: 0 };
}

/// Whether the skb carries its outermost tag in its metadata.
#[inline(always)]
fn meta_tag(skb: *mut __sk_buff) -> Option<Tag> {
    // SAFETY: the context is a valid __sk_buff.
    let (present, proto, tci) =
        unsafe { ((*skb).vlan_present, (*skb).vlan_proto, (*skb).vlan_tci) };
    (present != 0).then(|| Tag {
        tpid: u16::from_be(proto as u16),
        vid: (tci & 0xfff) as u16,
    })
}

#[inline(always)]
fn is_vlan(tpid: u16) -> bool {
    tpid == ETH_P_8021Q || tpid == ETH_P_8021AD
}

/// The tag in the packet at `off` (the offset of a TPID), if it is one.
#[inline(always)]
fn data_tag(ctx: &TcContext, off: usize) -> Tag {
    match ctx.load::<[u8; 4]>(off) {
        Ok(t) if is_vlan(u16::from_be_bytes([t[0], t[1]])) => Tag {
            tpid: u16::from_be_bytes([t[0], t[1]]),
            vid: u16::from_be_bytes([t[2], t[3]]) & 0xfff,
        },
        _ => Tag::NONE,
    }
}

/// The outermost tag of the frame and the one inside it.
#[inline(always)]
pub fn tags(ctx: &TcContext) -> (Tag, Tag) {
    let skb = ctx.as_ptr() as *mut __sk_buff;
    match meta_tag(skb) {
        Some(outer) => (outer, data_tag(ctx, 12)),
        None => {
            let outer = data_tag(ctx, 12);
            if outer.tpid == 0 {
                (Tag::NONE, Tag::NONE)
            } else {
                (outer, data_tag(ctx, 16))
            }
        }
    }
}

/// The key a tagged frame is demuxed by on `ifindex`: an 802.1ad S-tag
/// with an 802.1Q tag inside (QinQ), or a lone 802.1Q tag. `None`: not a
/// shape nested endpoints use.
#[inline(always)]
pub fn key(ifindex: u32, outer: &Tag, inner: &Tag) -> Option<NestKey> {
    if outer.tpid == ETH_P_8021AD && inner.tpid == ETH_P_8021Q {
        Some(NestKey {
            ifindex,
            outer: outer.vid,
            vid: inner.vid,
        })
    } else if outer.tpid == ETH_P_8021Q {
        Some(NestKey {
            ifindex,
            outer: 0,
            vid: outer.vid,
        })
    } else {
        None
    }
}

#[inline(always)]
pub fn lookup(key: &NestKey) -> Option<NestedEp> {
    // SAFETY: copied out at once.
    unsafe { NEST_VLANS.get(key) }.copied()
}

/// Pushes an 802.1Q (or, `ad`, 802.1ad) tag. False if the helper failed.
#[inline(always)]
pub fn push(skb: *mut __sk_buff, ad: bool, vid: u16) -> bool {
    let tpid = if ad { ETH_P_8021AD } else { ETH_P_8021Q };
    // SAFETY: `skb` is the program's context.
    unsafe { bpf_skb_vlan_push(skb, tpid.to_be(), vid) == 0 }
}

/// Pops the outermost tag. False if the helper failed.
#[inline(always)]
pub fn pop(skb: *mut __sk_buff) -> bool {
    // SAFETY: `skb` is the program's context.
    unsafe { bpf_skb_vlan_pop(skb) == 0 }
}

/// Pops `n` (0 to 2) tags.
#[inline(always)]
pub fn pop_n(skb: *mut __sk_buff, n: u32) -> bool {
    (n < 1 || pop(skb)) && (n < 2 || pop(skb))
}

/// Pushes the tags a frame needs on the VM's tap to reach host-side nested
/// endpoint `cfg`, given the frame's outermost tag now: a stripping
/// endpoint takes untagged frames and gets its 802.1Q tag pushed; a
/// `--keep-tag` one takes frames already tagged with its VLAN. Then its
/// S-tag, if any. Returns how many tags were pushed, or `Err` with the
/// drop reason.
#[inline(always)]
pub fn push_for(skb: *mut __sk_buff, now: &Tag, cfg: &NestedEp) -> Result<u32, Verdict> {
    let mut pushed = 0;
    if cfg.flags & NEST_F_KEEP_TAG != 0 {
        if now.tpid != ETH_P_8021Q || now.vid != cfg.vid {
            return Err(Verdict::DropVlan);
        }
    } else {
        if now.tpid != 0 {
            return Err(Verdict::DropVlan);
        }
        if !push(skb, false, cfg.vid) {
            return Err(Verdict::DropRedirect);
        }
        pushed += 1;
    }
    if cfg.outer != 0 {
        if !push(skb, true, cfg.outer) {
            pop_n(skb, pushed);
            return Err(Verdict::DropRedirect);
        }
        pushed += 1;
    }
    Ok(pushed)
}

/// The tags of host-side nested endpoint `id`.
#[inline(always)]
pub fn host_cfg(id: u32) -> Option<NestedEp> {
    // SAFETY: copied out at once.
    unsafe { NEST_IDS.get(&id) }.copied()
}

/// Delivers the frame to host-side nested endpoint `ep` (`EP_F_NESTED`):
/// its tags pushed, out of the VM's tap. `Err`: the drop reason.
#[inline(always)]
pub fn deliver(ctx: &TcContext, ep: &Endpoint) -> Result<i32, Verdict> {
    let Some(cfg) = host_cfg(ep.id) else {
        return Err(Verdict::DropRedirect);
    };
    let (now, _) = tags(ctx);
    push_for(ctx.as_ptr() as *mut __sk_buff, &now, &cfg)?;
    // SAFETY: plain helper call.
    Ok(unsafe { bpf_redirect(ep.host_ifindex, 0) } as i32)
}
