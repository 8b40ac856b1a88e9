//! The eBPF datapath of one node: loading the programs, attaching them with
//! pinned links (so they outlive this process), and the maps they share.
//!
//! The files, from the leaves up (none uses one above it):
//! - `progs`: the programs' names; `hook`: the hooks' names ([`Hook`]);
//! - `object`: the compiled object, its builds, loading it;
//! - `pins`: where a hook is (a link pin or a filter), from the pin
//!   directory alone; `table`: [`Table`], a typed hash map;
//! - `node`: [`Datapath`] itself, its maps and programs held open;
//! - `attach`, `cgroup`: attaching programs and keeping them current;
//! - `endpoints`, `tables`, `redirect`, `unowned`: the maps' entries as
//!   the kinds read and write them.

mod attach;
mod bandwidth;
mod cgroup;
pub(crate) mod devmap;
mod endpoints;
mod flood;
mod hook;
mod node;
mod object;
mod pins;
pub mod progs;
mod redirect;
mod table;
mod tables;
mod unowned;

pub use attach::Attached;
pub use hook::{
    Hook, NotAHook, cgroup_links, ipvlan_parent_link, nested_uplink_link, parent_links, port_link,
    port_xdp_link, router_uplink_link, tap_link, tc_place, uplink_link,
};
pub use node::Datapath;
pub(crate) use object::load_program;
pub use object::{
    EBPF_BUILD_ENV, EBPF_OBJECT, EBPF_OBJECT_COMPAT, LOG_PIN, check_row_len, compat_build,
    ebpf_object,
};
pub use progs::*;
pub use table::Table;
pub use unowned::{Owned, Unowned};
