//! hb_beamr's NIF: thin glue between Erlang and beamr_core / wasmer.
//!
//! Layers, each using only those above it:
//! * [`atoms`]; [`codec`] (terms <-> wasm values) and [`bytes`] (binaries handed over
//!   without copying); [`error`] (every `{error, Reason}`, one type);
//!   [`options`] (start and call options); [`request`] (what a command asks for).
//! * [`hibernation`]: an instance's hibernation state and the hand-offs between the
//!   executor that hibernates and the request that revives; node-wide counts.
//! * [`instance`]: the instance resource shared by NIFs and its executor, the commands
//!   and events between them, the hand-over slot and the registry of instances by pid.
//! * [`messages`]: events as Erlang terms, in the three protocols.
//! * [`nif_cpu_time`]: how long the waiting NIFs keep their core, for `make bench-load`.
//! * [`executor`]: one thread per instance owning the Store; runs wasm and imports.
//! * [`budget`]: the `max_live` budget thread.
//! * [`nifs`]: the functions Erlang calls, one file per family.

mod atoms;
mod budget;
mod bytes;
mod codec;
mod error;
mod executor;
mod hibernation;
mod instance;
mod messages;
mod nif_cpu_time;
mod nifs;
mod options;
mod request;

fn load(_env: rustler::Env, _info: rustler::Term) -> bool {
    executor::set_wasm_stack_size();
    true
}

rustler::init!("hb_beamr_nif", load = load);
