//! Events as Erlang terms, in the three protocols a request's events travel in:
//!
//! * a synchronous request (`call`, memory operations): `{ok, Results}`, `{error, Reason}`
//!   or `{import, Call, Index, Module, Name, Signature, Args}`, returned by a NIF as
//!   `{event, Id, Event}` or sent as `{hb_beamr, Id, Event}`;
//! * an asynchronous call (`call_async/4`): `{hb_beamr_result, Ref, {ok, Results} |
//!   {error, Reason}}` and `{hb_beamr_import, Ref, #{instance, module, func, args,
//!   func_sig}}`;
//! * HyperBEAM's seed port (`wasm_send/2`): `{execution_result, Results}`,
//!   `{error, Reason}` and `{import, Module, Func, Args, Sig}`.

use beamr_core::failure::CallFailure;
use beamr_core::memory_access::MemoryReply;
use rustler::types::tuple::make_tuple;
use rustler::{Encoder, Env, OwnedBinary, ResourceArc, Term};

use crate::atoms;
use crate::codec::charlist;
use crate::error::{call_failure, stored_term, Error};
use crate::instance::{CallResource, Command, Event, Protocol, Shared};

/// A synchronous request's event: a call's `{ok, Results}`, `{error, Reason}` or
/// `{import, Call, Index, Module, Name, Signature, Args}`, or a memory operation's reply
/// (`{ok, Size}`, `{ok, Bytes}`, `ok`, `{error, Reason}`).
pub fn event<'a>(env: Env<'a>, shared: &Shared, event: Event) -> Term<'a> {
    match event {
        Event::Done(Ok(results)) => (atoms::ok(), results.as_slice()).encode(env),
        Event::Done(Err(failure)) => (atoms::error(), Error::Call(failure)).encode(env),
        Event::Memory(outcome) => reply(env, outcome.map_err(Error::Memory)),
        Event::State(outcome) => reply(env, outcome.map_err(Error::State)),
        Event::Import { call, index, args } => {
            let import = &shared.interface.imports[index];
            make_tuple(
                env,
                &[
                    atoms::import().encode(env),
                    call.encode(env),
                    index.encode(env),
                    charlist(env, &import.module),
                    charlist(env, &import.name),
                    charlist(env, &import.signature),
                    args.as_slice().encode(env),
                ],
            )
        }
    }
}

fn reply<'a>(env: Env<'a>, outcome: Result<MemoryReply<OwnedBinary>, Error>) -> Term<'a> {
    match outcome {
        Ok(MemoryReply::Size(size)) => (atoms::ok(), size).encode(env),
        Ok(MemoryReply::Bytes(bytes)) => (atoms::ok(), bytes.release(env)).encode(env),
        Ok(MemoryReply::Done) => atoms::ok().encode(env),
        Err(error) => (atoms::error(), error).encode(env),
    }
}

/// An asynchronous call's event as the message its protocol sends.
pub fn asynchronous<'a>(
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
            let import = &shared.interface.imports[index];
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
        // Asynchronous requests are calls, which have no memory events; one would be put
        // as a synchronous request puts it.
        memory @ (Event::Memory(_) | Event::State(_)) => self::event(env, shared, memory),
    }
}

/// The answer to a request that will not be served (the instance stopped, or could not
/// be revived), for `Command::caller`; `None` for commands that are not requests.
pub fn refusal<'a>(
    env: Env<'a>,
    shared: &Shared,
    command: Command,
    failure: &CallFailure,
) -> Option<Term<'a>> {
    let refused = |id: u64| {
        let reason = call_failure(env, failure);
        (atoms::hb_beamr(), id, (atoms::error(), reason)).encode(env)
    };
    match command {
        Command::Call {
            handle: Some(call),
            slot,
            ..
        } => {
            slot.clear_pending();
            let event = Event::Done(Err(failure.clone()));
            Some(asynchronous(env, shared, &call, event))
        }
        Command::Call { slot, .. }
        | Command::Memory { slot, .. }
        | Command::State { slot, .. }
        | Command::Hibernate {
            reply: Some((_, slot)),
        } => Some(refused(slot.id)),
        Command::Hibernate { reply: None }
        | Command::ImportReply { .. }
        | Command::CallerDown(_)
        | Command::Stop => None,
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
        return call_failure(env, &failure);
    };
    let import = &shared.interface.imports[index];
    (
        atoms::import_failed(),
        charlist(env, &import.module),
        charlist(env, &import.name),
        stored_term(env, &why),
    )
        .encode(env)
}
