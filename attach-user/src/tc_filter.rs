//! Our tc programs as cls_bpf filters (direct action) on a clsact qdisc:
//! the hook of every endpoint port, and of parents, uplinks and taps on
//! kernels without tcx (before 6.6) or when `ATTACH_TC_HOOKS=clsact`.
//!
//! Why ports always: attaching a tcx program swaps the device's program
//! array and then waits for an RCU grace period (`synchronize_rcu` in
//! `tcx_entry_sync`), about 11 ms here and half of an `add`; a filter on a
//! fresh clsact qdisc is published without waiting. Like a link, a filter
//! lives and dies with its device, and replacing its program is atomic. It
//! has no pin: it is found by its place (device, direction, priority and
//! [`HANDLE`]), which the hook's name gives (see `datapath::Hook`).

use std::io;

use aya::programs::{
    SchedClassifier, TcAttachType,
    tc::{self, NlOptions, SchedClassifierLink, TcAttach, TcHandle},
};
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP};
use netlink_packet_route::{
    RouteNetlinkMessage,
    tc::{TcAttribute, TcFilterBpfOption, TcHandle as NlHandle, TcMessage, TcOption},
};

use crate::error::{Error, Result};
use crate::nlsync;

/// Every filter of ours has this handle at its priority.
const HANDLE: TcHandle = TcHandle::new(0, 1);

/// A filter's place. Priorities order our programs on one hook (lower runs
/// first): see `datapath::Hook`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    pub ifindex: u32,
    pub at: TcAttachType,
    pub priority: u16,
}

/// A filter found on a device, with the name of its program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub filter: Filter,
    pub handle: u32,
    pub name: String,
    pub program_id: Option<u32>,
}

impl Filter {
    fn options(&self) -> NlOptions {
        NlOptions {
            priority: self.priority,
            handle: HANDLE,
            classid: None,
        }
    }

    /// Hooks `prog` here (a clsact qdisc is added if missing).
    pub fn attach(&self, prog: &mut SchedClassifier) -> Result<()> {
        add_clsact(self.ifindex)?;
        let id = prog
            .attach(
                self.ifindex,
                TcAttach::Netlink {
                    parent: self.at.into(),
                    options: self.options(),
                },
            )
            .map_err(|e| match &e {
                aya::programs::ProgramError::TcError(tc::TcError::NetlinkError(io))
                    if io.raw_os_error() == Some(libc::EEXIST) =>
                {
                    Error::conflict(format!(
                        "another tc filter holds priority {} handle 1 on the {} hook of \
                         ifindex {}",
                        self.priority,
                        direction(self.at),
                        self.ifindex
                    ))
                }
                _ => Error::from(e),
            })?;
        keep(prog, id)
    }

    /// Switches the filter to `prog` in place.
    pub fn replace(&self, prog: &mut SchedClassifier) -> Result<()> {
        let link = SchedClassifierLink::attached(
            self.ifindex,
            self.at.into(),
            self.priority,
            HANDLE,
            None,
        )?;
        let id = prog.attach_to_link(link)?;
        keep(prog, id)
    }

    /// Removes the filter; a missing filter, qdisc or device is fine.
    pub fn detach(&self) -> Result<()> {
        let mut msg = header(self.ifindex, self.at);
        msg.header.handle = u32::from(HANDLE).into();
        msg.header.info = u32::from(self.priority) << 16;
        match nlsync::request(RouteNetlinkMessage::DelTrafficFilter(msg), NLM_F_ACK) {
            Ok(_) => Ok(()),
            Err(e) if gone(&e) => Ok(()),
            Err(e) => Err(Error::system(format!(
                "removing the tc filter at priority {} of ifindex {}: {e}",
                self.priority, self.ifindex
            ))),
        }
    }

    /// The id of the program in the filter, if the filter is there.
    pub fn program_id(&self) -> Option<u32> {
        on_device(self.ifindex, self.at)
            .ok()?
            .into_iter()
            .find(|f| f.filter == *self && f.handle == u32::from(HANDLE))
            .and_then(|f| f.program_id)
    }
}

