//! The engine of one node: `add`, `del`, `list`, `stats`, `reset`. The CLI
//! (and later the agent and the CNI plugin) are thin layers over this.
//!
//! The node is the network namespace the engine runs in; its attachment
//! records and bpffs pins live in directories named by that namespace's
//! cookie, so several nodes on one machine never share them.

mod leftovers;

use std::path::Path;

use attach_common::{EndpointStats, PIN_ROOT, STATE_ROOT};
use serde::Serialize;

use crate::{
    datapath::Datapath,
    error::{Error, Result},
    kinds::{self, AddRequest},
    model::{Attachment, Backend, CniRef, NO_IFNAME},
    netns::Netns,
    node::Node,
    node_id,
    state::State,
};

/// What `upgrade` did.
#[derive(Debug, Default)]
pub struct Upgraded {
    /// (pin, "updated" | "kept") for each program link.
    pub links: Vec<(String, &'static str)>,
    /// (netns, interface) of XDP endpoints whose container side got this
    /// build's settings (fraglist GRO).
    pub containers: Vec<(String, String)>,
    /// What making the endpoint cache agree with the receive table changed
    /// (a build before it, or with another slot layout).
    pub ep_cache: crate::ep_cache::SyncReport,
}

pub struct Engine {
    pub node_id: String,
    state: State,
    /// What the kinds act on: the engine hands them this, never itself.
    node: Node,
}

/// Counters of one attachment (eBPF backend).
#[derive(Serialize)]
pub struct AttachmentStats {
    #[serde(flatten)]
    pub attachment: Attachment,
    pub counters: Option<Counters>,
}

#[derive(Serialize, Default)]
pub struct Counters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_broadcast: u64,
    pub rx_multicast: u64,
    pub tx_broadcast: u64,
    pub tx_multicast: u64,
    pub flood_copies: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// Interface name when none is given.
pub const DEFAULT_IFNAME: &str = "eth0";

impl From<attach_common::CgroupStats> for Counters {
    fn from(s: attach_common::CgroupStats) -> Self {
        Self {
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            ..Default::default()
        }
    }
}

impl From<EndpointStats> for Counters {
    fn from(s: EndpointStats) -> Self {
        Self {
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            rx_broadcast: s.rx_broadcast,
            rx_multicast: s.rx_multicast,
            tx_broadcast: s.tx_broadcast,
            tx_multicast: s.tx_multicast,
            flood_copies: s.flood_copies,
            rx_dropped: s.rx_dropped,
            tx_dropped: s.tx_dropped,
        }
    }
}

/// One thing `reconcile` found wrong and what it did about it.
#[derive(Serialize, Debug, Clone)]
pub struct Repair {
    pub netns: String,
    pub ifname: String,
    /// What `check` reported.
    pub drift: String,
    /// "repaired", "recreated[ on the new …]", "detached…", "kept: …" or
    /// "failed: …".
    pub action: String,
}

impl Repair {
    /// Whether the node was changed (not only found drifting, as an
    /// attachment kept while its uplink is gone is at every pass).
    pub fn changed(&self) -> bool {
        !self.action.starts_with("kept") && !self.action.ends_with("; kept")
    }
}

#[derive(Serialize)]
pub struct VerdictCount {
    pub direction: &'static str,
    pub verdict: &'static str,
    pub drop: bool,
    pub packets: u64,
}

#[derive(Serialize)]
pub struct Stats {
    pub attachments: Vec<AttachmentStats>,
    pub verdicts: Vec<VerdictCount>,
}

impl Engine {
    /// The engine of the node the calling thread is in.
    pub fn new() -> Result<Self> {
        Self::with_roots(Path::new(STATE_ROOT), Path::new(PIN_ROOT))
    }

