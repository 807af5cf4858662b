//! The NIF functions. Each checks its arguments, queues a command for the instance's
//! executor and waits a few microseconds for the outcome: `{event, Id, Event}` when it
//! came that fast, `{wait, Id}` when it will arrive as a message `{hb_beamr, Id, Event}`.
//! Only `start` does real work here (preparing and compiling), on a dirty scheduler.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use beamr_core::compile::Origin;
use beamr_core::dirty_pages::Policy;
use beamr_core::prepare::interrupt::CHECK_MODULE;
use beamr_core::prepare::{PrepareOptions, RESERVED_EXPORT_PREFIX};
use beamr_core::signature::signature;
use beamr_core::snapshot::{self, Lineage};
use rustler::{Atom, Binary, Encoder, Env, LocalPid, ResourceArc, Term, TermType};
use wasmer::{ExternType, Module};

use crate::atoms;
use crate::bytes::{BinaryList, Bytes};
use crate::codec::{bounded_reason, charlist, decode_args, BadArg, UncheckedArgs, Values};
use crate::command::{Callee, Command, ImportAnswer, Limits, MemoryOp};
use crate::emscripten;
use crate::executor::{self, encode_event};
use crate::handover::{CallResource, ReplySlot};
use crate::instance::{
    Activity, ExportedFunction, ImportedFunction, InstanceResource, ModuleInfo, Shared,
};
use crate::nif_cpu_time;
use crate::registry;
use crate::state::StateOp;
use crate::trap::{CallFailure, Resource, TrapKind};

pub(crate) fn error<'a>(env: Env<'a>, reason: impl Encoder) -> Term<'a> {
    (atoms::error(), reason).encode(env)
}

fn badarg<'a>(env: Env<'a>, detail: impl Encoder) -> Term<'a> {
    error(env, (atoms::badarg(), detail))
}

/// `{options, {Key, Value}}`: the option that has a bad value.
fn bad_option<'a>(key: Term<'a>, value: Term<'a>) -> Term<'a> {
    (atoms::options(), (key, value)).encode(key.get_env())
}

/// Start options (see the README): `wamr_compat`, `mode` (`wasm | aot`; both compile
/// with Cranelift), `gas` (metering is always compiled in, so this only validates),
/// `memory_limit` (bytes), `deterministic`, `cache_dir`, `dirty_tracking` (`auto |
/// digests`). Other keys are left to the Erlang side.
pub(crate) struct StartOptions {
    pub prepare: PrepareOptions,
    pub cache_dir: Option<std::path::PathBuf>,
    pub dirty_tracking: Policy,
    /// Which preparation options were given (an artifact must have been compiled with them).
    pub given: GivenOptions,
    /// `timeout` and `gas` for instantiation and the module's start function.
    pub start_limits: Limits,
    /// Which of Emscripten's imports are answered natively.
    pub emscripten: emscripten::Mode,
}

#[derive(Default)]
pub(crate) struct GivenOptions {
    pub wamr_compat: bool,
    pub deterministic: bool,
    pub memory_limit: bool,
}

pub(crate) fn decode_options(opts: Term) -> Result<StartOptions, Term> {
    let mut options = StartOptions {
        prepare: PrepareOptions::default(),
        cache_dir: None,
        dirty_tracking: Policy::Auto,
        given: GivenOptions::default(),
        start_limits: Limits::default(),
        emscripten: emscripten::Mode::default(),
    };
    for (key, value) in rustler::types::map::MapIterator::new(opts).ok_or(opts)? {
        let Ok(key_atom) = key.decode::<Atom>() else {
            continue;
        };
        let bad = || bad_option(key, value);
        // `timeout` and `gas` bound the start as they bound a call; `gas => boolean()` is
        // accepted too (metering is always compiled in).
        if key_atom == atoms::gas() && value.decode::<bool>().is_ok() {
            continue;
        }
        if decode_limit(&mut options.start_limits, key_atom, key, value)? {
            continue;
        }
        if key_atom == atoms::wamr_compat() {
            options.prepare.wamr_compat = value.decode().map_err(|_| bad())?;
            options.given.wamr_compat = true;
        } else if key_atom == atoms::deterministic() {
            options.prepare.deterministic = value.decode().map_err(|_| bad())?;
            options.given.deterministic = true;
        } else if key_atom == atoms::cache_dir() {
            options.cache_dir = Some(crate::artifacts::decode_path(value).ok_or_else(bad)?);
        } else if key_atom == atoms::mode() {
            let mode: Atom = value.decode().map_err(|_| bad())?;
            if mode != atoms::wasm() && mode != atoms::aot() {
                return Err(bad());
            }
        } else if key_atom == atoms::emscripten() {
            options.emscripten = match value.decode::<Atom>() {
                Ok(mode) if mode == atoms::native() => emscripten::Mode::Native,
                Ok(mode) if mode == atoms::imports() => emscripten::Mode::Imports,
                _ => return Err(bad()),
            };
        } else if key_atom == atoms::dirty_tracking() {
            options.dirty_tracking = match value.decode::<Atom>() {
                Ok(policy) if policy == atoms::auto() => Policy::Auto,
                Ok(policy) if policy == atoms::digests() => Policy::Digests,
                _ => return Err(bad()),
            };
        } else if key_atom == atoms::memory_limit() {
            options.prepare.memory_limit = value.decode().map_err(|_| bad())?;
            options.given.memory_limit = true;
        }
    }
    Ok(options)
}

