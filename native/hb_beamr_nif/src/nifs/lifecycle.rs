//! `start` (prepare, compile or load, then hand the module to an executor thread: an idle
//! one, else a new one) and `stop`.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use beamr_core::emscripten::invoke::{handler, Mode};
use beamr_core::failure::{CallFailure, Resource};
use beamr_core::prepare::interrupt::CHECK_MODULE;
use beamr_core::prepare::RESERVED_EXPORT_PREFIX;
use beamr_core::signature::signature;
use std::sync::atomic::Ordering;

use once_cell::sync::Lazy;
use parking_lot::Mutex;
use rustler::{Atom, Binary, Encoder, Env, LocalPid, Monitor, Term};
use wasmer::{ExternType, Module};

use super::answer_queued;
use super::artifacts::module_for;
use crate::atoms;
use crate::budget::check_budget;
use crate::codec::charlist;
use crate::error::{Error, Reply};
use crate::executor;
use crate::hibernation::{Hibernation, SETTINGS};
use crate::instance::{
    self, Command, ExportedFunction, ImportedFunction, InstanceResource, Interface, ModuleInfo,
    ReplySlot, Shared,
};
use crate::options::decode_start_options;

/// `{ok, Id, Imports, Exports}`: the module is compiled and its executor started; the
/// outcome of instantiation (and the start function) comes as the events of request `Id`.
#[rustler::nif(schedule = "DirtyCpu")]
fn start<'a>(env: Env<'a>, owner: LocalPid, source: Binary<'a>, opts: Term<'a>) -> Reply<'a> {
    Reply(start_instance(env, owner, source.as_slice(), opts))
}

fn start_instance<'a>(
    env: Env<'a>,
    owner: LocalPid,
    source: &[u8],
    opts: Term<'a>,
) -> Result<Term<'a>, Error<'a>> {
    let options = decode_start_options(opts)?;
    if !beamr_core::os_limits::room_for_instance() {
        // Idle executor threads hold mappings and address space: the next start has them.
        beamr_core::executor_thread::release_idle();
        return Err(CallFailure::ResourceLimit(Resource::Memory).into());
    }
    let compiled = module_for(env, source, &options)?;
    let engine = compiled.engine().clone();
    let info = ModuleInfo {
        sha256: compiled.header.source_sha256,
        origin: compiled.origin,
        state_identity: compiled.header.state_identity(),
    };
    let module = compiled.module;
    let interface = interface(&module, info.state_identity, options.emscripten)
        .map_err(|message| Error::Call(CallFailure::InvalidModule(message)))?;
    if let Some(dir) = &options.hibernate_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::CacheDir(format!("hibernate_dir {}: {e}", dir.display())))?;
    }
    if let Some(max_live) = options.max_live {
        SETTINGS.max_live.store(max_live, Ordering::Relaxed);
    }
    let shared = Arc::new(Shared::new(
        owner,
        info,
        interface,
        options.dirty_tracking,
        (module.clone(), engine),
        Hibernation::new(options.hibernate_after, options.hibernate_dir),
    ));
    let resource = InstanceResource::new(shared);
    // Registered before the owner is monitored: an owner that dies in between must find
    // its entry to remove (its starter may have been killed while this NIF ran).
    instance::register(owner, resource.clone());
    if resource.monitor(Some(env), &owner).is_none() {
        instance::unregister(&owner);
        return Err(Error::Stopped);
    }
    let (imports, exports) = (
        imports_term(env, &resource.shared.interface.imports),
        exports_term(env, &module),
    );
    let start = ReplySlot::new(env.pid());
    let id = start.id;
    let spawned = executor::spawn(resource.clone(), env.pid(), start, options.start_limits);
    if spawned.is_err() {
        resource.shared.stop();
        return Err(CallFailure::ResourceLimit(Resource::Thread).into());
    }
    check_budget();
    Ok((atoms::ok(), id, imports, exports).encode(env))
}

#[rustler::nif]
fn stop(env: Env, owner: LocalPid) -> Atom {
    if let Some(instance) = instance::lookup(&owner) {
        stop_instance(env, &instance.shared);
    }
    atoms::ok()
}

/// Stops the instance; a hibernated one has no executor to do the rest, so its image is
/// freed and whatever was queued meanwhile answered here.
fn stop_instance(env: Env, shared: &Arc<Shared>) {
    shared.stop();
    if let Some(stored) = shared.hibernation.end() {
        stored.discard();
        answer_queued(env, shared, shared.mailbox.close(), &CallFailure::Stopped);
    }
}

#[rustler::resource_impl]
impl rustler::Resource for InstanceResource {
    const IMPLEMENTS_DOWN: bool = true;

    fn down<'a>(&'a self, env: Env<'a>, pid: LocalPid, _monitor: Monitor) {
        if pid == self.shared.owner {
            stop_instance(env, &self.shared);
        } else {
            let _ = self.shared.mailbox.push(Command::CallerDown(pid));
        }
    }
}

/// The module's interface: the one its live instances share, or made now.
fn interface(module: &Module, identity: [u8; 32], mode: Mode) -> Result<Arc<Interface>, String> {
    type Interfaces = HashMap<([u8; 32], Mode), Weak<Interface>>;
    static INTERFACES: Lazy<Mutex<Interfaces>> = Lazy::new(|| Mutex::new(HashMap::new()));
    let key = (identity, mode);
    if let Some(interface) = INTERFACES.lock().get(&key).and_then(Weak::upgrade) {
        return Ok(interface);
    }
    let interface = Arc::new(Interface::new(
        exported_functions(module),
        imported_functions(module, mode)?,
    ));
    let mut interfaces = INTERFACES.lock();
    interfaces.retain(|_, interface| interface.strong_count() > 0);
    interfaces.insert(key, Arc::downgrade(&interface));
    Ok(interface)
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
/// of Emscripten's runtime but not its type (see `beamr_core::emscripten::invoke`).
fn imported_functions(module: &Module, mode: Mode) -> Result<Vec<ImportedFunction>, String> {
    module
        .imports()
        .filter(|i| i.module() != CHECK_MODULE)
        .filter_map(|i| match i.ty() {
            ExternType::Function(ty) => Some(handler(i.module(), i.name(), ty, mode).map(
                |handler| ImportedFunction {
                    module: i.module().to_string(),
                    name: i.name().to_string(),
                    signature: signature(ty),
                    ty: ty.clone(),
                    handler,
                },
            )),
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