    pub fn with_roots(state_root: &Path, pin_root: &Path) -> Result<Self> {
        // A process that may not give the node an id (an unprivileged
        // `list` on a kernel without cookies) reads without one: a node
        // with records has one already.
        let node_id = node_id::current(true).or_else(|e| {
            if e.message.contains("Operation not permitted") {
                node_id::current(false)
            } else {
                Err(e)
            }
        })?;
        let state_dir = state_root.join(&node_id);
        Ok(Self {
            node: Node::here(pin_root.join(&node_id), state_dir.clone())?,
            state: State::new(state_dir),
            node_id,
        })
    }

    pub fn pin_dir(&self) -> &Path {
        self.node.pin_dir()
    }

    pub fn state_dir(&self) -> &Path {
        self.state.dir()
    }

    pub(crate) fn datapath(&self) -> Result<Datapath> {
        self.node.datapath()
    }

    /// What the node's kernel offers and what works on it.
    pub fn features(&self) -> crate::features::Report {
        let mut report = crate::features::Report::probe(Some(self.node_id.clone()));
        if self.node.pin_dir().join("links").exists() {
            report.tc_hooks = Datapath::tc_hooks_in(self.node.pin_dir());
        }
        report
    }

    /// Attaches what `req` asks for; on failure nothing it made remains.
    pub async fn add(&self, req: &AddRequest) -> Result<Attachment> {
        self.add_as(req, None).await
    }

    /// `add`, recording the CNI identity of a runtime's request.
    pub async fn add_as(&self, req: &AddRequest, cni: Option<CniRef>) -> Result<Attachment> {
        req.validate()?;
        let netns = req.namespace();
        // The host side of a nested attachment has no container namespace:
        // its kind works in the node's.
        let ns = if netns.is_empty() {
            Netns::current()?
        } else {
            Netns::open(netns).map_err(|e| match req {
                AddRequest::Container(_) => e.context("--join"),
                _ => e,
            })?
        };
        let _lock = self.state.lock()?;
        let added = self.add_locked(req, &ns, cni).await;
        if added.is_err() {
            // Taking the lock made the state directory: a failed first add
            // must not leave it behind.
            let _ = self.state.remove_if_empty();
        }
        added
    }

    async fn add_locked(
        &self,
        req: &AddRequest,
        ns: &Netns,
        cni: Option<CniRef>,
    ) -> Result<Attachment> {
        let records = self.state.all()?;
        // An add killed before this one may have left what it made (a
        // runtime retrying it, for one): rolled back first.
        self.roll_back_quietly(&records).await;
        let (netns, ifname) = req.target();
        if req.kind().has_interface() {
            if let Some(r) = records
                .iter()
                .filter(|_| !netns.is_empty())
                .find(|r| r.kind.has_interface() && r.netns_inode == ns.inode && r.ifname == ifname)
            {
                let what = match r.mode {
                    Some(m) => format!("{} {}", r.kind.name(), m.name()),
                    None => r.kind.name().to_owned(),
                };
                return Err(Error::conflict(format!(
                    "{ifname} in network namespace {netns:?} is already attached ({what}); detach it first"
                )));
            }
        } else if let Some(r) = records
            .iter()
            .find(|r| !r.kind.has_interface() && Self::named_by(r, netns))
        {
            return Err(Error::conflict(format!(
                "{netns:?} is already attached ({}); detach it first",
                r.kind.name()
            )));
        }
        let mut rec = kinds::plan(&self.node, req, ns, &records).await?;
        rec.cni = cni;
        // Before anything is made: failing on the pins half-way would
        // leave a rollback that fails on them too.
        if rec.backend == Backend::Ebpf {
            Datapath::check_bpffs()?;
        }
        // Written before anything is made: if this process dies half-way,
        // it says what to roll back.
        let journal = self.begin_journal(&rec).await?;
        match kinds::create(&self.node, &mut rec, ns, &records).await {
            Ok(()) => {}
            Err(e) => {
                self.rollback(&rec, &records).await;
                journal.finish();
                return Err(e);
            }
        }
        if let Err(e) = self.state.save(&rec) {
            self.rollback(&rec, &records).await;
            journal.finish();
            return Err(e.context("saving the attachment record"));
        }
        journal.finish();
        Ok(rec)
    }