/// The filter must outlive this process: a link left in the program object
/// would be detached when the object is dropped.
fn keep(prog: &mut SchedClassifier, id: tc::SchedClassifierLinkId) -> Result<()> {
    std::mem::forget(prog.take_link(id)?);
    Ok(())
}

fn add_clsact(ifindex: u32) -> Result<()> {
    match tc::qdisc_add_clsact(ifindex) {
        Ok(()) => Ok(()),
        Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::ENOENT) => {
            Err(Error::system(format!(
                "adding a clsact qdisc to ifindex {ifindex}: the kernel has no clsact \
                 (CONFIG_NET_SCH_INGRESS, module sch_ingress)"
            )))
        }
        Err(e) => Err(Error::system(format!(
            "adding a clsact qdisc to ifindex {ifindex}: {e}"
        ))),
    }
}

/// Removes the clsact qdisc of `ifindex` when no filter is left on either
/// of its hooks (ours are gone; nobody else's were there). Best effort.
pub fn remove_clsact_if_empty(ifindex: u32) {
    let empty = [TcAttachType::Ingress, TcAttachType::Egress]
        .into_iter()
        .all(|at| on_device(ifindex, at).is_ok_and(|f| f.is_empty()));
    if empty {
        let mut msg = TcMessage::with_index(ifindex as i32);
        msg.header.parent = NlHandle::INGRESS;
        msg.header.handle = NlHandle {
            major: 0xffff,
            minor: 0,
        };
        msg.attributes.push(TcAttribute::Kind("clsact".into()));
        if let Err(e) = nlsync::request(RouteNetlinkMessage::DelQueueDiscipline(msg), NLM_F_ACK)
            && !gone(&e)
        {
            tracing::debug!("removing the clsact qdisc of ifindex {ifindex}: {e}");
        }
    }
}

/// The filters on one hook of `ifindex` (none when it has no clsact).
pub fn on_device(ifindex: u32, at: TcAttachType) -> io::Result<Vec<Found>> {
    let answers = match nlsync::request(
        RouteNetlinkMessage::GetTrafficFilter(header(ifindex, at)),
        NLM_F_DUMP,
    ) {
        Ok(a) => a,
        Err(e) if gone(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(answers
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewTrafficFilter(f) => Some(f),
            _ => None,
        })
        .filter(|f| f.attributes.contains(&TcAttribute::Kind("bpf".into())))
        .map(|f| found(ifindex, at, &f))
        .collect())
}

fn found(ifindex: u32, at: TcAttachType, f: &TcMessage) -> Found {
    let bpf = f
        .attributes
        .iter()
        .filter_map(|a| match a {
            TcAttribute::Options(opts) => Some(opts),
            _ => None,
        })
        .flatten()
        .filter_map(|o| match o {
            TcOption::Bpf(b) => Some(b),
            _ => None,
        });
    let (mut name, mut program_id) = (String::new(), None);
    for o in bpf {
        match o {
            TcFilterBpfOption::ProgId(id) => program_id = Some(*id),
            TcFilterBpfOption::ProgName(n) => name = n.clone(),
            _ => {}
        }
    }
    Found {
        filter: Filter {
            ifindex,
            at,
            priority: (f.header.info >> 16) as u16,
        },
        handle: u32::from(f.header.handle),
        name,
        program_id,
    }
}

fn header(ifindex: u32, at: TcAttachType) -> TcMessage {
    let mut msg = TcMessage::default();
    msg.header.index = ifindex as i32;
    msg.header.parent = NlHandle {
        major: 0xffff,
        minor: match at {
            TcAttachType::Egress => NlHandle::MIN_EGRESS,
            _ => NlHandle::MIN_INGRESS,
        },
    };
    msg
}

fn direction(at: TcAttachType) -> &'static str {
    match at {
        TcAttachType::Egress => "egress",
        _ => "ingress",
    }
}

/// A missing filter, qdisc or device.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ENODEV | libc::EINVAL)
    )
}
