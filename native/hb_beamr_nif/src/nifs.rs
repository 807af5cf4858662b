//! The NIF functions. Each checks its arguments, queues a command for the instance's
//! executor and waits a few microseconds for the outcome: `{event, Id, Event}` when it
//! came that fast, `{wait, Id}` when it will arrive as a message `{hb_beamr, Id, Event}`.
//! Only `start` does real work here (preparing and compiling), on a dirty scheduler.

use std::borrow::Cow;
use std::sync::Arc;

use beamr_core::compile::{compile, CompileError};
use beamr_core::prepare::{PrepareOptions, RESERVED_EXPORT_PREFIX};
use beamr_core::signature::signature;
use rustler::{Atom, Binary, Encoder, Env, ListIterator, LocalPid, NifResult, ResourceArc, Term, TermType};
use wasmer::{ExternType, Module};

use crate::atoms;
use crate::bytes::Bytes;
use crate::handover::{CallResource, ReplySlot};
use crate::codec::{decode_args, BadArg, Values};
use crate::command::{Command, MemoryOp};
use crate::executor::{self, charlist, encode_event};
use crate::instance::{ExportedFunction, ImportedFunction, InstanceResource, Shared};
use crate::registry;

fn error<'a>(env: Env<'a>, reason: impl Encoder) -> Term<'a> {
    (atoms::error(), reason).encode(env)
}

fn badarg<'a>(env: Env<'a>, detail: impl Encoder) -> Term<'a> {
    error(env, (atoms::badarg(), detail))
}

/// Start options: `wamr_compat` (boolean, default true) and `mode` (`wasm | aot`; both
/// compile with Cranelift, the mode is accepted for compatibility).
fn decode_options(opts: Term) -> Result<PrepareOptions, Term> {
    let mut options = PrepareOptions::default();
    let env = opts.get_env();
    for (key, value) in rustler::types::map::MapIterator::new(opts).ok_or(opts)? {
        if key == atoms::wamr_compat().encode(env) {
            options.wamr_compat = value.decode().map_err(|_| value)?;
        } else if key == atoms::mode().encode(env) {
            let mode: Atom = value.decode().map_err(|_| value)?;
            if mode != atoms::wasm() && mode != atoms::aot() {
                return Err(value);
            }
        }
    }
    Ok(options)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn start<'a>(env: Env<'a>, owner: LocalPid, source: Binary<'a>, opts: Term<'a>) -> Term<'a> {
    let options = match decode_options(opts) {
        Ok(options) => options,
        Err(bad) => return badarg(env, bad),
    };
    let compiled = match compile(source.as_slice(), &options) {
        Ok(compiled) => compiled,
        Err(CompileError::InvalidModule(message)) => {
            return error(env, (atoms::invalid_module(), message))
        }
    };
    let module = compiled.module;
    let shared = Arc::new(Shared::new(owner, exported_functions(&module), imported_functions(&module)));
    let resource = InstanceResource::new(shared);
    // Registered before the owner is monitored: an owner that dies in between must find
    // its entry to remove (its starter may have been killed while this NIF ran).
    registry::insert(owner, resource.clone());
    if resource.monitor(Some(env), &owner).is_none() {
        registry::remove(&owner);
        return error(env, atoms::stopped());
    }
    let (imports, exports) = (imports_term(env, &resource.shared.imports), exports_term(env, &module));
    let start = ReplySlot::new();
    let id = start.id;
    if let Err(e) = executor::spawn(resource.clone(), module, env.pid(), start) {
        resource.shared.stop();
        return error(env, (atoms::other(), e.to_string()));
    }
    (atoms::ok(), id, imports, exports).encode(env)
}

fn exported_functions(module: &Module) -> Vec<ExportedFunction> {
    module
        .exports()
        .filter(|e| !e.name().starts_with(RESERVED_EXPORT_PREFIX))
        .filter_map(|e| match e.ty() {
            ExternType::Function(ty) => Some(ExportedFunction { name: e.name().to_string(), ty: ty.clone() }),
            _ => None,
        })
        .collect()
}

fn imported_functions(module: &Module) -> Vec<ImportedFunction> {
    module
        .imports()
        .filter_map(|i| match i.ty() {
            ExternType::Function(ty) => Some(ImportedFunction {
                module: i.module().to_string(),
                name: i.name().to_string(),
                signature: signature(ty),
                ty: ty.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// `[{func, Module, Name, Sig}]`, as HyperBEAM lists imports.
fn imports_term<'a>(env: Env<'a>, imports: &[ImportedFunction]) -> Term<'a> {
    let items: Vec<Term> = imports
        .iter()
        .map(|i| {
            let sig = charlist(env, &i.signature);
            (atoms::func(), charlist(env, &i.module), charlist(env, &i.name), sig).encode(env)
        })
        .collect();
    items.encode(env)
}

/// `[{func | memory | table | global | tag, Name, Sig}]`; Sig is "" but for functions.
fn exports_term<'a>(env: Env<'a>, module: &Module) -> Term<'a> {
    let items: Vec<Term> = module
        .exports()
        .filter(|e| !e.name().starts_with(RESERVED_EXPORT_PREFIX))
        .map(|e| {
            let (kind, sig) = match e.ty() {
                ExternType::Function(ty) => (atoms::func(), signature(ty)),
                ExternType::Memory(_) => (atoms::memory(), String::new()),
                ExternType::Table(_) => (atoms::table(), String::new()),
                ExternType::Global(_) => (atoms::global(), String::new()),
                ExternType::Tag(_) => (atoms::tag(), String::new()),
            };
            (kind, charlist(env, e.name()), charlist(env, &sig)).encode(env)
        })
        .collect();
    items.encode(env)
}

/// A function name given as a binary (borrowed, no copy) or a string.
fn decode_name<'a>(term: Term<'a>) -> Option<Cow<'a, str>> {
    match term.get_type() {
        TermType::Binary => std::str::from_utf8(Binary::from_term(term).ok()?.as_slice()).ok().map(Cow::Borrowed),
        TermType::List => {
            let chars: ListIterator = term.decode().ok()?;
            chars.map(|c| c.decode::<u32>().ok().and_then(char::from_u32)).collect::<Option<String>>().map(Cow::Owned)
        }
        _ => None,
    }
}

