//! The functions Erlang calls (`hb_beamr_nif`), one file per family: `lifecycle.rs`
//! (start, stop), `call.rs`, `imports.rs` (answers to import requests), `asynchronous.rs`
//! (`call_async` and its answers), `memory.rs`, `snapshot.rs`, `info.rs`, `artifacts.rs`
//! (compile, cache statistics), `inspect.rs`, `bench.rs` (`make bench-load`'s timing).
//!
//! A request NIF checks its arguments, queues a command for the instance's executor and
//! waits a few microseconds for the outcome: `{event, Id, Event}` when it came that fast,
//! `{wait, Id}` when it will arrive as a message `{hb_beamr, Id, Event}`. Only `start`,
//! `compile` and `inspect` do real work here (preparing and compiling), on a dirty
//! scheduler.

mod artifacts;
mod asynchronous;
mod bench;
mod call;
mod imports;
mod info;
mod inspect;
mod lifecycle;
mod memory;
mod snapshot;

use std::sync::Arc;

use rustler::{Encoder, Env, LocalPid, ResourceArc, Term};

use crate::atoms;
use crate::error::Error;
use crate::instance::{self, Command, InstanceResource, ReplySlot, Shared};
use crate::messages;
use crate::nif_cpu_time;

/// The instance whose public handle is `owner`; `stopped` once it is gone.
fn instance<'a>(owner: &LocalPid) -> Result<ResourceArc<InstanceResource>, Error<'a>> {
    instance::lookup(owner).ok_or(Error::Stopped)
}

/// `request` on the instance whose public handle is `owner` (a memory or state operation:
/// nothing to check against the instance first), timed like every waiting NIF.
fn request_to<'a>(
    env: Env<'a>,
    owner: LocalPid,
    command: impl FnOnce(LocalPid, Arc<ReplySlot>) -> Command,
) -> Result<Term<'a>, Error<'a>> {
    let _timed = nif_cpu_time::Timed::start();
    request(env, &instance(&owner)?.shared, command)
}

/// Queues the command built around a fresh slot for the calling process and waits
/// briefly for its outcome.
fn request<'a>(
    env: Env<'a>,
    shared: &Shared,
    command: impl FnOnce(LocalPid, Arc<ReplySlot>) -> Command,
) -> Result<Term<'a>, Error<'a>> {
    let caller = env.pid();
    let slot = ReplySlot::new(caller);
    let armed = slot.arm();
    shared
        .submit(command(caller, slot.clone()))
        .map_err(|_| Error::Stopped)?;
    Ok(awaited(env, shared, &slot, armed))
}

/// `{event, Id, Event}` when the executor answered within the hand-over spin,
/// `{wait, Id}` when the answer will come as a message (always when the slot could not
/// be armed).
fn awaited<'a>(env: Env<'a>, shared: &Shared, slot: &ReplySlot, armed: bool) -> Term<'a> {
    match armed.then(|| slot.wait(shared)).flatten() {
        Some(event) => (atoms::event(), slot.id, messages::event(env, shared, event)).encode(env),
        None => (atoms::wait(), slot.id).encode(env),
    }
}
