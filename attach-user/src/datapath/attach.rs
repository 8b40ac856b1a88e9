//! Attaching the programs: tcx links (or clsact filters) and XDP links,
//! pinned so they outlive this process, checked against this build and
//! switched to it in place.

use aya::programs::{
    LinkOrder, ProgramId, SchedClassifier, TcAttach, TcAttachType, XdpMode,
    links::{FdLink, PinnedLink},
};

use super::hook::{Hook, PORT_PRIORITY};
use super::node::Datapath;
use super::object::program_tag;
use super::pins::{self, HookAt, link_program_id};
use super::progs::{PROG_EP_XDP, PROG_RX_XDP};
use crate::error::{Error, Result};
use crate::features::TcHooks;
use crate::netns::Netns;

/// What `attach_tc`/`attach_xdp` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// The pinned link already ran this program.
    Kept,
    /// The pinned link was switched to this build of the program.
    Updated,
    /// Newly attached and pinned.
    New,
}

impl Datapath {
    pub fn has_link(&self, name: &str) -> bool {
        pins::link_pinned_in(self.dir(), name)
    }

    /// Where hook `pin` of this node is (a port not hooked yet: where
    /// this instance hooks new ports).
    pub(super) fn hook(&self, pin: &str) -> HookAt {
        match pins::hook_in(self.dir(), pin) {
            HookAt::Filter(f) if self.port_links() && f.priority == PORT_PRIORITY => {
                HookAt::Link(pins::link_path(self.dir(), pin))
            }
            at => at,
        }
    }

    /// Whether hook `pin` still has its program on `ifindex` (a link or a
    /// filter dies with its device; a pin can outlive both).
    pub fn tcx_pin_alive(&self, pin: &str, ifindex: u32, at: TcAttachType) -> bool {
        match self.hook(pin) {
            HookAt::Filter(f) => f.ifindex == ifindex && f.at == at && f.program_id().is_some(),
            HookAt::Link(path) => {
                let Some(id) = link_program_id(&path) else {
                    return false;
                };
                SchedClassifier::query_tcx(ifindex, at)
                    .map(|(_, progs)| progs.iter().any(|p| p.id() == id))
                    .unwrap_or(false)
            }
        }
    }

    /// The id of the program behind hook `pin`: a filter, or a pinned link.
    pub(super) fn hook_program_id(&self, pin: &str) -> Option<u32> {
        match self.hook(pin) {
            HookAt::Filter(f) => f.program_id(),
            HookAt::Link(path) => link_program_id(&path),
        }
    }

    /// The tag (instruction hash) of the program behind hook `pin`.
    pub(super) fn pinned_program_tag(&self, pin: &str) -> Option<u64> {
        program_tag(self.hook_program_id(pin)?)
    }

    /// Whether the link pinned as `pin` runs this build of `prog` (an
    /// upgrade leaves links running the old one until updated).
    pub fn pin_runs_current(&mut self, prog: &str, pin: &str) -> Result<bool> {
        let current = if prog == PROG_RX_XDP {
            self.xdp_program()?.info()?
        } else {
            self.classifier(prog)?.info()?
        };
        let Some(id) = self.hook_program_id(pin) else {
            return Ok(false);
        };
        // The very program (the cached one, usually): no need to look
        // through every program of the system for the pinned one's tag.
        Ok(id == current.id() || program_tag(id) == Some(current.tag()))
    }

    /// Checks that `prog` is attached on `ifindex` by the link pinned as
    /// `pin` and is this build's; `what` names the program in errors.
    pub fn check_tcx(
        &mut self,
        prog: &str,
        pin: &str,
        ifindex: u32,
        at: TcAttachType,
        what: &str,
    ) -> Result<()> {
        if !self.tcx_pin_alive(pin, ifindex, at) {
            return Err(Error::system(format!(
                "the {what} program is not attached ({pin})"
            )));
        }
        if !self.pin_runs_current(prog, pin)? {
            return Err(Error::system(format!(
                "the {what} program ({pin}) is not this build's {prog}"
            )));
        }
        Ok(())
    }

    /// Attaches a tcx program on `ifindex` and pins its link as `pin`. A live
    /// pin running an older build of the program is switched to this one in
    /// place (`bpf_link_update`: atomic, no packet sees no program).
    pub fn attach_tc(
        &mut self,
        prog: &str,
        ifindex: u32,
        at: TcAttachType,
        pin: &str,
    ) -> Result<Attached> {
        self.attach_tc_ordered(prog, ifindex, at, pin, LinkOrder::default())
    }

    /// [`Self::attach_tc`] before every program already on the hook.
    pub fn attach_tc_first(
        &mut self,
        prog: &str,
        ifindex: u32,
        at: TcAttachType,
        pin: &str,
    ) -> Result<Attached> {
        self.attach_tc_ordered(prog, ifindex, at, pin, LinkOrder::first())
    }

    /// [`Self::attach_tc`] before the program of hook `before` when that is
    /// a live tcx link on the same device (a program that must see the
    /// device's frames first), else after every program.
    pub fn attach_tc_before(
        &mut self,
        prog: &str,
        ifindex: u32,
        at: TcAttachType,
        pin: &str,
        before: &str,
    ) -> Result<Attached> {
        let order = match self.hook(before) {
            HookAt::Link(_) if self.tcx_pin_alive(before, ifindex, at) => {
                match self.hook_program_id(before) {
                    // SAFETY: an id the kernel gave; a stale one only makes
                    // the attach fail.
                    Some(id) => LinkOrder::before_program_id(unsafe { ProgramId::new(id) }),
                    None => LinkOrder::default(),
                }
            }
            _ => LinkOrder::default(),
        };
        self.attach_tc_ordered(prog, ifindex, at, pin, order)
    }

