//! Answers to a call's import request (`{import, Call, Index, ...}`): `import_reply` with
//! the results, `import_exception` to throw at the import's call site, `import_failed` to
//! trap the call. Only the process the request went to may answer, once.

use rustler::{Encoder, Env, ResourceArc, Term};

use super::awaited;
use crate::atoms;
use crate::codec::{bounded_reason, decode_args, Values};
use crate::error::{Error, Reply};
use crate::instance::{CallResource, Command};
use crate::nif_cpu_time;
use crate::request::ImportAnswer;

/// Answers the pending import (number `index`) of `call` with `results`, then waits
/// briefly for the call's next event like `call` does. `{error, badarg}` when the
/// caller may not answer: no such import is pending (never was, or was answered
/// already), or the caller is not the process the import request went to.
#[rustler::nif]
fn import_reply<'a>(
    env: Env<'a>,
    call: ResourceArc<CallResource>,
    index: usize,
    results: Term<'a>,
) -> Reply<'a> {
    let _timed = nif_cpu_time::Timed::start();
    if !claim_import(env, &call, index) {
        return Reply(Err(Error::NotPending));
    }
    Reply(match reply_values(&call, index, results) {
        Ok(armed) => Ok(awaited(env, &call.shared, &call.slot, armed)),
        Err(bad) => {
            fail_import(&call);
            Err(bad)
        }
    })
}

/// Throws `reason` at the pending import (number `index`) of `call`, to the nearest
/// `invoke_*` (see `beamr_core::emscripten`); without one the call ends with
/// `{error, {trap, exception, Reason}}`. Then waits like `import_reply`, and is refused
/// (`{error, badarg}`) under the same conditions.
#[rustler::nif]
fn import_exception<'a>(
    env: Env<'a>,
    call: ResourceArc<CallResource>,
    index: usize,
    reason: Term<'a>,
) -> Reply<'a> {
    if !claim_import(env, &call, index) {
        return Reply(Err(Error::NotPending));
    }
    let armed = throw_in_import(&call, reason);
    Reply(Ok(awaited(env, &call.shared, &call.slot, armed)))
}

/// The import fun for `call` raised or returned something unusable: trap the call.
/// `{error, badarg}` under the same conditions as `import_reply`.
#[rustler::nif]
fn import_failed(env: Env, call: ResourceArc<CallResource>) -> Reply {
    if !call.slot.claim_reply(env.pid(), None) {
        return Reply(Err(Error::NotPending));
    }
    fail_import(&call);
    Reply(Ok(atoms::ok().encode(env)))
}

/// Whether the calling process may answer import `index` of `call`: it is pending, for
/// this process (claimed once answered).
fn claim_import(env: Env, call: &CallResource, index: usize) -> bool {
    call.shared.interface.imports.get(index).is_some()
        && call.slot.claim_reply(env.pid(), Some(index))
}

/// Traps the call in its pending import (claimed by the caller).
pub(super) fn fail_import(call: &CallResource) {
    answer(call, ImportAnswer::Failed);
}

/// Queues the results of import `index` (claimed by the caller) for the executor: whether
/// the slot could be armed for the next event, or why the results do not fit the import
/// (then nothing is queued: the caller fails the import).
pub(super) fn reply_values<'a>(
    call: &CallResource,
    index: usize,
    results: Term<'a>,
) -> Result<bool, Error<'a>> {
    let import = &call.shared.interface.imports[index];
    // HyperBEAM's stub answers `[0]` to every import, also to those returning nothing;
    // for those the reply's values are ignored, as WAMR's driver does.
    let values = match import.ty.results() {
        [] if results.is_list() => Values::new(),
        types => decode_args(results, types)?,
    };
    let armed = call.slot.arm();
    answer(call, ImportAnswer::Results(values));
    Ok(armed)
}

/// Queues the exception `reason` for the pending import of `call` (claimed by the
/// caller): whether the slot could be armed for the next event.
pub(super) fn throw_in_import(call: &CallResource, reason: Term) -> bool {
    let reason = bounded_reason(reason);
    let armed = call.slot.arm();
    answer(call, ImportAnswer::Exception(reason));
    armed
}

/// Queued even after a stop: the executor is the one to notice and unwind.
fn answer(call: &CallResource, answer: ImportAnswer) {
    let _ = call.shared.mailbox.push(Command::ImportReply {
        id: call.slot.id,
        answer,
    });
}