    /// Undoes a failed `add`; everything it made is removed, errors logged.
    async fn rollback(&self, rec: &Attachment, records: &[Attachment]) {
        for e in kinds::teardown(&self.node, rec, records).await {
            tracing::warn!("rollback of {} in {:?}: {e}", rec.ifname, rec.netns);
        }
        // Not only when `records` is empty: beside native attachments alone,
        // the failed add was the node's first eBPF one and made the pins.
        self.remove_node_pins_if_idle(records);
    }

    fn remove_node_pins_if_idle(&self, remaining: &[Attachment]) {
        if remaining.iter().all(|r| !r.is_ebpf())
            && let Err(e) = Datapath::remove_pins(self.node.pin_dir())
        {
            tracing::warn!("{e}");
        }
    }

    /// Whether `r` was attached under the name `netns` (as given, or the
    /// same path).
    fn named_by(r: &Attachment, netns: &str) -> bool {
        r.netns == netns || r.netns_path == Netns::path_of(netns)
    }

    /// Finds the record of (netns, ifname).
    ///
    /// Without `ifname` (or with `-`), an attachment without an interface
    /// (`host`, `container`) named by `netns` comes first: those share a
    /// namespace with others, so they are known by NETNS as given, never by
    /// the namespace's identity. Otherwise (`ifname` defaults to `eth0`): by
    /// the namespace's identity while it lives, else by how it was named (a
    /// deleted namespace, or a name now given to another one).
    fn find<'a>(
        records: &'a [Attachment],
        netns: &str,
        ifname: Option<&str>,
    ) -> Option<&'a Attachment> {
        if ifname.is_none_or(|i| i == NO_IFNAME)
            && let Some(r) = records
                .iter()
                .find(|r| !r.kind.has_interface() && Self::named_by(r, netns))
        {
            return Some(r);
        }
        let ifname = ifname.unwrap_or(DEFAULT_IFNAME);
        let mut own = records
            .iter()
            .filter(|r| r.kind.has_interface() && r.has_netns());
        let by_name = |r: &&Attachment| r.ifname == ifname && Self::named_by(r, netns);
        match Netns::open(netns) {
            Ok(ns) => own
                .clone()
                .find(|r| r.netns_inode == ns.inode && r.ifname == ifname)
                .or_else(|| own.filter(by_name).find(|r| r.netns_inode != ns.inode)),
            Err(_) => own.find(by_name),
        }
    }

    /// Detaches (netns, ifname). Returns what was detached; `None` when
    /// nothing was attached (not an error: `del` is idempotent).
    /// Without `ifname`: the interface-less attachment of `netns` (`host`,
    /// `container`) if there is one, else `eth0`.
    pub async fn del(&self, netns: &str, ifname: Option<&str>) -> Result<Option<Attachment>> {
        if let Some(i) = ifname.filter(|i| *i != NO_IFNAME) {
            crate::addr::check_ifname(i)?;
        }
        let mut gone = self
            .del_where(|records| {
                Self::find(records, netns, ifname)
                    .into_iter()
                    .cloned()
                    .collect()
            })
            .await?;
        Ok(gone.pop())
    }

    /// Detaches the host side of a nested attachment: VLAN `vlan` (in
    /// S-tag `qinq`) of tap `tap`. `None` when nothing was attached.
    pub async fn del_vlan(
        &self,
        tap: &str,
        qinq: Option<u16>,
        vlan: u16,
    ) -> Result<Option<Attachment>> {
        crate::addr::check_ifname(tap)?;
        let mut gone = self
            .del_where(|records| {
                Self::find_vlan(records, tap, qinq, vlan)
                    .into_iter()
                    .cloned()
                    .collect()
            })
            .await?;
        Ok(gone.pop())
    }

    fn find_vlan<'a>(
        records: &'a [Attachment],
        tap: &str,
        qinq: Option<u16>,
        vlan: u16,
    ) -> Option<&'a Attachment> {
        records.iter().find(|r| {
            kinds::is_nested_host_side(r)
                && r.tap.as_deref() == Some(tap)
                && r.qinq == qinq
                && r.vlan == Some(vlan)
        })
    }

    /// The record of VLAN `vlan` (in S-tag `qinq`) of tap `tap`, if attached.
    pub fn get_vlan(&self, tap: &str, qinq: Option<u16>, vlan: u16) -> Result<Option<Attachment>> {
        let records = self.state.all()?;
        Ok(Self::find_vlan(&records, tap, qinq, vlan).cloned())
    }

    /// Detaches a runtime's attachment by its CNI identity, or, for one made
    /// before the identity was recorded, by (netns, ifname).
    pub async fn del_cni(
        &self,
        cni: &CniRef,
        ifname: &str,
        netns: Option<&str>,
    ) -> Result<Option<Attachment>> {
        let mut gone = self
            .del_where(|records| {
                let by_id = records
                    .iter()
                    .find(|r| r.cni.as_ref() == Some(cni) && r.ifname == ifname);
                by_id
                    .or_else(|| netns.and_then(|n| Self::find(records, n, Some(ifname))))
                    .into_iter()
                    .cloned()
                    .collect()
            })
            .await?;
        Ok(gone.pop())
    }

    /// Detaches every attachment of CNI network `network` whose
    /// (container id, ifname) is not in `valid`; returns them.
    pub async fn gc_cni(
        &self,
        network: &str,
        valid: &[(String, String)],
    ) -> Result<Vec<Attachment>> {
        self.del_where(|records| {
            records
                .iter()
                .filter(|r| {
                    r.cni.as_ref().is_some_and(|c| {
                        c.network == network
                            && !valid
                                .iter()
                                .any(|(id, ifn)| *id == c.container_id && *ifn == r.ifname)
                    })
                })
                .cloned()
                .collect()
        })
        .await
    }

    /// Detaches the records `pick` chooses, under the lock; stops at the
    /// first that cannot be torn down completely (its record is kept, so a
    /// retry can finish).
    async fn del_where(
        &self,
        pick: impl FnOnce(&[Attachment]) -> Vec<Attachment>,
    ) -> Result<Vec<Attachment>> {
        let _lock = self.state.lock()?;
        let mut records = self.state.all()?;
        self.roll_back_quietly(&records).await;
        let chosen = pick(&records);
        let mut gone = Vec::new();
        for mut rec in chosen {
            records.retain(|r| *r != rec);
            self.node.take_notices();
            let errors = kinds::teardown(&self.node, &rec, &records).await;
            if let Some(first) = errors.into_iter().next() {
                return Err(first.context(format!("detaching {}", crate::output::what(&rec))));
            }
            self.state.remove(&rec)?;
            rec.warnings = self.node.take_notices();
            gone.push(rec);
        }
        self.remove_node_pins_if_idle(&records);
        // Taking the lock made the state directory: remove it when unused.
        self.state.remove_if_empty()?;
        Ok(gone)
    }

    /// Checks an attachment against reality (see [`kinds::check`]).
    pub async fn check(&self, rec: &Attachment) -> Result<()> {
        kinds::check(&self.node, rec).await
    }

    /// Checks what no attachment owns: the endpoint cache must hold nothing
    /// the receive table does not (see [`crate::ep_cache`]).
    pub fn check_node(&self, records: &[Attachment]) -> Result<()> {
        if !records.iter().any(Attachment::is_ebpf) {
            return Ok(());
        }
        let mut dp = self.datapath()?;
        let table = dp.rx_entries()?;
        let stale = dp.ep_cache()?.stale(&table);
        match stale.first() {
            None => Ok(()),
            Some((slot, ep)) => Err(Error::system(format!(
                "the endpoint cache holds {} slot(s) the receive table does not (slot {slot}: {})",
                stale.len(),
                match ep {
                    Some(ep) => format!(
                        "{} on parent ifindex {}",
                        crate::addr::Mac(ep.mac),
                        ep.parent_ifindex
                    ),
                    None => "left half written".to_owned(),
                }
            ))),
        }
    }

    /// Re-adopts every record and pin and repairs drift: a datapath piece
    /// missing (map entry, program) is put back; an interface deleted behind
    /// the engine's back is recreated; an attachment whose namespace is gone
    /// is detached; host-side interfaces and link pins no record owns are
    /// removed. Returns what it did.
    pub async fn reconcile(&self) -> Result<Vec<Repair>> {
        let _lock = self.state.lock()?;
        let mut records = self.state.all()?;
        // Before the records are checked: an interrupted add may have
        // rewritten what its parent's other endpoints rely on.
        let mut repairs = self.roll_back_interrupted(&records).await?;
        let mut i = 0;
        while i < records.len() {
            let rec = records[i].clone();
            let Err(drift) = kinds::check(&self.node, &rec).await else {
                i += 1;
                continue;
            };
            let others: Vec<Attachment> = records.iter().filter(|r| **r != rec).cloned().collect();
            let note = |action: String| Repair {
                netns: rec.netns.clone(),
                ifname: rec.ifname.clone(),
                drift: drift.message.clone(),
                action,
            };
            let ns_alive =
                !rec.has_netns() || rec.open_netns().is_ok_and(|ns| ns.inode == rec.netns_inode);
            let parent = if ns_alive {
                kinds::parent_now(&self.node, &rec).await?
            } else {
                kinds::ParentNow::Same
            };
            // Nothing to repair on: as the kernel does with the macvlans of
            // a deleted device, the attachment goes.
            let gone = match (ns_alive, &parent) {
                (false, _) => Some("its network namespace"),
                (_, kinds::ParentNow::Gone) => Some("its parent"),
                _ => None,
            };
            if let Some(gone) = gone {
                let errors = kinds::teardown(&self.node, &rec, &others).await;
                self.state.remove(&rec)?;
                records.remove(i);
                repairs.push(note(match errors.first() {
                    None => format!("detached: {gone} is gone"),
                    Some(e) => format!("detached ({gone} is gone), with errors: {e}"),
                }));
                continue;
            }
            if let kinds::ParentNow::UplinkGone(uplink) = &parent {
                repairs.push(note(format!(
                    "kept: uplink {uplink} is gone (taken again when a device of that name appears)"
                )));
                i += 1;
                continue;
            }
            // A parent made again under its name: the attachment moves to it
            // (made anew: nothing of it can be repaired in place).
            let new_parent = match parent {
                kinds::ParentNow::Remade(index) => Some(index),
                _ => None,
            };
            if new_parent.is_none() {
                // A MAC the container set is taken on (as a kernel macvlan
                // does), then the record checked again.
                match kinds::adopt_mac(&self.node, &rec, &others).await {
                    Ok(Some(adopted)) => {
                        self.state.save(&adopted)?;
                        repairs.push(note(format!("took on the MAC {}", adopted.mac)));
                        records[i] = adopted;
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(
                        "{} in {:?}: its new MAC is not taken on: {e}",
                        rec.ifname,
                        rec.netns
                    ),
                }
                let repaired = kinds::repair(&self.node, &rec, &others).await;
                if repaired.is_ok() && kinds::check(&self.node, &rec).await.is_ok() {
                    repairs.push(note("repaired".into()));
                    i += 1;
                    continue;
                }
                if !kinds::recreatable(&rec) {
                    let why = match repaired {
                        Err(e) => e.message,
                        Ok(()) => "still drifting after the repair".into(),
                    };
                    repairs.push(note(format!("failed: {why}; kept")));
                    i += 1;
                    continue;
                }
            }
            for e in kinds::teardown(&self.node, &rec, &others).await {
                tracing::warn!("tearing down {} before recreating it: {e}", rec.ifname);
            }
            // A recreation killed half-way left its own veth under the
            // name this one takes.
            self.remove_stale_host_side(&rec).await?;
            let ns = if rec.has_netns() {
                rec.open_netns()?
            } else {
                Netns::current()?
            };
            let mut fresh = rec.fresh();
            if let Some(index) = new_parent {
                fresh.parent_ifindex = index;
            }
            match kinds::create(&self.node, &mut fresh, &ns, &others).await {
                Ok(()) => {
                    self.state.save(&fresh)?;
                    records[i] = fresh;
                    repairs.push(note(match new_parent {
                        Some(index) => {
                            format!("recreated on the new {} (ifindex {index})", rec.parent)
                        }
                        None => "recreated".into(),
                    }));
                    i += 1;
                }
                Err(e) => {
                    for t in kinds::teardown(&self.node, &fresh, &others).await {
                        tracing::warn!("rolling back the recreation of {}: {t}", rec.ifname);
                    }
                    self.state.remove(&rec)?;
                    records.remove(i);
                    repairs.push(note(format!("failed: {}; detached", e.message)));
                }
            }
        }
        repairs.extend(self.remove_orphans(&records).await?);
        if records.iter().any(Attachment::is_ebpf) {
            let synced = self.datapath()?.sync_ep_cache()?;
            if synced.stale > 0 {
                repairs.push(Repair {
                    netns: "-".into(),
                    ifname: "endpoint cache".into(),
                    drift: format!(
                        "{} slot(s) held what the receive table does not",
                        synced.stale
                    ),
                    action: "emptied".into(),
                });
            }
        }
        match kinds::sweep_switches(&self.node, &records) {
            Ok(0) => {}
            Ok(n) => tracing::info!("swept {n} aged or stale switch FDB entries"),
            Err(e) => tracing::warn!("sweeping the switch FDB: {e}"),
        }
        self.remove_node_pins_if_idle(&records);
        self.state.remove_if_empty()?;
        Ok(repairs)
    }

    /// Switches every pinned link to this build's programs in place
    /// (`bpf_link_update`), so an upgrade never leaves a hook without a
    /// program; `force` updates links that already run this build too. Then
    /// brings the container side of XDP endpoints to this build's settings.
    pub fn upgrade(&self, force: bool) -> Result<Upgraded> {
        use crate::datapath::Attached;
        let _lock = self.state.lock()?;
        let records = self.state.all()?;
        if !records.iter().any(Attachment::is_ebpf) {
            return Ok(Upgraded::default());
        }
        // Cached programs of other builds go; `force` loads this build's
        // afresh too.
        Datapath::clear_program_cache(self.node.pin_dir(), !force);
        let mut dp = self.datapath()?;
        // Endpoints made by a build without the endpoint cache enter it
        // before this build's programs, which read it, take the hooks.
        let ep_cache = dp.sync_ep_cache()?;
        let mut out = Vec::new();
        // A host attachment's cgroup programs carry its counter slot: each is
        // updated from an instance loaded with it.
        for rec in &records {
            let Some(id) = rec.host.as_ref().and_then(|h| h.counter_id) else {
                continue;
            };
            let mut counting = Datapath::open_counting(self.node.pin_dir(), id)?;
            for (prog, pin) in kinds::links(rec) {
                let what = match counting.update_cgroup_link(prog, &pin, force)? {
                    Attached::Kept => "kept",
                    _ => "updated",
                };
                out.push((pin, what));
            }
        }
        let mut links: Vec<(&str, String)> = Vec::new();
        for link in records
            .iter()
            .filter(|r| r.kind != crate::model::Kind::Host)
            .flat_map(kinds::links)
        {
            if !links.contains(&link) {
                links.push(link);
            }
        }
        for (prog, pin) in links {
            let what = match dp.update_link(prog, &pin, force)? {
                Attached::Kept => "kept",
                _ => "updated",
            };
            out.push((pin, what));
        }
        let mut containers = Vec::new();
        for rec in &records {
            // A container that cannot be entered is drift, `reconcile`'s
            // business; the programs are upgraded all the same.
            match kinds::upgrade_container(rec) {
                Ok(true) => containers.push((rec.netns.clone(), rec.ifname.clone())),
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    "{} in {:?}: container settings left as they are: {e}",
                    rec.ifname,
                    rec.netns
                ),
            }
        }
        Ok(Upgraded {
            links: out,
            containers,
            ep_cache,
        })
    }

    /// The records of (netns, ifname), if attached.
    pub fn get(&self, netns: &str, ifname: Option<&str>) -> Result<Option<Attachment>> {
        let records = self.state.all()?;
        Ok(Self::find(&records, netns, ifname).cloned())
    }

    pub fn list(&self) -> Result<Vec<Attachment>> {
        self.state.all()
    }

    pub fn stats(&self) -> Result<Stats> {
        let records = self.state.all()?;
        let mut dp = if records.iter().any(Attachment::is_ebpf) {
            Some(self.datapath()?)
        } else {
            None
        };
        let mut attachments = Vec::new();
        for rec in records {
            let counter = rec.host.as_ref().and_then(|h| h.counter_id);
            let counters = match (&mut dp, rec.endpoint_id, counter) {
                (Some(dp), Some(id), _) => Some(dp.stats(id)?.into()),
                (Some(dp), None, Some(id)) => Some(dp.cgroup_stats(id)?.into()),
                _ => None,
            };
            attachments.push(AttachmentStats {
                attachment: rec,
                counters,
            });
        }
        let verdicts = match &mut dp {
            Some(dp) => dp
                .verdicts()?
                .into_iter()
                .map(|(d, v, n)| VerdictCount {
                    direction: d.name(),
                    verdict: v.name(),
                    drop: v.is_drop(),
                    packets: n,
                })
                .collect(),
            None => Vec::new(),
        };
        Ok(Stats {
            attachments,
            verdicts,
        })
    }

    /// Removes every attachment of this node, any host-side link the engine
    /// left behind, and all of the node's pins and state.
    pub async fn reset(&self) -> Result<Vec<Attachment>> {
        let _lock = self.state.lock()?;
        let mut records = self.state.all()?;
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        // Interrupted adds first: their MACs in a parent's unicast filter
        // and their parent's settings are known from their journals alone.
        match self.roll_back_interrupted(&records).await {
            Ok(done) => errors.extend(
                done.iter()
                    .filter(|r| r.action.starts_with("failed"))
                    .map(|r| Error::system(format!("{}: {}", r.drift, r.action))),
            ),
            Err(e) => errors.push(e.context("rolling back interrupted adds")),
        }
        while let Some(rec) = records.pop() {
            errors.extend(kinds::teardown(&self.node, &rec, &records).await);
            for n in self.node.take_notices() {
                tracing::warn!("{n}");
            }
            self.state.remove(&rec)?;
            removed.push(rec);
        }
        for link in self.node.rtnl.links().await? {
            if link.name.starts_with(crate::container::HOST_IF_PREFIX)
                && link.kind.as_deref() == Some("veth")
                && let Err(e) = self.node.rtnl.del_link(link.index).await
            {
                errors.push(e.context(format!("deleting leftover {}", link.name)));
            }
        }
        // Namespaces a crashed `add container` may still hold.
        errors.extend(kinds::release_held_namespaces(self.state.dir()));
        Datapath::remove_pins(self.node.pin_dir())?;
        let _ = std::fs::remove_dir_all(self.state.dir());
        match errors.into_iter().next() {
            Some(e) => Err(e.context("reset")),
            None => Ok(removed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Repair;

    #[test]
    fn only_changes_count_as_repairs() {
        let r = |action: &str| Repair {
            netns: "c1".into(),
            ifname: "eth0".into(),
            drift: "d".into(),
            action: action.into(),
        };
        for changed in [
            "repaired",
            "recreated",
            "recreated on the new eth1 (ifindex 9)",
            "detached: its parent is gone",
            "failed: no such device; detached",
            "unpinned",
        ] {
            assert!(r(changed).changed(), "{changed}");
        }
        for kept in ["kept: uplink up0 is gone (…)", "failed: busy; kept"] {
            assert!(!r(kept).changed(), "{kept}");
        }
    }
}