    fn attach_tc_ordered(
        &mut self,
        prog: &str,
        ifindex: u32,
        at: TcAttachType,
        pin: &str,
        order: LinkOrder,
    ) -> Result<Attached> {
        if self.tcx_pin_alive(pin, ifindex, at) {
            return self.update_link(prog, pin, false);
        }
        let path = match self.hook(pin) {
            HookAt::Filter(f) => {
                // Not alive: no filter is there to remove first.
                f.attach(self.classifier(prog)?)
                    .map_err(|e| e.context(format!("attaching {prog} to ifindex {ifindex}")))?;
                return Ok(Attached::New);
            }
            HookAt::Link(path) => path,
        };
        if pins::tc_hooks_in(self.dir()) == TcHooks::Tcx {
            crate::features::Feature::Tcx.require(&format!("attaching {prog} (tcx)"))?;
        }
        self.unpin(pin)?;
        let p = self.classifier(prog)?;
        let id = p
            .attach(
                ifindex,
                TcAttach::Tcx {
                    attach_type: at,
                    order,
                },
            )
            .map_err(|e| {
                Error::from(e).context(format!("attaching {prog} to ifindex {ifindex}"))
            })?;
        let link: FdLink = p.take_link(id)?.try_into()?;
        link.pin(&path)?;
        Ok(Attached::New)
    }

    /// Hooks `prog` on port `ifindex`, a host-side veth this add has just
    /// made: nothing can be on it yet, so no query first.
    pub fn hook_new_port(&mut self, prog: &str, ifindex: u32) -> Result<()> {
        let hook = Hook::PortTx {
            host_ifindex: ifindex,
        };
        if self.port_links() {
            let pin = hook.to_string();
            return self
                .attach_tc(prog, ifindex, TcAttachType::Ingress, &pin)
                .map(drop);
        }
        let place = hook.tc_place().expect("a port's hook has a place");
        place
            .attach(self.classifier(prog)?)
            .map_err(|e| e.context(format!("attaching {prog} to ifindex {ifindex}")))
    }

    /// Attaches the XDP receive program on a parent: native mode, or generic
    /// when the driver cannot (returned: "native" or "generic").
    pub fn attach_xdp(&mut self, ifindex: u32, pin: &str) -> Result<&'static str> {
        self.unpin(pin)?;
        let path = pins::link_path(self.dir(), pin);
        let p = self.xdp_program()?;
        let (id, mode) = match p.attach(ifindex, XdpMode::Driver) {
            Ok(id) => (id, "native"),
            Err(native) => {
                let id = p.attach(ifindex, XdpMode::Skb).map_err(|generic| {
                    Error::from(generic).context(format!(
                        "attaching XDP to ifindex {ifindex} (native mode failed too: {})",
                        crate::error::chain(&native)
                    ))
                })?;
                (id, "generic")
            }
        };
        let link: FdLink = p.take_link(id)?.try_into()?;
        link.pin(&path)?;
        Ok(mode)
    }

    /// Attaches XDP program `prog` (native mode) to device `ifindex` of the
    /// namespace `ns`, its link pinned as `pin`: the link is made from
    /// inside `ns` (an ifindex means a device of the caller's namespace),
    /// the program loaded and the pin made here.
    pub fn attach_xdp_in(&mut self, ns: &Netns, prog: &str, ifindex: u32, pin: &str) -> Result<()> {
        self.unpin(pin)?;
        let path = pins::link_path(self.dir(), pin);
        let p = self.xdp(prog)?;
        let id = ns
            .run(|| p.attach(ifindex, XdpMode::Driver))?
            .map_err(|e| {
                Error::from(e).context(format!("attaching {prog} to ifindex {ifindex} in {ns:?}"))
            })?;
        let link: FdLink = p.take_link(id)?.try_into()?;
        link.pin(&path)?;
        Ok(())
    }

    /// Switches the link pinned as `pin` to this build of `prog` in place
    /// (`bpf_link_update`: atomic, the hook never runs without a program).
    /// Without `force`, a link already running this build is kept.
    pub fn update_link(&mut self, prog: &str, pin: &str, force: bool) -> Result<Attached> {
        if !force && self.pin_runs_current(prog, pin)? {
            return Ok(Attached::Kept);
        }
        let path = match self.hook(pin) {
            HookAt::Filter(f) => {
                f.replace(self.classifier(prog)?)
                    .map_err(|e| e.context(format!("updating {prog} ({pin})")))?;
                return Ok(Attached::Updated);
            }
            HookAt::Link(path) => path,
        };
        let link = FdLink::from(PinnedLink::from_pin(path)?);
        let updated = if prog == PROG_RX_XDP || prog == PROG_EP_XDP {
            self.xdp(prog)?.attach_to_link(link.try_into()?).map(drop)
        } else {
            self.classifier(prog)?
                .attach_to_link(link.try_into()?)
                .map(drop)
        };
        updated.map_err(|e| Error::from(e).context(format!("updating {prog} ({pin})")))?;
        Ok(Attached::Updated)
    }

    /// Removes a link pin, which detaches its program. Absent is fine.
    pub fn unpin(&self, pin: &str) -> Result<()> {
        pins::unpin_in(self.dir(), pin)
    }
}
