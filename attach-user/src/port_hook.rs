//! An endpoint port's transmit hook: a cls_bpf filter (direct action) on
//! the clsact ingress of the host-side veth, instead of a tcx link.
//!
//! Why: attaching a tcx program swaps the device's program array and then
//! waits for an RCU grace period (`synchronize_rcu` in `tcx_entry_sync`),
//! about 11 ms here and half of an `add`; a filter on a fresh clsact qdisc
//! is published without waiting. Like the link it replaces, the filter lives
//! and dies with its device, and replacing its program is atomic. It has no
//! pin: it is found by its place (clsact ingress, [`PRIORITY`], [`HANDLE`]).
//! Parents, uplinks and taps (a few per node) keep tcx links.

use std::io;

use aya::programs::{
    SchedClassifier, TcAttachType,
    tc::{self, NlOptions, SchedClassifierLink, TcAttach, TcHandle},
};
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    tc::{TcAttribute, TcFilterBpfOption, TcHandle as NlHandle, TcMessage, TcOption},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{Error, Result};

/// The filter's priority on the hook (lower runs first).
const PRIORITY: u16 = 1;
/// The filter's handle at that priority.
const HANDLE: TcHandle = TcHandle::new(0, 1);

fn parent() -> TcHandle {
    TcAttachType::Ingress.into()
}

fn options() -> NlOptions {
    NlOptions {
        priority: PRIORITY,
        handle: HANDLE,
        classid: None,
    }
}

/// Hooks `prog` on `ifindex` (a clsact qdisc is added if missing).
pub fn attach(prog: &mut SchedClassifier, ifindex: u32) -> Result<()> {
    match tc::qdisc_add_clsact(ifindex) {
        Ok(()) => {}
        Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => {
            return Err(Error::system(format!(
                "adding a clsact qdisc to ifindex {ifindex}: {e}"
            )));
        }
    }
    let id = prog.attach(
        ifindex,
        TcAttach::Netlink {
            parent: parent(),
            options: options(),
        },
    )?;
    keep(prog, id)
}

/// Switches the hook on `ifindex` to `prog` in place.
pub fn replace(prog: &mut SchedClassifier, ifindex: u32) -> Result<()> {
    let link = SchedClassifierLink::attached(ifindex, parent(), PRIORITY, HANDLE, None)?;
    let id = prog.attach_to_link(link)?;
    keep(prog, id)
}

/// The filter must outlive this process: a link left in the program object
/// would be detached when the object is dropped.
fn keep(prog: &mut SchedClassifier, id: tc::SchedClassifierLinkId) -> Result<()> {
    std::mem::forget(prog.take_link(id)?);
    Ok(())
}

/// Removes the hook; a missing filter, qdisc or device is fine.
pub fn detach(ifindex: u32) -> Result<()> {
    let mut msg = header(ifindex);
    msg.header.handle = u32::from(HANDLE).into();
    msg.header.info = u32::from(PRIORITY) << 16;
    match request(RouteNetlinkMessage::DelTrafficFilter(msg), NLM_F_ACK) {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ENODEV | libc::EINVAL)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(Error::system(format!(
            "removing the port hook of ifindex {ifindex}: {e}"
        ))),
    }
}

/// The id of the program in the hook on `ifindex`, if there is one.
pub fn program_id(ifindex: u32) -> Option<u32> {
    let filters = request(
        RouteNetlinkMessage::GetTrafficFilter(header(ifindex)),
        NLM_F_DUMP,
    )
    .ok()?;
    filters
        .iter()
        .filter(|f| f.header.info >> 16 == u32::from(PRIORITY))
        .filter(|f| u32::from(f.header.handle) == u32::from(HANDLE))
        .flat_map(|f| &f.attributes)
        .find_map(|a| match a {
            TcAttribute::Options(opts) => opts.iter().find_map(|o| match o {
                TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => Some(*id),
                _ => None,
            }),
            _ => None,
        })
}

fn header(ifindex: u32) -> TcMessage {
    let mut msg = TcMessage::default();
    msg.header.index = ifindex as i32;
    msg.header.parent = NlHandle {
        major: 0xffff,
        minor: NlHandle::MIN_INGRESS,
    };
    msg
}

/// Sends one request on a fresh NETLINK_ROUTE socket (of this thread's
/// namespace); the filters it answers with, until the ack or the dump's end.
fn request(body: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<TcMessage>> {
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    let mut req = NetlinkMessage::from(body);
    req.header.flags = NLM_F_REQUEST | flags;
    req.header.sequence_number = 1;
    req.finalize();
    let mut buf = vec![0; req.buffer_len()];
    req.serialize(&mut buf);
    sock.send(&buf, 0)?;
    let mut out = Vec::new();
    loop {
        let (data, _) = sock.recv_from_full()?;
        let mut off = 0;
        while off < data.len() {
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        None => Ok(out),
                        Some(_) => Err(e.to_io()),
                    };
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewTrafficFilter(f)) => {
                    out.push(f)
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            off += (len + 3) & !3;
        }
    }
}
