//! The attach datapath for kernels without `bpf_loop` (before 5.17): the
//! same programs as `main.rs`, with flood rows walked by an open-coded loop.
//! A build of its own because a program that so much as names a
//! `bpf_loop` callback (a `BPF_PSEUDO_FUNC` load, 5.13) is refused by such
//! kernels before the verifier looks at which branch runs.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![allow(clippy::unnecessary_cast, clippy::not_unsafe_ptr_arg_deref)]

/// Whether flood rows are walked open-coded: yes in this build.
const OPEN_WALK: bool = true;

include!("hooks.rs");
