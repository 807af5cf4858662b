//! Asynchronous calls (`hb_beamr:call_async/4`, `reply/2` and the seed's `wasm_send/2`).
//!
//! An asynchronous call is an ordinary call whose events go to the calling process as
//! messages in the call's own protocol instead of `{hb_beamr, Id, Event}`, so a process can
//! drive many calls with a plain `receive`. Its `CallResource` is the public reference:
//! resources are references in Erlang, the same one tags every message, and it is what
//! `reply` needs to find the call. The NIFs still take an event that comes within the
//! hand-over spin; they return it as the message, which the Erlang side sends to itself.

use std::sync::Arc;

use rustler::types::tuple::make_tuple;
use rustler::{Atom, Encoder, Env, LocalPid, ResourceArc, Term};

use crate::atoms;
use crate::codec::{bounded_reason, charlist, MAX_VALUES};
use crate::command::{Callee, Command, Limits};
use crate::handover::{CallResource, Event, ReplySlot};
use crate::instance::Shared;
use crate::nif_cpu_time;
use crate::nifs::{callee, decode_limits, error, fail_import, reply_values, throw_in_import};
use crate::registry;
use crate::trap::CallFailure;

/// How an asynchronous call's events are put as messages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `{hb_beamr_result, Ref, {ok, Results} | {error, Reason}}` and
    /// `{hb_beamr_import, Ref, #{instance, module, func, args, func_sig}}`.
    Async,
    /// HyperBEAM's seed port: `{execution_result, Results}`, `{error, Reason}` and
    /// `{import, Module, Func, Args, Sig}`.
    Seed,
}

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
) -> Term<'a> {
    let _timed = nif_cpu_time::Timed::start();
    let protocol = if protocol == atoms::seed() {
        Protocol::Seed
    } else {
        Protocol::Async
    };
    let Some(instance) = registry::lookup(&owner) else {
        return error(env, atoms::stopped());
    };
    let limits = match decode_limits(opts) {
        Ok(limits) => limits,
        Err(bad) => return error(env, (atoms::badarg(), bad)),
    };
    match callee(env, &instance.shared, func, arguments) {
        Ok(func) => submit(env, &instance.shared, func, limits, protocol),
        Err(reason) => reason,
    }
}

fn submit<'a>(
    env: Env<'a>,
    shared: &Arc<Shared>,
    func: Callee,
    limits: Limits,
    protocol: Protocol,
) -> Term<'a> {
    let caller = env.pid();
    let slot = ReplySlot::new(caller);
    let call = CallResource::new(Arc::clone(shared), Arc::clone(&slot), Some(protocol));
    slot.start_posting();
    let armed = slot.arm();
    let command = Command::Call {
        caller,
        slot,
        func,
        limits,
        handle: Some(call.clone()),
    };
    if shared.submit(command).is_err() {
        return error(env, atoms::stopped());
    }
    awaited(env, &call, armed)
}

/// The import of asynchronous call `call` that waits for the calling process, claimed
/// for its answer.
fn claim_pending(env: Env, call: &CallResource) -> Option<usize> {
    call.protocol
        .and_then(|_| call.slot.claim_pending(env.pid()))
}

/// What an answer to an import returns: `{ok, Message}` with the call's next event when
/// the executor gave it within the hand-over spin, else `ok`.
fn answered<'a>(env: Env<'a>, call: &ResourceArc<CallResource>, armed: bool) -> Term<'a> {
    match taken(call, armed) {
        Some(event) => (atoms::ok(), message(env, &call.shared, call, event)).encode(env),
        None => atoms::ok().encode(env),
    }
}

/// `{ok, Ref, Message}` when the executor answered within the hand-over spin (the caller
/// sends `Message` to itself, then calls `async_posted`), else `{ok, Ref}`.
fn awaited<'a>(env: Env<'a>, call: &ResourceArc<CallResource>, armed: bool) -> Term<'a> {
    match taken(call, armed) {
        Some(event) => (atoms::ok(), call, message(env, &call.shared, call, event)).encode(env),
        None => (atoms::ok(), call).encode(env),
    }
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
fn async_reply<'a>(env: Env<'a>, call: ResourceArc<CallResource>, results: Term<'a>) -> Term<'a> {
    let _timed = nif_cpu_time::Timed::start();
    let pending = claim_pending(env, &call);
    let Some(index) = pending else {
        return error(env, atoms::badarg());
    };
    call.slot.start_posting();
    let armed = match reply_values(env, &call, index, results) {
        Ok(armed) => armed,
        Err(reason) => {
            call.slot.posted();
            // The call's result names the results that could not be used (a list too
            // long to be any function's results by its length only: it is not copied).
            let results = match crate::codec::bounded_length(results, MAX_VALUES) {
                Err(Some(_)) => (atoms::more_than(), MAX_VALUES).encode(env),
                _ => results,
            };
            let why = (atoms::bad_import_results(), results).encode(env);
            stash_failure(&call, index, why);
            fail_import(&call);
            return reason;
        }
    };
    answered(env, &call, armed)
}

