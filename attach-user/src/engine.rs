//! The engine of one node: `add`, `del`, `list`, `stats`, `reset`. The CLI
//! (and later the agent and the CNI plugin) are thin layers over this.
//!
//! The node is the network namespace the engine runs in; its attachment
//! records and bpffs pins live in directories named by that namespace's
//! cookie, so several nodes on one machine never share them.

mod leases;
mod leftovers;
mod reconcile;
pub mod report;
mod upgrade;

pub use report::{AttachmentStats, Counters, Repair, Stats, Upgraded, VerdictCount};

use std::path::Path;

use attach_common::{PIN_ROOT, STATE_ROOT};

use crate::{
    datapath::Datapath,
    error::{Error, ErrorKind, Result},
    kinds::{self, AddRequest, GiveBack},
    model::{Attachment, Backend, CniRef, NO_IFNAME},
    netns::Netns,
    node::Node,
    node_id,
    state::State,
};

pub struct Engine {
    pub node_id: String,
    state: State,
    /// What the kinds act on: the engine hands them this, never itself.
    node: Node,
}

/// Interface name when none is given.
pub const DEFAULT_IFNAME: &str = "eth0";

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
    pub fn features(&self) -> crate::capabilities::Report {
        let mut report = crate::capabilities::Report::probe(Some(self.node_id.clone()));
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
        self.migrate_flood_rows_if_needed(&records)?;
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
        // --dhcp: the lease's address stands in the record from the start,
        // as if given (the datapath's tables get it when they are made).
        if req.dhcp().is_some() {
            let id = crate::dhcp::client_id(&self.node_id, rec.netns_inode, &rec.ifname);
            kinds::acquire_lease(&self.node, req, &mut rec, id).await?;
        }
        // Nothing is made yet either: another host's address is refused
        // before it would be taken. A leased one is declined (RFC 2131
        // 3.1.5), so that its server holds it back.
        if let Err(e) = kinds::probe_addresses(&self.node, req, &rec).await {
            let how = if e.kind == ErrorKind::Conflict {
                GiveBack::Decline
            } else {
                GiveBack::Release
            };
            kinds::give_back_lease_on_wire(&self.node, req, &rec, how).await;
            return Err(e);
        }
        let made = self.make(&mut rec, ns, &records).await;
        if made.is_err() {
            // The lease taken for it goes back (from the node: nothing
            // of the endpoint is left to speak from).
            kinds::give_back_lease_on_wire(&self.node, req, &rec, GiveBack::Release).await;
        }
        made.map(|()| rec)
    }

    /// The rest of `add` once the record is planned and its addresses
    /// probed: the endpoint made and its record saved (rolled back on
    /// failure).
    async fn make(&self, rec: &mut Attachment, ns: &Netns, records: &[Attachment]) -> Result<()> {
        // Written before anything is made: if this process dies half-way,
        // it says what to roll back.
        let journal = self.begin_journal(rec).await?;
        match kinds::create(&self.node, rec, ns, records).await {
            Ok(()) => {}
            Err(e) => {
                self.rollback(rec, records).await;
                journal.finish();
                return Err(e);
            }
        }
        if let Some(w) = rec.dhcp.as_ref().and_then(|l| self.unrenewed_warning(l)) {
            rec.warnings.push(w);
        }
        if let Err(e) = self.state.save(rec) {
            self.rollback(rec, records).await;
            journal.finish();
            return Err(e.context("saving the attachment record"));
        }
        journal.finish();
        Ok(())
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
        self.migrate_flood_rows_if_needed(&records)?;
        let chosen = pick(&records);
        let mut gone = Vec::new();
        for mut rec in chosen {
            records.retain(|r| *r != rec);
            self.node.take_notices();
            // From inside the container, while its interface still has
            // the address; never a reason to keep the attachment.
            let unreleased = self.release_lease(&rec).await;
            let errors = kinds::teardown(&self.node, &rec, &records).await;
            if let Some(first) = errors.into_iter().next() {
                return Err(first.context(format!("detaching {}", crate::output::what(&rec))));
            }
            self.state.remove(&rec)?;
            rec.warnings = self.node.take_notices();
            rec.warnings.extend(unreleased);
            gone.push(rec);
        }
        self.remove_node_pins_if_idle(&records);
        // Taking the lock made the state directory: remove it when unused.
        self.state.remove_if_empty()?;
        Ok(gone)
    }

    /// Checks an attachment against reality (see [`kinds::check`]).
    pub async fn check(&self, rec: &Attachment) -> Result<()> {
        kinds::check(&self.node, rec).await?;
        Self::check_lease(rec)
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
        let events_lost = match &mut dp {
            Some(dp) => dp.events_lost()?,
            None => 0,
        };
        Ok(Stats {
            attachments,
            verdicts,
            events_lost,
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
            // Its lease back to the server first, from inside the container.
            if let Some(w) = self.release_lease(&rec).await {
                tracing::warn!("{w}");
            }
            errors.extend(kinds::teardown(&self.node, &rec, &records).await);
            for n in self.node.take_notices() {
                tracing::warn!("{n}");
            }
            self.state.remove(&rec)?;
            removed.push(rec);
        }
        for link in self.node.rtnl.links().await? {
            if link.name.starts_with(crate::naming::HOST_IF_PREFIX)
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
