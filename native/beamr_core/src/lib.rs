//! Pure-Rust core of hb_beamr: everything that does not need the Erlang VM.
//!
//! * [`prepare`] rewrites a module so wasmer can run it (memory64 lowering,
//!   legacy exceptions, snapshot globals, WAMR page layout).
//! * [`engine`] owns the process-wide wasmer engines (default and deterministic), whose
//!   [`tunables`] refuse tables the host cannot allocate rather than abort;
//!   [`compile`] turns bytes into a compiled module through preparation, keeping modules
//!   in a [`cache`] in memory and a [`disk_cache`] on disk, and loads [`artifact`]s
//!   (serialized native code, authenticated with HMAC-SHA-256).
//! * [`executor_thread`] starts threads whose thread and signal stacks share one mapping.
//! * [`os_limits`] keeps instances from taking the mappings the Erlang VM needs.
//! * [`fuel`] accounts for the fuel of a call (interruption checks and gas budgets).
//! * [`inspect`] lists what a module declares and the preparation passes it needs.
//! * [`wamr_aot`] recognises WAMR AOT images, which cannot run here.
//! * [`failure`] classifies why a call failed (traps, the host's own errors).
//! * [`state`] captures and restores an instance's whole state (memory, globals, table 0)
//!   as snapshots; [`memory_access`] serves reads and writes of memory 0 between calls;
//!   [`table`] resolves entries of table 0 as callees.
//! * [`store_objects`] drops the exception and function objects a Store keeps once nothing
//!   can reach them.
//! * [`snapshot`] encodes, decodes and validates snapshots of an instance's state (full,
//!   and deltas chained to them); [`dirty_pages`] finds the pages a delta must hold.
//! * [`signature`] renders wasm function types in HyperBEAM's signature strings.
//! * [`handoff`] holds the hand-overs between NIFs and executor threads
//!   (command mailbox, reply slot), generic over what they carry: the `beamr_handoff`
//!   crate, re-exported (a crate of its own so loom can model-check it without wasmer).

pub mod artifact;
pub mod cache;
pub mod compile;
pub mod dirty_pages;
pub mod disk_cache;
pub mod emscripten;
pub mod engine;
pub mod executor_thread;
pub mod failure;
pub mod fuel;
pub mod image_dir;
pub mod inspect;
pub mod memory_access;
pub mod os_limits;
pub mod prepare;
pub mod signature;
pub mod snapshot;
pub mod state;
pub mod store_objects;
pub mod table;
pub mod tunables;
pub mod wamr_aot;

pub use beamr_handoff as handoff;
