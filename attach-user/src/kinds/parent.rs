//! A parent's macvlan switch, shared by the eBPF macvlan endpoints and the
//! host sides of nested ones (each an endpoint of its parent's switch): the
//! members' datapath view, the parent's flood row and config, and the
//! parent's programs (receive, host egress, XDP). Also the checks a parent
//! device passes before macvlan, ipvlan or nested endpoints hang off it.

use attach_common::{
    DATAPATH_TC, DATAPATH_XDP, EP_F_HOST_ACCESS, EP_F_IPCHK, EP_F_NESTED, EP_F_SPOOFCHK, Endpoint,
    MODE_BRIDGE, MODE_PASSTHRU, MODE_PRIVATE, MODE_VEPA, PARENT_F_PASSTHRU, PARENT_F_SWITCH,
    ParentCfg,
};
use aya::programs::TcAttachType;

use crate::{
    addr::Mac,
    datapath::{self, Datapath, PROG_HOST, PROG_RX},
    error::{Context as _, Error, Result},
    model::{Attachment, Datapath as DatapathKind, Kind, Mode, NestedRole},
    netlink::Link,
    node::Node,
};

/// Whether `r` is the host side of a nested attachment.
pub(crate) fn is_nested_host(r: &Attachment) -> bool {
    r.kind == Kind::Nested && r.role == Some(NestedRole::Host)
}

/// The datapath's `MODE_*` bit of a nested host side's mode (no passthru).
const fn nested_mode_bit(m: Mode) -> u8 {
    match m {
        Mode::Private => MODE_PRIVATE,
        Mode::Vepa => MODE_VEPA,
        _ => MODE_BRIDGE,
    }
}

/// The switch's view of a host-side record (`host_ifindex`: the tap).
pub(crate) fn nested_host_endpoint_of(rec: &Attachment) -> Option<Endpoint> {
    let mut flags = EP_F_NESTED;
    if rec.host_access {
        flags |= EP_F_HOST_ACCESS;
    }
    if rec.spoofchk {
        flags |= EP_F_SPOOFCHK;
        if !rec.ips.is_empty() {
            flags |= EP_F_IPCHK;
        }
    }
    Some(Endpoint {
        host_ifindex: rec.tap_ifindex?,
        parent_ifindex: rec.parent_ifindex,
        id: rec.endpoint_id?,
        mac: rec.mac.0,
        mode: nested_mode_bit(rec.mode?),
        flags,
    })
}

/// The datapath's `MODE_*` bit of a macvlan mode.
const fn macvlan_mode_bit(m: Mode) -> u8 {
    match m {
        Mode::Private => MODE_PRIVATE,
        Mode::Vepa => MODE_VEPA,
        Mode::Passthru => MODE_PASSTHRU,
        _ => MODE_BRIDGE,
    }
}

/// The datapath's view of a macvlan endpoint.
pub(crate) fn macvlan_endpoint_of(rec: &Attachment) -> Option<Endpoint> {
    let mut flags = 0;
    if rec.host_access {
        flags |= EP_F_HOST_ACCESS;
    }
    if rec.spoofchk {
        flags |= EP_F_SPOOFCHK;
        if !rec.ips.is_empty() {
            flags |= EP_F_IPCHK;
        }
    }
    Some(Endpoint {
        host_ifindex: rec.host_ifindex?,
        parent_ifindex: rec.parent_ifindex,
        id: rec.endpoint_id?,
        mac: rec.mac.0,
        mode: macvlan_mode_bit(rec.mode?),
        flags,
    })
}

/// Whether `r` is an endpoint of the macvlan switch of parent `ifindex`:
/// an eBPF macvlan endpoint, or the host side of a nested one.
pub(crate) fn switch_member(r: &Attachment, ifindex: u32) -> bool {
    r.is_ebpf() && r.parent_ifindex == ifindex && (r.kind == Kind::Macvlan || is_nested_host(r))
}

/// Refuses, before anything is made, one more member of parent `name`'s
/// switch than its flood row holds (fewer on kernels without `bpf_loop`).
pub(crate) fn check_room(name: &str, ifindex: u32, records: &[Attachment]) -> Result<()> {
    let members = records.iter().filter(|r| switch_member(r, ifindex)).count();
    check_row_room(&format!("parent {name}"), members)
}

/// Refuses one more eBPF endpoint in the flood row of `who`, which holds
/// `members` now.
pub(crate) fn check_row_room(who: &str, members: usize) -> Result<()> {
    datapath::check_row_len(
        members + 1,
        attach_common::MAX_PORTS_PER_PARENT,
        who,
        "eBPF endpoints",
    )
}