/// Call options (call/6 `Opts`): `timeout => Ms | infinity`, `gas => N | infinity`. The
/// map is also the import fun's options, so other keys are the caller's own.
pub(crate) fn decode_limits(opts: Term) -> Result<Limits, Term> {
    if !opts.is_map() {
        return Err(opts);
    }
    // Looked up, not iterated: the caller's own keys may be many.
    let mut limits = Limits::default();
    for key_atom in [atoms::timeout(), atoms::gas()] {
        let key = key_atom.encode(opts.get_env());
        if let Ok(value) = opts.map_get(key) {
            decode_limit(&mut limits, key_atom, key, value)?;
        }
    }
    Ok(limits)
}

/// Takes `timeout => Ms | infinity` or `gas => N | infinity` into `limits`: whether `key`
/// was one of them, or the bad option.
fn decode_limit<'a>(
    limits: &mut Limits,
    key_atom: Atom,
    key: Term<'a>,
    value: Term<'a>,
) -> Result<bool, Term<'a>> {
    let unbounded = value.decode::<Atom>().is_ok_and(|a| a == atoms::infinity());
    if key_atom == atoms::timeout() {
        if !unbounded {
            let ms: u64 = value.decode().map_err(|_| bad_option(key, value))?;
            // A deadline beyond what the clock can represent is no deadline.
            limits.deadline = Instant::now().checked_add(Duration::from_millis(ms));
        }
        Ok(true)
    } else if key_atom == atoms::gas() {
        if !unbounded {
            limits.gas = Some(value.decode().map_err(|_| bad_option(key, value))?);
        }
        Ok(true)
    } else {
        Ok(false)
    }
}

#[rustler::nif(schedule = "DirtyCpu")]
fn start<'a>(env: Env<'a>, owner: LocalPid, source: Binary<'a>, opts: Term<'a>) -> Term<'a> {
    let options = match decode_options(opts) {
        Ok(options) => options,
        Err(bad) => return badarg(env, bad),
    };
    if !beamr_core::os_limits::room_for_instance() {
        return error(env, CallFailure::ResourceLimit(Resource::Memory));
    }
    let compiled = match crate::artifacts::module_for(env, source.as_slice(), &options) {
        Ok(compiled) => compiled,
        Err(failure) => return error(env, failure.encode(env)),
    };
    let engine = compiled.engine().clone();
    let info = ModuleInfo {
        sha256: compiled.header.source_sha256,
        origin: compiled.origin,
        state_identity: compiled.header.state_identity(),
    };
    let module = compiled.module;
    let imports = match imported_functions(&module, options.emscripten) {
        Ok(imports) => imports,
        Err(message) => return error(env, CallFailure::InvalidModule(message)),
    };
    let exports = exported_functions(&module);
    let shared = Arc::new(Shared::new(
        owner,
        info,
        exports,
        imports,
        options.dirty_tracking,
    ));
    let resource = InstanceResource::new(shared);
    // Registered before the owner is monitored: an owner that dies in between must find
    // its entry to remove (its starter may have been killed while this NIF ran).
    registry::insert(owner, resource.clone());
    if resource.monitor(Some(env), &owner).is_none() {
        registry::remove(&owner);
        return error(env, atoms::stopped());
    }
    let (imports, exports) = (
        imports_term(env, &resource.shared.imports),
        exports_term(env, &module),
    );
    let start = ReplySlot::new(env.pid());
    let id = start.id;
    if executor::spawn(
        resource.clone(),
        module,
        engine,
        env.pid(),
        start,
        options.start_limits,
    )
    .is_err()
    {
        resource.shared.stop();
        return error(env, CallFailure::ResourceLimit(Resource::Thread));
    }
    (atoms::ok(), id, imports, exports).encode(env)
}

