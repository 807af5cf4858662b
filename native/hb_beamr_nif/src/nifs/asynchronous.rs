//! Asynchronous calls (`hb_beamr:call_async/4`, `reply/2` and the seed's `wasm_send/2`).
//!
//! An asynchronous call is an ordinary call whose events go to the calling process as
//! messages in the call's own protocol instead of `{hb_beamr, Id, Event}` (see
//! `messages`), so a process can drive many calls with a plain `receive`. Its
//! `CallResource` is the public reference: resources are references in Erlang, the same
//! one tags every message, and it is what `reply` needs to find the call. The NIFs still
//! take an event that comes within the hand-over spin; they return it as the message,
//! which the Erlang side sends to itself.

use std::sync::Arc;

use rustler::{Atom, Encoder, Env, LocalPid, ResourceArc, Term};

use super::call::callee;
use super::imports::{fail_import, reply_values, throw_in_import};
use super::instance;
use crate::atoms;
use crate::codec::{bounded_length, bounded_reason, MAX_VALUES};
use crate::error::{Error, Reply};
use crate::instance::{CallResource, Command, Event, Protocol, ReplySlot};
use crate::messages;
use crate::nif_cpu_time;
use crate::options::decode_limits;

/// `call_async(Owner, Func, Args, Opts, async | seed)`: `{ok, Ref}`, or `{ok, Ref, Message}`
/// when the call's first event came at once, or `{error, Reason}`.
#[rustler::nif(name = "call_async")]
fn call_async<'a>(
    env: Env<'a>,
    owner: LocalPid,
    func: Term<'a>,
    arguments: Term<'a>,
    opts: Term<'a>,
    protocol: Atom,
) -> Reply<'a> {
    let _timed = nif_cpu_time::Timed::start();
    let protocol = if protocol == atoms::seed() {
        Protocol::Seed
    } else {
        Protocol::Async
    };
    Reply(submit(env, owner, func, arguments, opts, protocol))
}

fn submit<'a>(
    env: Env<'a>,
    owner: LocalPid,
    func: Term<'a>,
    arguments: Term<'a>,
    opts: Term<'a>,
    protocol: Protocol,
) -> Result<Term<'a>, Error<'a>> {
    let instance = instance(&owner)?;
    let limits = decode_limits(opts)?;
    let func = callee(&instance.shared, func, arguments)?;
    let caller = env.pid();
    let slot = ReplySlot::new(caller);
    let call = CallResource::new(
        Arc::clone(&instance.shared),
        Arc::clone(&slot),
        Some(protocol),
    );
    slot.start_posting();
    let armed = slot.arm();
    let command = Command::Call {
        caller,
        slot,
        func,
        limits,
        handle: Some(call.clone()),
    };
    super::submit(env, &instance.shared, command)?;
    Ok(match taken(&call, armed) {
        Some(event) => (atoms::ok(), &call, message(env, &call, event)).encode(env),
        None => (atoms::ok(), &call).encode(env),
    })
}

/// `async_posted(Ref)`: the event a NIF returned for `Ref` is in the caller's mailbox.
#[rustler::nif]
fn async_posted(call: ResourceArc<CallResource>) -> Atom {
    call.slot.posted();
    atoms::ok()
}

/// `async_reply(Ref, Results)`: answers the call's pending import; `ok`, `{ok, Message}`
/// (the call's next event) or `{error, Reason}` (`badarg` when no import of this call is
/// pending for the calling process).
#[rustler::nif]
fn async_reply<'a>(env: Env<'a>, call: ResourceArc<CallResource>, results: Term<'a>) -> Reply<'a> {
    let _timed = nif_cpu_time::Timed::start();
    let Some(index) = claim_pending(env, &call) else {
        return Reply(Err(Error::NotPending));
    };
    call.slot.start_posting();
    match reply_values(&call, index, results) {
        Ok(armed) => answered(env, &call, armed),
        Err(bad) => {
            call.slot.posted();
            // The call's result names the results that could not be used (a list too
            // long to be any function's results by its length only: it is not copied).
            let results = match bounded_length(results, MAX_VALUES) {
                Err(Some(_)) => (atoms::more_than(), MAX_VALUES).encode(env),
                _ => results,
            };
            let why = (atoms::bad_import_results(), results).encode(env);
            stash_failure(&call, index, why);
            fail_import(&call);
            Reply(Err(bad))
        }
    }
}

/// `async_exception(Ref, Reason)`: throws `Reason` at the call's pending import (see
/// `import_exception`); returns like `async_reply`.
#[rustler::nif]
fn async_exception<'a>(
    env: Env<'a>,
    call: ResourceArc<CallResource>,
    reason: Term<'a>,
) -> Reply<'a> {
    if claim_pending(env, &call).is_none() {
        return Reply(Err(Error::NotPending));
    }
    call.slot.start_posting();
    let armed = throw_in_import(&call, reason);
    answered(env, &call, armed)
}

/// `async_fail(Ref, Why)`: traps the call in its pending import; its result reports
/// `{import_failed, Module, Name, Why}`.
#[rustler::nif]
fn async_fail<'a>(env: Env<'a>, call: ResourceArc<CallResource>, why: Term<'a>) -> Reply<'a> {
    let Some(index) = claim_pending(env, &call) else {
        return Reply(Err(Error::NotPending));
    };
    stash_failure(&call, index, why);
    fail_import(&call);
    Reply(Ok(atoms::ok().encode(env)))
}

/// `async_pending(Ref)`: whether an import of the call waits for the calling process.
#[rustler::nif]
fn async_pending(env: Env, call: ResourceArc<CallResource>) -> bool {
    call.slot.is_pending_for(env.pid())
}

/// The import of asynchronous call `call` that waits for the calling process, claimed
/// for its answer.
fn claim_pending(env: Env, call: &CallResource) -> Option<usize> {
    call.protocol
        .and_then(|_| call.slot.claim_pending(env.pid()))
}

/// What an answer to an import returns: `{ok, Message}` with the call's next event when
/// the executor gave it within the hand-over spin, else `ok`.
fn answered<'a>(env: Env<'a>, call: &ResourceArc<CallResource>, armed: bool) -> Reply<'a> {
    Reply(Ok(match taken(call, armed) {
        Some(event) => (atoms::ok(), message(env, call, event)).encode(env),
        None => atoms::ok().encode(env),
    }))
}

/// The call's next event if it comes within the hand-over spin; it then stays marked as
/// being posted (see `ReplySlot::start_posting`).
fn taken(call: &CallResource, armed: bool) -> Option<Event> {
    let event = armed.then(|| call.slot.wait(&call.shared)).flatten();
    if event.is_none() {
        call.slot.posted();
    }
    event
}

fn message<'a>(env: Env<'a>, call: &ResourceArc<CallResource>, event: Event) -> Term<'a> {
    messages::asynchronous(env, &call.shared, call, event)
}

/// Keeps `why` (copied out of the NIF's environment, see `bounded_reason`) for the call's
/// result.
fn stash_failure(call: &CallResource, index: usize, why: Term) {
    *call.failure.lock() = Some((index, bounded_reason(why)));
}
