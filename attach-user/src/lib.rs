//! attach: container network attachment, with macvlan semantics implemented
//! in eBPF beside the kernel's own drivers.
//!
//! Library first: [`engine::Engine`] is the API; the `attach` binary is a
//! thin command line over it.

pub mod addr;
pub mod agent;
pub mod announce;
pub mod bandwidth;
pub mod bench;
pub mod capabilities;
pub mod checksum;
pub mod cli;
pub mod cni;
pub mod cni_ref;
pub mod conflict;
pub mod datapath;
pub mod dhcp;
pub mod docgen;
pub mod endpoint;
pub mod engine;
pub mod ep_cache;
pub mod error;
pub mod features;
pub mod inside;
pub mod journal;
pub mod kinds;
pub mod logging;
pub mod model;
pub mod monitor;
pub mod mount;
pub mod naming;
pub mod netlink;
pub mod netns;
pub mod nlsync;
pub mod node;
pub mod node_id;
pub mod op;
pub mod output;
pub mod packet_socket;
pub mod parse;
pub mod privileges;
pub mod state;
pub mod sys;
pub mod tc_filter;
pub mod verifier;

pub use datapath::EBPF_OBJECT;
pub use engine::Engine;
pub use error::{Error, ErrorKind, Result};