fn exported_functions(module: &Module) -> Vec<ExportedFunction> {
    module
        .exports()
        .filter(|e| !e.name().starts_with(RESERVED_EXPORT_PREFIX))
        .filter_map(|e| match e.ty() {
            ExternType::Function(ty) => Some(ExportedFunction {
                name: e.name().to_string(),
                ty: ty.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// The module's function imports, each with its handler; an error when one has the name
/// of Emscripten's runtime but not its type (see `emscripten::handler`).
fn imported_functions(
    module: &Module,
    mode: emscripten::Mode,
) -> Result<Vec<ImportedFunction>, String> {
    module
        .imports()
        .filter(|i| i.module() != CHECK_MODULE)
        .filter_map(|i| match i.ty() {
            ExternType::Function(ty) => Some(
                emscripten::handler(i.module(), i.name(), ty, mode).map(|handler| {
                    ImportedFunction {
                        module: i.module().to_string(),
                        name: i.name().to_string(),
                        signature: signature(ty),
                        ty: ty.clone(),
                        handler,
                    }
                }),
            ),
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
            (
                atoms::func(),
                charlist(env, &i.module),
                charlist(env, &i.name),
                sig,
            )
                .encode(env)
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

/// What a function name given as a binary (borrowed, no copy) or a string is.
enum Name<'a> {
    Text(Cow<'a, str>),
    /// Longer than any export's name, so no export's (not read further).
    TooLong,
    Invalid,
}

/// Reads at most `longest` bytes' worth of a name.
fn decode_name<'a>(term: Term<'a>, longest: usize) -> Name<'a> {
    match term.get_type() {
        TermType::Binary => match Binary::from_term(term) {
            Ok(binary) if binary.len() > longest => Name::TooLong,
            Ok(binary) => std::str::from_utf8(binary.as_slice())
                .map_or(Name::Invalid, |name| Name::Text(Cow::Borrowed(name))),
            Err(_) => Name::Invalid,
        },
        TermType::List => match crate::codec::bounded_length(term, longest) {
            Ok(_) => crate::codec::decode_charlist(term, longest)
                .map_or(Name::Invalid, |name| Name::Text(Cow::Owned(name))),
            Err(Some(_)) => Name::TooLong,
            Err(None) => Name::Invalid,
        },
        _ => Name::Invalid,
    }
}

#[rustler::nif]
fn call<'a>(env: Env<'a>, owner: LocalPid, func: Term<'a>, args: Term<'a>) -> Term<'a> {
    call_export(env, owner, func, args, Limits::default())
}

/// `call/3` with call/6's options.
#[rustler::nif(name = "call")]
fn call_limited<'a>(
    env: Env<'a>,
    owner: LocalPid,
    func: Term<'a>,
    arguments: Term<'a>,
    opts: Term<'a>,
) -> Term<'a> {
    // (Not named `args`: rustler's generated code uses that name for the NIF's arguments.)
    match decode_limits(opts) {
        Ok(limits) => call_export(env, owner, func, arguments, limits),
        Err(bad) => badarg(env, bad),
    }
}

fn call_export<'a>(
    env: Env<'a>,
    owner: LocalPid,
    func: Term<'a>,
    args: Term<'a>,
    limits: Limits,
) -> Term<'a> {
    let _timed = nif_cpu_time::Timed::start();
    let Some(instance) = registry::lookup(&owner) else {
        return error(env, atoms::stopped());
    };
    match callee(env, &instance.shared, func, args) {
        Ok(func) => request(env, &instance.shared, |caller, slot| Command::Call {
            caller,
            slot,
            func,
            limits,
            handle: None,
        }),
        Err(reason) => reason,
    }
}