/// The datapath's view of a member of a parent's switch.
pub(crate) fn member_endpoint(r: &Attachment) -> Option<Endpoint> {
    if r.kind == Kind::Nested {
        nested_host_endpoint_of(r)
    } else {
        macvlan_endpoint_of(r)
    }
}

/// Brings the parent's configuration and programs in line with the eBPF
/// endpoints in `all` (which includes the one being added). Any list of
/// records, so that an add passes the node's records and its own without
/// copying a thousand of them into one vector.
pub(crate) async fn setup_parent<'a>(
    node: &Node,
    dp: &mut Datapath,
    rec: &Attachment,
    all: impl IntoIterator<Item = &'a Attachment> + Clone,
) -> Result<Option<String>> {
    let ifindex = rec.parent_ifindex;
    let parent = node
        .rtnl
        .link_by_index(ifindex)
        .await?
        .ok_or_else(|| Error::not_found(format!("parent {} vanished", rec.parent)))?;
    let existing = dp.parent(ifindex)?;
    let slot = match existing {
        Some(c) => c.slot,
        None => dp.free_flood_slot()?,
    };
    write_parent(
        dp,
        ifindex,
        slot,
        (parent.mac, parent.mtu),
        rec.datapath.unwrap_or_default(),
        all.clone(),
        member_endpoint(rec).map_or(RowChange::Rebuild, RowChange::Joined),
    )?;
    let [rx, _, xdp] = datapath::parent_links(ifindex);
    // Before the switch whose uplink the parent may be: that program takes
    // what reaches it for the wire's.
    let switch = datapath::uplink_link(ifindex);
    dp.attach_tc_before(PROG_RX, ifindex, TcAttachType::Ingress, &rx, &switch)
        .with_context(|| format!("attaching the receive program to {}", rec.parent))?;
    set_host_hook(dp, rec, all.clone())?;
    if rec.datapath != Some(DatapathKind::Xdp) {
        return Ok(None);
    }
    // A link pinned but detached (by hand) holds no hook: attached anew.
    if dp.xdp_alive(&xdp, &parent.xdp_progs)
        && let Some(mode) = all
            .into_iter()
            .find(|r| r.parent_ifindex == ifindex && r.xdp_mode.is_some())
            .and_then(|r| r.xdp_mode.clone())
    {
        dp.update_link(datapath::PROG_RX_XDP, &xdp, false)
            .with_context(|| format!("updating XDP on {}", rec.parent))?;
        return Ok(Some(mode));
    }
    let mode = dp
        .attach_xdp(ifindex, &xdp)
        .with_context(|| format!("attaching XDP to {}", rec.parent))?;
    if mode == "generic" {
        tracing::warn!(
            "{}: native XDP is not possible here (for a veth: its peer needs as many rx queues as it has tx queues); using generic XDP",
            rec.parent
        );
    }
    Ok(Some(mode.to_owned()))
}

/// Whether parent `ifindex` needs its egress program (`attach_host`): it only
/// switches the node's own frames to `--host-access` endpoints, so without
/// one on the parent the node's traffic leaves with no program on its way,
/// and the parent's first endpoint waits for one tcx attach (an RCU grace
/// period) instead of two.
pub(crate) fn parent_needs_host<'a>(
    all: impl IntoIterator<Item = &'a Attachment>,
    ifindex: u32,
) -> bool {
    all.into_iter()
        .any(|r| switch_member(r, ifindex) && r.host_access)
}

/// Attaches the parent's egress program while a member of `all` (the
/// parent of `rec`'s switch) has host access; removes it otherwise.
pub(crate) fn set_host_hook<'a>(
    dp: &mut Datapath,
    rec: &Attachment,
    all: impl IntoIterator<Item = &'a Attachment>,
) -> Result<()> {
    let ifindex = rec.parent_ifindex;
    let [_, host, _] = datapath::parent_links(ifindex);
    if parent_needs_host(all, ifindex) {
        dp.attach_tc(PROG_HOST, ifindex, TcAttachType::Egress, &host)
            .with_context(|| format!("attaching the host program to {}", rec.parent))?;
        Ok(())
    } else {
        dp.unpin(&host)
    }
}

/// The parent's hooks a member of its switch relies on: (program, pin).
pub(crate) fn parent_hooks(rec: &Attachment) -> Vec<(&'static str, String)> {
    let [rx, host, xdp] = datapath::parent_links(rec.parent_ifindex);
    let mut out = vec![(PROG_RX, rx)];
    if rec.host_access {
        out.push((PROG_HOST, host));
    }
    if rec.datapath == Some(DatapathKind::Xdp) {
        out.push((datapath::PROG_RX_XDP, xdp));
    }
    out
}

