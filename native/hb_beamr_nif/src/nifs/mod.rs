//! The functions Erlang calls (`hb_beamr_nif`), one file per family: `lifecycle.rs`
//! (start, stop), `hibernation.rs` (`hibernate`, `stats`), `call.rs`, `imports.rs` (answers to import requests), `asynchronous.rs`
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
mod hibernation;
mod imports;
mod info;
mod inspect;
mod lifecycle;
mod memory;
mod snapshot;

use std::sync::Arc;

use beamr_core::failure::{CallFailure, Resource};
use rustler::{Encoder, Env, LocalPid, ResourceArc, Term};

use crate::atoms;
use crate::budget;
use crate::error::Error;
use crate::executor;
use crate::hibernation::{Stored, Wake};
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
    shared: &Arc<Shared>,
    command: impl FnOnce(LocalPid, Arc<ReplySlot>) -> Command,
) -> Result<Term<'a>, Error<'a>> {
    let caller = env.pid();
    let slot = ReplySlot::new(caller);
    let armed = slot.arm();
    submit(env, shared, command(caller, slot.clone()))?;
    Ok(awaited(env, shared, &slot, armed))
}

/// Queues `command`; a request that finds the instance hibernated revives it (see
/// `hibernation`). The requests that cannot be served then (the OS refused the
/// executor's thread, the instance stopped meanwhile) are answered here, as messages.
fn submit<'a>(env: Env<'a>, shared: &Arc<Shared>, command: Command) -> Result<(), Error<'a>> {
    match shared.submit(command).map_err(|_| Error::Stopped)? {
        Wake::Nothing => {}
        Wake::Gone => answer_queued(env, shared, shared.mailbox.close(), &CallFailure::Stopped),
        Wake::Revive(stored) => revive(env, shared, stored),
    }
    Ok(())
}

fn revive(env: Env, shared: &Arc<Shared>, stored: Stored) {
    let Some(resource) = instance::lookup(&shared.owner) else {
        // Stopped since the command was queued: nothing will serve it.
        stored.discard();
        return answer_queued(env, shared, shared.mailbox.close(), &CallFailure::Stopped);
    };
    let Err(refused) = executor::revive(resource, stored) else {
        return budget::check_budget();
    };
    // No executor runs, and this request alone holds the right to start one.
    let failure = CallFailure::ResourceLimit(Resource::Thread);
    let refuse = |command| answer_queued(env, shared, vec![command], &failure);
    let stopped = || shared.is_stopped();
    if !shared
        .hibernation
        .give_back(*refused, &shared.mailbox, stopped, refuse)
    {
        answer_queued(env, shared, shared.mailbox.close(), &CallFailure::Stopped);
    }
}

/// Answers `commands` (requests that will not be served) as messages.
fn answer_queued(env: Env, shared: &Shared, commands: Vec<Command>, failure: &CallFailure) {
    for command in commands {
        if let Some(caller) = command.caller() {
            if let Some(message) = messages::refusal(env, shared, command, failure) {
                let _ = env.send(&caller, message);
            }
        }
    }
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