/// The function `func` names (an export, or an integer: a table entry) with its
/// arguments, or the `{error, Reason}` to return.
pub(crate) fn callee<'a>(
    env: Env<'a>,
    shared: &Shared,
    func: Term<'a>,
    args: Term<'a>,
) -> Result<Callee, Term<'a>> {
    if func.get_type() == TermType::Integer {
        return table_entry(env, func, args);
    }
    let name = match decode_name(func, shared.longest_export_name) {
        Name::Text(name) => name,
        Name::TooLong => return Err(error(env, (atoms::not_found(), func))),
        Name::Invalid => return Err(badarg(env, (atoms::func(), func))),
    };
    let Some(&index) = shared.export_index.get(name.as_ref()) else {
        return Err(error(env, (atoms::not_found(), func)));
    };
    match decode_args(args, shared.exports[index].ty.params()) {
        Ok(args) => Ok(Callee::Export(index, args)),
        Err(bad) => Err((atoms::error(), BadArg::encode(&bad, env)).encode(env)),
    }
}

/// A call of entry `func` (an integer) of table 0, as HyperBEAM's seed allowed. The entry's
/// type is known only to the executor, which checks the arguments against it; an integer
/// that cannot index any table traps here.
fn table_entry<'a>(env: Env<'a>, func: Term<'a>, args: Term<'a>) -> Result<Callee, Term<'a>> {
    let Ok(index) = func.decode::<u32>() else {
        let message = format!("table index {func:?} is out of bounds of table 0");
        return Err(error(
            env,
            CallFailure::Trap {
                kind: TrapKind::TableOutOfBounds,
                message,
            },
        ));
    };
    match UncheckedArgs::new(args) {
        Ok(args) => Ok(Callee::TableEntry(index, args)),
        Err(bad) => Err((atoms::error(), BadArg::encode(&bad, env)).encode(env)),
    }
}

fn memory_command<'a>(env: Env<'a>, owner: LocalPid, op: MemoryOp) -> Term<'a> {
    let _timed = nif_cpu_time::Timed::start();
    let Some(instance) = registry::lookup(&owner) else {
        return error(env, atoms::stopped());
    };
    request(env, &instance.shared, |caller, slot| Command::Memory {
        caller,
        slot,
        op,
    })
}

/// Queues the command built around a fresh slot for the calling process and waits
/// briefly for its outcome.
fn request<'a>(
    env: Env<'a>,
    shared: &Shared,
    command: impl FnOnce(LocalPid, Arc<ReplySlot>) -> Command,
) -> Term<'a> {
    let caller = env.pid();
    let slot = ReplySlot::new(caller);
    let armed = slot.arm();
    if shared.submit(command(caller, slot.clone())).is_err() {
        return error(env, atoms::stopped());
    }
    awaited(env, shared, &slot, armed)
}

/// `{event, Id, Event}` when the executor answered within the hand-over spin,
/// `{wait, Id}` when the answer will come as a message (always when the slot could not
/// be armed).
fn awaited<'a>(env: Env<'a>, shared: &Shared, slot: &ReplySlot, armed: bool) -> Term<'a> {
    match armed.then(|| slot.wait(shared)).flatten() {
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
    memory_command(
        env,
        owner,
        MemoryOp::Write {
            offset,
            data: Bytes::new(data),
        },
    )
}

#[rustler::nif]
fn memory_read_string(env: Env, owner: LocalPid, ptr: u64, max: u64) -> Term {
    memory_command(env, owner, MemoryOp::ReadString { ptr, max })
}

#[rustler::nif]
fn memory_restore<'a>(env: Env<'a>, owner: LocalPid, data: Binary<'a>) -> Term<'a> {
    memory_command(
        env,
        owner,
        MemoryOp::Restore {
            data: Bytes::new(data),
        },
    )
}

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
) -> Term<'a> {
    let _timed = nif_cpu_time::Timed::start();
    if !claim_import(env, &call, index) {
        return error(env, atoms::badarg());
    }
    match reply_values(env, &call, index, results) {
        Ok(armed) => awaited(env, &call.shared, &call.slot, armed),
        Err(reason) => {
            fail_import(&call);
            reason
        }
    }
}

