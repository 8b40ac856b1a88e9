//! Exists so attach-user can build-depend on this crate (and so be rebuilt
//! when it changes); the programs are the `attach` binary (and
//! `attach-compat`), built for the bpf target.
#![no_std]
