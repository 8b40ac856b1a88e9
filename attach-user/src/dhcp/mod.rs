//! DHCPv4 without a daemon: the engine acquires an endpoint's lease from
//! the node before anything is made ([`client::acquire`], on the wire
//! device, replies by broadcast and a per-endpoint client identifier, so
//! ipvlan endpoints sharing a MAC get their own), the record keeps it
//! ([`Lease`]), `attach agent` and `attach reconcile` renew it from inside
//! the container ([`client::renew`]; past T2 [`client::rebind`], with any
//! server) and `del` gives it back
//! ([`client::release`]).

pub mod client;
pub mod lease;
pub mod packet;

pub use lease::Lease;

/// The client identifier of an endpoint (option 61, type 0): stable for
/// (node, container namespace, interface), so an endpoint attached again
/// asks for its address again.
pub fn client_id(node_id: &str, netns_inode: u64, ifname: &str) -> Vec<u8> {
    let mut id = vec![0u8];
    id.extend_from_slice(format!("attach:{node_id}:{netns_inode}:{ifname}").as_bytes());
    id
}