/// Traps the call in its pending import (claimed by the caller).
pub(crate) fn fail_import(call: &CallResource) {
    let _ = call.shared.mailbox.push(Command::ImportReply {
        id: call.slot.id,
        answer: ImportAnswer::Failed,
    });
}

/// Queues the results of import `index` (claimed by the caller) for the executor: whether
/// the slot could be armed for the next event, or the `{error, Reason}` to return (then
/// nothing is queued: the caller fails the import).
pub(crate) fn reply_values<'a>(
    env: Env<'a>,
    call: &CallResource,
    index: usize,
    results: Term<'a>,
) -> Result<bool, Term<'a>> {
    let import = &call.shared.imports[index];
    // HyperBEAM's stub answers `[0]` to every import, also to those returning nothing;
    // for those the reply's values are ignored, as WAMR's driver does.
    let decoded = match import.ty.results() {
        [] if results.is_list() => Ok(Values::new()),
        types => decode_args(results, types),
    };
    let values = match decoded {
        Ok(values) => values,
        Err(bad) => return Err((atoms::error(), BadArg::encode(&bad, env)).encode(env)),
    };
    let armed = call.slot.arm();
    // Queued even after a stop: the executor is the one to notice and unwind.
    let _ = call.shared.mailbox.push(Command::ImportReply {
        id: call.slot.id,
        answer: ImportAnswer::Results(values),
    });
    Ok(armed)
}

/// Whether the calling process may answer import `index` of `call`: it is pending, for
/// this process (claimed once answered).
fn claim_import(env: Env, call: &CallResource, index: usize) -> bool {
    call.shared.imports.get(index).is_some() && call.slot.claim_reply(env.pid(), Some(index))
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
) -> Term<'a> {
    if !claim_import(env, &call, index) {
        return error(env, atoms::badarg());
    }
    let armed = throw_in_import(&call, reason);
    awaited(env, &call.shared, &call.slot, armed)
}

/// Queues the exception `reason` for the pending import of `call` (claimed by the
/// caller): whether the slot could be armed for the next event.
pub(crate) fn throw_in_import(call: &CallResource, reason: Term) -> bool {
    let reason = bounded_reason(reason);
    let armed = call.slot.arm();
    let _ = call.shared.mailbox.push(Command::ImportReply {
        id: call.slot.id,
        answer: ImportAnswer::Exception(reason),
    });
    armed
}

/// The import fun for `call` raised or returned something unusable: trap the call.
/// `{error, badarg}` under the same conditions as `import_reply`.
#[rustler::nif]
fn import_failed<'a>(env: Env<'a>, call: ResourceArc<CallResource>) -> Term<'a> {
    if !call.slot.claim_reply(env.pid(), None) {
        return error(env, atoms::badarg());
    }
    fail_import(&call);
    atoms::ok().encode(env)
}

/// `{ok, Gas}`: the fuel the instance's last call used (see `beamr_core::fuel`).
#[rustler::nif]
fn gas_used(env: Env, owner: LocalPid) -> Term {
    match registry::lookup(&owner) {
        Some(instance) => (
            atoms::ok(),
            instance.shared.gas_used.load(Ordering::Acquire),
        )
            .encode(env),
        None => error(env, atoms::stopped()),
    }
}

/// `{ok, Info}` for `hb_beamr:info/1`: read from what the executor publishes, so it
/// answers at once whatever the instance is doing.
#[rustler::nif]
fn info(env: Env, owner: LocalPid) -> Term {
    let Some(instance) = registry::lookup(&owner) else {
        return error(env, atoms::stopped());
    };
    let shared = &instance.shared;
    let state = match shared.activity() {
        _ if shared.is_stopped() => atoms::stopped(),
        Activity::Idle => atoms::idle(),
        Activity::Running => atoms::running(),
        Activity::InImport => atoms::in_import(),
        Activity::Starting => atoms::starting(),
    };
    let hash: String = shared
        .module
        .sha256
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let origin = match shared.module.origin {
        Origin::Compiled => atoms::compiled(),
        Origin::Memory => atoms::memory(),
        Origin::Disk => atoms::disk(),
        Origin::Artifact => atoms::artifact(),
    };
    let memory_bytes = shared.memory_bytes.load(Ordering::Relaxed);
    let pairs = [
        (atoms::module_hash(), hash.encode(env)),
        (atoms::memory_bytes(), memory_bytes.encode(env)),
        (
            atoms::memory_pages(),
            (memory_bytes / wasmer::WASM_PAGE_SIZE as u64).encode(env),
        ),
        (atoms::state(), state.encode(env)),
        (
            atoms::calls(),
            shared.calls.load(Ordering::Relaxed).encode(env),
        ),
        (
            atoms::gas_used(),
            shared.gas_used.load(Ordering::Acquire).encode(env),
        ),
        (
            atoms::cached(),
            (shared.module.origin != Origin::Compiled).encode(env),
        ),
        (atoms::origin(), origin.encode(env)),
    ];
    let info =
        Term::map_from_pairs(env, &pairs.map(|(k, v)| (k.encode(env), v))).expect("distinct keys");
    (atoms::ok(), info).encode(env)
}

