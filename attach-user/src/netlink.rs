//! rtnetlink, bound to one network namespace per connection.

mod conn;
mod link;
mod route;
mod sriov;

pub use conn::Rtnl;
pub use link::{BridgeSettings, Link, LinkChange, PortVlan, macvlan_mode};
pub use sriov::{VfConfig, VfSet, move_message, vf_config_of, vf_get_message, vf_set_message};
