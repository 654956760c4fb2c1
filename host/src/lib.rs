//! ragged: moves vector collections between vector stores through store plugins.
//!
//! Code map (see docs/architecture.md for the invariants):
//! - [`cli`]: clap definitions and one `exec` per subcommand; the only module that knows the terminal
//!   and the command line.
//! - [`context`]: where ragged keeps its files (home, plugin dirs), resolved once.
//! - [`config`]: `~/.ragged/config/backend.toml`: migration settings, named stores, personas.
//! - [`plugin_manager`]: discovers, validates, packages, installs and loads plugins; opens stores.
//! - [`store`]: store specs (`BACKEND:LOCATION`) and an opened store.
//! - [`guard`]: every call into a plugin's store on a worker thread with a time limit, and every
//!   record stream a plugin returns checked before it is read.
//! - [`migrate`], [`verify`], [`cleanup`]: the engines; they see only the safe `Backend` trait.
//! - [`sync`], [`dual_write`], [`ingest`]: switching without downtime: incremental sync by record
//!   digests, writing to several stores with a retry file, reading records from JSONL/Parquet files.
//! - [`backup`], [`runs`]: backup archives, and migration runs (checkpoints) on disk.
//! - [`benchmark`], [`select`], [`platform`]: measuring stores on the same records, recommending one
//!   from measured sizes and speed, and what this machine is and which plugins work on it.
//! - [`conformance`]: the checks `ragged plugin test` runs against any plugin.
//! - [`corpus`]: deterministic synthetic collections for demos, tests and benchmarks.
//! - [`records`]: reading canonical batches on the host side (digests, comparisons).
//! - [`tree`]: digests of directory trees (proof that a store was left unchanged).
//! - [`output`]: the one place that prints.
//! - [`allocator`]: the settings of glibc's malloc, and handing freed memory back.
//! - `fuzzing` (not API): entry points for the fuzz targets in `tests/fuzz`.

pub mod allocator;
pub mod backup;
pub mod benchmark;
pub mod cleanup;
pub mod cli;
pub mod config;
pub mod conformance;
pub mod context;
pub mod corpus;
pub mod dual_write;
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod ingest;
pub mod migrate;
pub mod output;
pub mod platform;
pub mod plugin_manager;
pub mod records;
pub mod runs;
pub mod select;
pub mod store;
pub mod sync;
pub mod tree;
pub mod verify;