/// Checks the parent's tc programs a member of its switch relies on: the
/// receive program, and the host program for a host-access member.
pub(crate) fn check_parent_tc(dp: &mut Datapath, rec: &Attachment) -> Result<()> {
    let [rx, host, _] = datapath::parent_links(rec.parent_ifindex);
    let ifindex = rec.parent_ifindex;
    dp.check_tcx(PROG_RX, &rx, ifindex, TcAttachType::Ingress, "receive")?;
    if rec.host_access {
        dp.check_tcx(PROG_HOST, &host, ifindex, TcAttachType::Egress, "host")?;
    }
    Ok(())
}

/// What changed in a parent's switch since its flood row was written.
pub(crate) enum RowChange {
    /// Unknown (or a member changed): the row is written whole.
    Rebuild,
    /// This member joined.
    Joined(Endpoint),
    /// The member with this endpoint id left.
    Left(u32),
}

impl RowChange {
    /// `ep` joined (`Some(true)`) or left (`Some(false)`); else, or
    /// without an endpoint, a rebuild.
    pub(crate) fn of(ep: Option<Endpoint>, joined: Option<bool>) -> Self {
        match (ep, joined) {
            (Some(ep), Some(true)) => Self::Joined(ep),
            (Some(ep), Some(false)) => Self::Left(ep.id),
            _ => Self::Rebuild,
        }
    }
}

/// Writes a parent's flood row, then its config (which publishes the row).
/// A member joining or leaving a row that holds the other members is one
/// write to it (see [`Datapath::flood_append`]), not a rewrite.
pub(crate) fn write_parent<'a>(
    dp: &mut Datapath,
    ifindex: u32,
    slot: u32,
    (mac, mtu): (Mac, u32),
    kind: DatapathKind,
    all: impl IntoIterator<Item = &'a Attachment>,
    change: RowChange,
) -> Result<()> {
    let mut switch = false;
    let eps: Vec<Endpoint> = all
        .into_iter()
        .inspect(|r| switch |= is_switch_uplink_of(r, ifindex))
        .filter(|r| switch_member(r, ifindex))
        .filter_map(member_endpoint)
        .collect();
    let now = dp.parent(ifindex)?.map(|c| (c.slot, c.nports));
    write_row(dp, now, slot, &eps, change)?;
    let passthru = eps.iter().find(|e| e.mode == MODE_PASSTHRU).copied();
    let cfg = ParentCfg {
        slot,
        nports: eps.len() as u32,
        passthru: passthru.unwrap_or_default(),
        mac: mac.0,
        flags: if passthru.is_some() {
            PARENT_F_PASSTHRU
        } else {
            0
        } | if switch && !datapath::compat_build() {
            PARENT_F_SWITCH
        } else {
            0
        },
        datapath: match kind {
            DatapathKind::Xdp => DATAPATH_XDP,
            _ => DATAPATH_TC,
        },
        mtu,
    };
    dp.put_parent(ifindex, &cfg)
}

/// Brings row `slot` (published as `now`: its slot and count, if it is
/// published at all) to `eps`: by `change` when the row holds exactly the
/// other members, else whole. The caller publishes `eps.len()`.
pub(crate) fn write_row(
    dp: &mut Datapath,
    now: Option<(u32, u32)>,
    slot: u32,
    eps: &[Endpoint],
    change: RowChange,
) -> Result<()> {
    let n = eps.len();
    let done = match (now, change) {
        (Some((s, nports)), RowChange::Joined(ep)) if s == slot && nports as usize + 1 == n => {
            if dp.flood_place(slot, nports, ep.id)?.is_some() {
                false
            } else {
                dp.flood_append(slot, nports, &ep)?;
                true
            }
        }
        (Some((s, nports)), RowChange::Left(id)) if s == slot && nports as usize == n + 1 => {
            dp.flood_remove(slot, nports, id)?
        }
        _ => false,
    };
    if !done {
        dp.write_flood_row(slot, eps)?;
    }
    Ok(())
}

/// Writes every parent's flood row whole from `records`, and publishes its
/// count (rows a build with another flood table made).
pub(crate) fn rewrite_rows(dp: &mut Datapath, records: &[Attachment]) -> Result<()> {
    for (ifindex, cfg) in dp.parents()? {
        let eps: Vec<Endpoint> = records
            .iter()
            .filter(|r| switch_member(r, ifindex))
            .filter_map(member_endpoint)
            .collect();
        dp.write_flood_row(cfg.slot, &eps)?;
        let nports = eps.len() as u32;
        dp.put_parent(ifindex, &ParentCfg { nports, ..cfg })?;
    }
    Ok(())
}