/// `async_exception(Ref, Reason)`: throws `Reason` at the call's pending import (see
/// `import_exception`); returns like `async_reply`.
#[rustler::nif]
fn async_exception<'a>(
    env: Env<'a>,
    call: ResourceArc<CallResource>,
    reason: Term<'a>,
) -> Term<'a> {
    let pending = claim_pending(env, &call);
    if pending.is_none() {
        return error(env, atoms::badarg());
    }
    call.slot.start_posting();
    let armed = throw_in_import(&call, reason);
    answered(env, &call, armed)
}

/// `async_fail(Ref, Why)`: traps the call in its pending import; its result reports
/// `{import_failed, Module, Name, Why}`.
#[rustler::nif]
fn async_fail<'a>(env: Env<'a>, call: ResourceArc<CallResource>, why: Term<'a>) -> Term<'a> {
    let pending = claim_pending(env, &call);
    let Some(index) = pending else {
        return error(env, atoms::badarg());
    };
    stash_failure(&call, index, why);
    fail_import(&call);
    atoms::ok().encode(env)
}

/// Keeps `why` (copied out of the NIF's environment, see `bounded_reason`) for the call's
/// result.
fn stash_failure(call: &CallResource, index: usize, why: Term) {
    *call.failure.lock() = Some((index, bounded_reason(why)));
}

/// `async_pending(Ref)`: whether an import of the call waits for the calling process.
#[rustler::nif]
fn async_pending(env: Env, call: ResourceArc<CallResource>) -> bool {
    call.slot.is_pending_for(env.pid())
}

/// An asynchronous call's event as the message its protocol sends.
pub fn message<'a>(
    env: Env<'a>,
    shared: &Shared,
    call: &ResourceArc<CallResource>,
    event: Event,
) -> Term<'a> {
    let protocol = call.protocol.unwrap_or(Protocol::Async);
    match event {
        Event::Done(Ok(results)) => match protocol {
            Protocol::Async => (
                atoms::hb_beamr_result(),
                call,
                (atoms::ok(), results.as_slice()),
            )
                .encode(env),
            Protocol::Seed => (atoms::execution_result(), results.as_slice()).encode(env),
        },
        Event::Done(Err(failure)) => {
            let error = (atoms::error(), failure_reason(env, shared, call, failure)).encode(env);
            match protocol {
                Protocol::Async => (atoms::hb_beamr_result(), call, error).encode(env),
                Protocol::Seed => error,
            }
        }
        Event::Import { index, args, .. } => {
            let import = &shared.imports[index];
            let (module, name) = (charlist(env, &import.module), charlist(env, &import.name));
            let (sig, args) = (
                charlist(env, &import.signature),
                args.as_slice().encode(env),
            );
            match protocol {
                Protocol::Async => {
                    let keys = [
                        atoms::instance(),
                        atoms::module(),
                        atoms::func(),
                        atoms::args(),
                        atoms::func_sig(),
                    ];
                    let values = [shared.owner.encode(env), module, name, args, sig];
                    let request = Term::map_from_arrays(env, &keys.map(|k| k.encode(env)), &values)
                        .expect("distinct keys");
                    (atoms::hb_beamr_import(), call, request).encode(env)
                }
                Protocol::Seed => {
                    make_tuple(env, &[atoms::import().encode(env), module, name, args, sig])
                }
            }
        }
        Event::Memory(_) => unreachable!("asynchronous requests are calls"),
    }
}

/// A failed import reported with the reason its handler gave.
fn failure_reason<'a>(
    env: Env<'a>,
    shared: &Shared,
    call: &CallResource,
    failure: CallFailure,
) -> Term<'a> {
    let stashed = match failure {
        CallFailure::ImportFailed => call.failure.lock().take(),
        _ => None,
    };
    let Some((index, why)) = stashed else {
        return failure.encode(env);
    };
    let import = &shared.imports[index];
    let why = env
        .binary_to_term(&why)
        .map_or(atoms::undefined().encode(env), |(term, _)| term);
    (
        atoms::import_failed(),
        charlist(env, &import.module),
        charlist(env, &import.name),
        why,
    )
        .encode(env)
}
