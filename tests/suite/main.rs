//! Cross-crate tests: the built `ragged` binary with real plugin libraries loaded at run time.

#![allow(clippy::unwrap_used)]

mod abi_compat;
mod choose;
mod config;
mod crash;
mod docs;
mod migrate;
mod panics;
mod plugin_cli;
mod sync;
mod third_party;
mod verify;