/// The parent's side of removing `rec` from its switch: the flood row and
/// config rewritten for the `remaining` members, or, with none left, the
/// parent's entry and programs removed.
pub(crate) fn release_parent(
    dp: &mut Datapath,
    rec: &Attachment,
    remaining: &[Attachment],
) -> Result<()> {
    let ifindex = rec.parent_ifindex;
    let others_on_parent = remaining.iter().any(|r| switch_member(r, ifindex));
    match dp.parent(ifindex)? {
        Some(cfg) if others_on_parent => {
            let kind = rec.datapath.unwrap_or_default();
            write_parent(
                dp,
                ifindex,
                cfg.slot,
                (Mac(cfg.mac), cfg.mtu),
                kind,
                remaining,
                member_endpoint(rec).map_or(RowChange::Rebuild, |ep| RowChange::Left(ep.id)),
            )?;
            set_host_hook(dp, rec, remaining)?;
        }
        _ => {
            dp.remove_parent(ifindex)?;
            for pin in datapath::parent_links(ifindex) {
                dp.unpin(&pin)?;
            }
        }
    }
    Ok(())
}

/// The parent device `name` in the node: present, an Ethernet device, and
/// not one of our own host-side veths.
pub(crate) async fn parent_link(node: &Node, name: &str) -> Result<Link> {
    let parent = node.rtnl.link_by_name(name).await?.ok_or_else(|| {
        Error::not_found(format!(
            "parent interface {name:?} not found in the node's network namespace"
        ))
    })?;
    if parent.name.starts_with(crate::naming::HOST_IF_PREFIX) {
        return Err(Error::invalid(format!(
            "{} is an endpoint's host-side interface, not a parent",
            parent.name
        )));
    }
    if !parent.ether {
        return Err(Error::invalid(format!(
            "parent {} is not an Ethernet device",
            parent.name
        )));
    }
    Ok(parent)
}

/// The endpoint's MTU: the parent's by default, never above it.
pub(crate) fn mtu_under(parent: &Link, mtu: Option<u32>) -> Result<u32> {
    let mtu = mtu.unwrap_or(parent.mtu);
    if mtu > parent.mtu {
        return Err(Error::invalid(format!(
            "MTU {mtu} exceeds the MTU {} of parent {}",
            parent.mtu, parent.name
        )));
    }
    Ok(mtu)
}

/// Whether parent `ifindex` is also the uplink of an eBPF switch whose
/// untagged ports meet its bridge-mode endpoints locally (the
/// `PARENT_F_SWITCH` bit of its config).
pub(crate) fn shares_switch(all: &[Attachment], ifindex: u32) -> bool {
    !datapath::compat_build() && all.iter().any(|r| is_switch_uplink_of(r, ifindex))
}

/// Whether `r` is a port of an eBPF switch whose uplink is `ifindex`.
fn is_switch_uplink_of(r: &Attachment, ifindex: u32) -> bool {
    r.kind == Kind::Bridge && r.uplink.is_some() && r.parent_ifindex == ifindex
}

/// Sets or clears `PARENT_F_SWITCH` on parent `ifindex`'s config, if the
/// parent has one (its switch's uplink came or went).
pub(crate) fn mark_switch(dp: &mut Datapath, ifindex: u32, on: bool) -> Result<()> {
    let Some(cfg) = dp.parent(ifindex)? else {
        return Ok(());
    };
    let flags = if on && !datapath::compat_build() {
        cfg.flags | PARENT_F_SWITCH
    } else {
        cfg.flags & !PARENT_F_SWITCH
    };
    if flags != cfg.flags {
        dp.put_parent(ifindex, &ParentCfg { flags, ..cfg })?;
    }
    Ok(())
}

/// The kernel feature whose absence keeps a switch's uplink and a parent
/// of endpoints apart, named in the refusal.
pub(crate) const SHARED_UPLINK_NEEDS: &str = "needs the bpf_loop helper (Linux 5.17): the datapath in use is the build for kernels without it";

/// Refuses `name` as a macvlan/ipvlan parent when it is a switch's uplink,
/// unless the pairing is possible: an eBPF macvlan endpoint (tc or xdp
/// datapath) with a kernel that has `bpf_loop`. An ipvlan parent and a
/// native macvlan cannot share it (both would switch the frames it
/// receives).
pub(crate) fn check_not_uplink(
    name: &str,
    ebpf_macvlan: bool,
    records: &[Attachment],
) -> Result<()> {
    if let Some(r) = records
        .iter()
        .find(|r| r.kind == Kind::Bridge && r.uplink.as_deref() == Some(name))
    {
        let shareable = ebpf_macvlan;
        if shareable && !datapath::compat_build() {
            return Ok(());
        }
        let why = if shareable {
            format!(": sharing it with macvlan endpoints {SHARED_UPLINK_NEEDS}")
        } else {
            String::new()
        };
        return Err(Error::conflict(format!(
            "{name} is the uplink of switch {} (for {} in {:?}){why}",
            r.parent, r.ifname, r.netns
        )));
    }
    Ok(())
}