#[rustler::nif]
fn call<'a>(env: Env<'a>, owner: LocalPid, func: Term<'a>, args: Term<'a>) -> Term<'a> {
    let Some(instance) = registry::lookup(&owner) else { return error(env, atoms::stopped()) };
    let Some(name) = decode_name(func) else { return badarg(env, (atoms::func(), func)) };
    let shared = &instance.shared;
    let Some(&index) = shared.export_index.get(name.as_ref()) else {
        return error(env, (atoms::not_found(), func));
    };
    let args = match decode_args(args, shared.exports[index].ty.params()) {
        Ok(args) => args,
        Err(bad) => return (atoms::error(), BadArg::encode(&bad, env)).encode(env),
    };
    let caller = env.pid();
    request(env, shared, |slot| Command::Call { caller, slot, func: index, args })
}

fn memory_command<'a>(env: Env<'a>, owner: LocalPid, op: MemoryOp) -> Term<'a> {
    let Some(instance) = registry::lookup(&owner) else { return error(env, atoms::stopped()) };
    let caller = env.pid();
    request(env, &instance.shared, |slot| Command::Memory { caller, slot, op })
}

/// Queues the command built around a fresh slot and waits briefly for its outcome.
fn request<'a>(env: Env<'a>, shared: &Shared, command: impl FnOnce(Arc<ReplySlot>) -> Command) -> Term<'a> {
    let slot = ReplySlot::new();
    slot.arm();
    if shared.submit(command(slot.clone())).is_err() {
        return error(env, atoms::stopped());
    }
    awaited(env, shared, &slot)
}

/// `{event, Id, Event}` when the executor answered within the hand-over spin,
/// `{wait, Id}` when the answer will come as a message.
fn awaited<'a>(env: Env<'a>, shared: &Shared, slot: &ReplySlot) -> Term<'a> {
    match slot.wait() {
        Some(event) => (atoms::event(), slot.id, encode_event(env, shared, event)).encode(env),
        None => (atoms::wait(), slot.id).encode(env),
    }
}

#[rustler::nif]
fn memory_size(env: Env, owner: LocalPid) -> Term {
    memory_command(env, owner, MemoryOp::Size)
}

#[rustler::nif]
fn memory_read(env: Env, owner: LocalPid, offset: u64, len: u64) -> Term {
    memory_command(env, owner, MemoryOp::Read { offset, len })
}

#[rustler::nif]
fn memory_snapshot(env: Env, owner: LocalPid) -> Term {
    memory_command(env, owner, MemoryOp::Snapshot)
}

#[rustler::nif]
fn memory_write<'a>(env: Env<'a>, owner: LocalPid, offset: u64, data: Binary<'a>) -> Term<'a> {
    memory_command(env, owner, MemoryOp::Write { offset, data: Bytes::new(data) })
}

#[rustler::nif]
fn memory_read_string(env: Env, owner: LocalPid, ptr: u64) -> Term {
    memory_command(env, owner, MemoryOp::ReadString { ptr })
}

#[rustler::nif]
fn memory_restore<'a>(env: Env<'a>, owner: LocalPid, data: Binary<'a>) -> Term<'a> {
    memory_command(env, owner, MemoryOp::Restore { data: Bytes::new(data) })
}

/// Answers the pending import (number `index`) of `call` with `results`, then waits
/// briefly for the call's next event like `call` does.
#[rustler::nif]
fn import_reply<'a>(
    env: Env<'a>,
    call: ResourceArc<CallResource>,
    index: usize,
    results: Term<'a>,
) -> NifResult<Term<'a>> {
    let import = call.shared.imports.get(index).ok_or(rustler::Error::BadArg)?;
    // HyperBEAM's stub answers `[0]` to every import, also to those returning nothing;
    // for those the reply's values are ignored, as WAMR's driver does.
    let decoded = match import.ty.results() {
        [] if results.is_list() => Ok(Values::new()),
        types => decode_args(results, types),
    };
    let values = match decoded {
        Ok(values) => values,
        Err(bad) => {
            let _ = call.shared.mailbox.push(Command::ImportReply { id: call.slot.id, results: None });
            return Ok((atoms::error(), BadArg::encode(&bad, env)).encode(env));
        }
    };
    call.slot.arm();
    // Queued even after a stop: the executor is the one to notice and unwind.
    let _ = call.shared.mailbox.push(Command::ImportReply { id: call.slot.id, results: Some(values) });
    Ok(awaited(env, &call.shared, &call.slot))
}

/// The import fun for `call` raised or returned something unusable: trap the call.
#[rustler::nif]
fn import_failed(call: ResourceArc<CallResource>) -> Atom {
    let _ = call.shared.mailbox.push(Command::ImportReply { id: call.slot.id, results: None });
    atoms::ok()
}

#[rustler::nif]
fn stop(owner: LocalPid) -> Atom {
    if let Some(instance) = registry::lookup(&owner) {
        instance.shared.stop();
    }
    atoms::ok()
}
