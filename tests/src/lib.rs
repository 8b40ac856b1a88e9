//! Test support for `attach`: network-namespace labs, reachability probes and
//! result matrices. Everything lives under [`lab`].

mod attach;
pub mod burst;
pub mod cgroup;
pub mod cni;
pub mod dhcp;
pub mod dnsmasq;
pub mod flow;
pub mod kinds;
pub mod lab;
mod matrix;
mod netns;
pub mod podman;
pub mod poll;
mod probe;
pub mod reach;
pub mod refusal;
pub mod report;
pub mod routed;
pub mod sleeper;
pub mod snapshot;
pub mod stale;
pub mod vm;
