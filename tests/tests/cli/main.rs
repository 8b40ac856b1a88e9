//! The CLI's contract for bad input and failure.
//!
//! Every rejected `attach add` exits non-zero with the documented code
//! (2 invalid input, 3 not found, 4 conflict, 1 system; clap's own parse
//! errors exit 2), names the value at fault (on stderr in text mode; as
//! `{"error": {"kind", "message"}}` on stdout with `-o json`), and leaves the
//! node exactly as it was: `snapshot` before and after must be equal. Each
//! case runs on an empty node (so the first-endpoint path, which loads the
//! datapath, is rolled back too), beside a healthy eBPF attachment and beside
//! a healthy native one (which must keep working).
//!
//! Also: `del` is idempotent and survives a deleted namespace, `list -o json`
//! has the documented fields, NETNS can be a name, a path or a pid, and
//! `reset` removes everything.

mod bad_input;
mod foreign_xdp;
mod privileges;
mod records;
mod values;

use attach_tests::{
    kinds,
    lab::{NODE_IF, Netns},
};

/// `add macvlan` of `c` on the lab's parent, then `extra`.
fn add_macvlan<'a>(c: &'a Netns, extra: &[&'a str]) -> Vec<&'a str> {
    kinds::add_macvlan(NODE_IF, c, "10.77.0.11/24", extra)
}