#[rustler::nif]
fn stop(owner: LocalPid) -> Atom {
    if let Some(instance) = registry::lookup(&owner) {
        instance.shared.stop();
    }
    atoms::ok()
}

/// `{ok, Snapshot}`: the instance's state in `beamr_core::snapshot`'s format; with
/// `incremental`, a delta of what changed since the instance's base (when it has one).
#[rustler::nif]
fn state_snapshot(env: Env, owner: LocalPid, incremental: bool) -> Term {
    memory_command(
        env,
        owner,
        MemoryOp::State(StateOp::Capture { incremental }),
    )
}

/// Restores a chain (a list: a full snapshot, then its deltas) after validating all of it.
#[rustler::nif]
fn state_restore<'a>(env: Env<'a>, owner: LocalPid, chain: Term<'a>) -> Term<'a> {
    match BinaryList::new(chain) {
        Some(chain) => memory_command(env, owner, MemoryOp::State(StateOp::Apply { chain })),
        None => badarg(env, (atoms::snapshot(), chain)),
    }
}

/// Whether this process can use the kernel's write tracking for incremental snapshots
/// (otherwise they compare page digests; see `beamr_core::dirty_pages`). Dirty: the first
/// call probes the kernel (a scratch mapping and a few system calls).
#[rustler::nif(schedule = "DirtyCpu")]
fn kernel_dirty_tracking() -> bool {
    beamr_core::dirty_pages::kernel_tracking_available()
}

/// How long the waiting NIFs kept their core since the last switch, and why the long ones
/// were long (see `nif_cpu_time`); `On` starts or stops the counting.
#[rustler::nif(name = "nif_cpu_time")]
fn switch_nif_cpu_time(on: bool) -> nif_cpu_time::Totals {
    nif_cpu_time::switch(on)
}

/// Spins `ns` nanoseconds (at most as long as a NIF waits for an executor, 20 µs), timed
/// like the waiting NIFs: the control that `make bench-load` runs under the same load
/// (see `nif_cpu_time::spin_for_control`).
#[rustler::nif]
fn nif_cpu_time_control(ns: u64) -> Atom {
    nif_cpu_time::spin_for_control(ns);
    atoms::ok()
}

/// `{ok, #{kind, id, parent, sequence}}` for a snapshot whose checksum verifies.
#[rustler::nif(schedule = "DirtyCpu")]
fn snapshot_info<'a>(env: Env<'a>, bytes: Binary<'a>) -> Term<'a> {
    let snapshot = match snapshot::decode(bytes.as_slice()) {
        Ok(snapshot) => snapshot,
        Err(why) => return error(env, crate::state::StateError::Snapshot(why)),
    };
    let id = |id: u128| {
        let mut binary = rustler::OwnedBinary::new(16);
        binary.as_mut_slice().copy_from_slice(&id.to_le_bytes());
        binary.release(env).encode(env)
    };
    let (kind, parent) = match snapshot.lineage {
        Lineage::Full => (atoms::full(), atoms::none().encode(env)),
        Lineage::Delta { parent } => (atoms::delta(), id(parent)),
    };
    let pairs = [
        (atoms::kind(), kind.encode(env)),
        (atoms::id(), id(snapshot.id)),
        (atoms::parent(), parent),
        (atoms::sequence(), snapshot.sequence.encode(env)),
    ];
    let info =
        Term::map_from_pairs(env, &pairs.map(|(k, v)| (k.encode(env), v))).expect("distinct keys");
    (atoms::ok(), info).encode(env)
}
