//! hb_beamr's NIF: thin glue between Erlang and beamr_core / wasmer.
//!
//! * [`nifs`]: the functions Erlang calls; they queue commands and return at once.
//! * [`executor`]: one thread per instance owning the Store; runs wasm and imports.
//! * [`mailbox`], [`command`]: the queue between the two; [`handover`]: a request's events
//!   (both thin users of `beamr_core::handoff`).
//! * [`instance`], [`registry`]: the resource shared by both, found by owner pid.
//! * [`codec`], [`trap`], [`memory`], [`bytes`]: values, errors and memory access.
//! * [`state`]: full snapshots (memory, globals, table 0) and their restore.
//! * [`emscripten`]: Emscripten's `invoke_*` imports, answered natively; [`table`]: the
//!   entries of table 0 that they and integer function references call.
//! * [`asynchronous`]: `call_async`'s calls, whose events are messages in their own protocol.
//! * [`inspect`]: what a module declares and needs, without compiling it (`beamr inspect`).
//! * [`artifacts`]: wasm, compiled artifacts and the caches behind `start` and `compile`.
//! * [`nif_cpu_time`]: how long the waiting NIFs keep their core, for `make bench-load`.

mod artifacts;
mod asynchronous;
mod atoms;
mod bytes;
mod codec;
mod command;
mod emscripten;
mod executor;
mod handover;
mod inspect;
mod instance;
mod mailbox;
mod memory;
mod nif_cpu_time;
mod nifs;
mod registry;
mod state;
mod table;
mod trap;

fn load(_env: rustler::Env, _info: rustler::Term) -> bool {
    executor::set_wasm_stack_size();
    true
}

rustler::init!("hb_beamr_nif", load = load);
