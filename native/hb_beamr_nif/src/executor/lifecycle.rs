//! The executor's life: instantiation (with the module's start function), the command
//! loop, and the answers to every request left when the instance stops.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Instant;

use beamr_core::emscripten::invoke::{Handler, Hooks};
use beamr_core::emscripten::Import;
use beamr_core::engine::panic_message;
use beamr_core::failure::{CallFailure, Resource};
use beamr_core::fuel::Meter;
use beamr_core::os_limits;
use beamr_core::prepare::interrupt::{CHECK_MODULE, CHECK_NAME, FUEL_EXPORT};
use beamr_core::prepare::{MEMORY_EXPORT, START_EXPORT};
use beamr_core::state::zero_pages::ZeroPages;
use beamr_core::state::StateAccess;
use beamr_core::table;
use wasmer::{
    AsStoreMut, Extern, Function, FunctionEnv, Imports, Instance, InstantiationError, LinkError,
    Store,
};

use super::call::on_check;
use super::imports::{on_import, on_invoke, on_runtime, ImportSlot, InvokeSlot, RuntimeSlot};
use super::{Context, Ended, Frame};
use crate::codec::Values;
use crate::hibernation::Stored;
use crate::instance::{Activity, Command};
use crate::options::Limits;

/// Takes the executor's first wasm stack. wasmer maps one on first use and keeps it for
/// the thread, but panics when it cannot be mapped (the OS's mapping or memory limit): an
/// instance that could never run a call is refused at start instead.
fn acquire_wasm_stack(store: &mut Store) -> Result<(), CallFailure> {
    let probe = Function::new_typed(store, || {});
    match catch_unwind(AssertUnwindSafe(|| probe.call(store, &[]))) {
        Ok(Ok(_)) => Ok(()),
        _ => Err(CallFailure::ResourceLimit(Resource::Memory)),
    }
}

impl Context {
    pub(super) fn serve(&self, start: &Rc<Frame>, limits: Limits) -> Ended {
        let mut store = Store::new(self.shared.engine.clone());
        if let Err(failure) = acquire_wasm_stack(&mut store) {
            self.finish(start, Err(failure));
            return Ended::Stopped;
        }
        let module = &self.shared.compiled;
        let imports = self.import_object(&mut store);
        if !self.enter(Rc::clone(start)) {
            self.finish(start, Err(CallFailure::Stopped));
            return Ended::Stopped;
        }
        // The start function runs before the host can set the fuel global (still 0), so
        // its first charge reaches the check, which applies the start's limits.
        *self.meter.borrow_mut() = Some(Meter::ungranted(limits.gas));
        self.deadline.set(limits.deadline);
        // wasmer's own (large) error, made once per start.
        #[allow(clippy::result_large_err)]
        let instance = catch_unwind(AssertUnwindSafe(|| {
            beamr_core::prepare::instantiate_with_start(&mut store, module, &imports)
        }));
        self.leave();
        let failure = match instance {
            Ok(Ok(instance)) if os_limits::room_for_instance() => {
                self.set_up(&mut store, &instance);
                // A start function may have written memory: only without one is it fresh.
                if instance.exports.get_function(START_EXPORT).is_err() {
                    self.note_fresh(&mut store);
                }
                self.shared.set_activity(Activity::Idle);
                self.finish(start, Ok(Values::new()));
                return self.serve_commands(&mut store);
            }
            // What the instance took leaves the VM too little (see `os_limits`).
            Ok(Ok(_)) => CallFailure::ResourceLimit(Resource::Memory),
            Ok(Err(error)) => instantiation_failure(error, self.shared.is_stopped()),
            Err(panic) => CallFailure::InvalidModule(panic_message(&panic)),
        };
        self.finish(start, Err(failure));
        Ended::Stopped
    }

    /// Instantiates the module again (without its start function, which ran when the
    /// instance started) and puts `stored` back into it, then serves commands. If that
    /// fails the instance stays hibernated and the queued requests get the reason.
    pub(super) fn revive(&self, stored: Stored) -> Ended {
        let mut store = Store::new(self.shared.engine.clone());
        if let Err(failure) = acquire_wasm_stack(&mut store) {
            return self.unrevived(stored, failure);
        }
        let imports = self.import_object(&mut store);
        #[allow(clippy::result_large_err)]
        let instance = catch_unwind(AssertUnwindSafe(|| {
            Instance::new(&mut store, &self.shared.compiled, &imports)
        }));
        let instance = match instance {
            Ok(Ok(instance)) if os_limits::room_for_instance() => instance,
            Ok(Ok(_)) => {
                return self.unrevived(stored, CallFailure::ResourceLimit(Resource::Memory))
            }
            Ok(Err(error)) => return self.unrevived(stored, instantiation_failure(error, false)),
            Err(panic) => {
                return self.unrevived(stored, CallFailure::InvalidModule(panic_message(&panic)))
            }
        };
        self.set_up(&mut store, &instance);
        self.note_fresh(&mut store);
        if let Err(failure) = self.put_back(&mut store, &stored) {
            return self.unrevived(stored, failure);
        }
        stored.discard();
        self.shared.hibernation.revived();
        self.publish_memory_size(&store);
        self.shared.set_activity(Activity::Idle);
        self.serve_commands(&mut store)
    }

    /// What the executor keeps of a new instance: its exports, memory, table 0,
    /// Emscripten's hooks and the state access; and its fuel global.
    fn set_up(&self, store: &mut Store, instance: &Instance) {
        *self.fuel.borrow_mut() = instance.exports.get_global(FUEL_EXPORT).ok().cloned();
        self.stop_metering(store);
        *self.functions.borrow_mut() = self
            .shared
            .interface
            .exports
            .iter()
            .map(|e| {
                instance
                    .exports
                    .get_function(&e.name)
                    .expect("listed export")
                    .clone()
            })
            .collect();
        *self.memory.borrow_mut() = instance.exports.get_memory(MEMORY_EXPORT).ok().cloned();
        *self.table.borrow_mut() = table::table0(instance);
        let host_temp_ret0 = self
            .shared
            .interface
            .imports
            .iter()
            .any(|i| i.handler == Handler::Runtime(Import::GetTempRet0));
        let (memory, table) = (self.memory.borrow().clone(), self.table.borrow().clone());
        *self.emscripten.borrow_mut() = Some(Hooks::resolve(
            store,
            instance,
            memory,
            table,
            host_temp_ret0,
        ));
        *self.state.borrow_mut() = Some(StateAccess::new(
            store,
            &self.shared.compiled,
            instance,
            self.shared.module.state_identity,
            self.shared.dirty_tracking,
        ));
        self.publish_memory_size(store);
    }

    /// Memory is a fresh instantiation's: notes its pages of zeros (found once per
    /// module).
    fn note_fresh(&self, store: &mut Store) {
        let Some(memory) = self.memory.borrow().clone() else {
            return;
        };
        let view = memory.view(store);
        // SAFETY: only this thread touches the instance, and no wasm runs.
        let bytes = unsafe { view.data_unchecked() };
        let zero =
            ZeroPages::of_fresh_module(self.shared.module.state_identity, || ZeroPages::of(bytes));
        *self.fresh.borrow_mut() = Some(zero);
    }

    /// Serves commands until the instance stops or hibernates.
    fn serve_commands(&self, store: &mut Store) -> Ended {
        while !self.shared.is_stopped() {
            let hibernated = match self.next_command_or_idle() {
                None => self.hibernate(store, None),
                Some(Command::Hibernate { reply }) => self.hibernate(store, reply),
                Some(command) => {
                    self.execute(store, command);
                    self.shared.hibernation.touch();
                    continue;
                }
            };
            if let Ok(requester) = hibernated {
                return Ended::Hibernated(requester);
            }
        }
        Ended::Stopped
    }

    /// The next command; `None` when the instance has been idle for its `hibernate_after`.
    fn next_command_or_idle(&self) -> Option<Command> {
        if let Some(command) = self.deferred.borrow_mut().pop_front() {
            return Some(command);
        }
        match self.shared.hibernation.after {
            None => Some(self.shared.mailbox.pop()),
            Some(idle) => self
                .shared
                .mailbox
                .pop_until(Instant::now().checked_add(idle)),
        }
    }

    pub(super) fn import_object(&self, store: &mut Store) -> Imports {
        let mut imports = Imports::new();
        for (index, import) in self.shared.interface.imports.iter().enumerate() {
            let ty = import.ty.clone();
            let function = match import.handler {
                Handler::Fun => {
                    let env = FunctionEnv::new(store, ImportSlot(index));
                    Function::new_with_env(store, &env, ty, on_import)
                }
                Handler::Invoke { legalized } => {
                    let env = FunctionEnv::new(store, InvokeSlot { index, legalized });
                    Function::new_with_env(store, &env, ty, on_invoke)
                }
                Handler::Runtime(import) => {
                    let env = FunctionEnv::new(store, RuntimeSlot { index, import });
                    Function::new_with_env(store, &env, ty, on_runtime)
                }
            };
            imports.define(&import.module, &import.name, Extern::Function(function));
        }
        // Typed: the module calls it every slice, and a typed host function is called
        // without boxing its arguments and results.
        let check = Function::new_typed(store, on_check);
        imports.define(CHECK_MODULE, CHECK_NAME, Extern::Function(check));
        imports
    }

    /// Serves a request: a call, or a memory or state operation.
    pub(super) fn execute(&self, store: &mut impl AsStoreMut, command: Command) {
        if let Command::Call { .. } | Command::Memory { .. } = command {
            self.fresh.borrow_mut().take();
        }
        match command {
            Command::Call {
                caller,
                slot,
                func,
                limits,
                handle,
            } => self.call(store, Frame::new(caller, slot, handle), func, limits),
            Command::Memory { caller, slot, op } => {
                let event = self.memory_op(store, op);
                self.publish_memory_size(store);
                self.deliver(caller, &slot, event);
            }
            Command::State { caller, slot, op } => {
                let event = self.state_op(store, op);
                self.publish_memory_size(store);
                self.deliver(caller, &slot, event);
            }
            // A request to hibernate from inside a call (only the calling process is
            // served then): the wasm frames on the stack are state no image holds.
            Command::Hibernate { reply } => {
                self.refuse_hibernation(reply);
            }
            // Only the loops that wait for them use these.
            Command::ImportReply { .. } | Command::CallerDown(_) | Command::Stop => {}
        }
    }

    /// Marks the instance stopped and answers every request it will never serve.
    pub(super) fn shutdown(&self) {
        self.shared.stop();
        let deferred: Vec<Command> = self.deferred.borrow_mut().drain(..).collect();
        for command in deferred.into_iter().chain(self.shared.mailbox.close()) {
            self.refuse(command, &CallFailure::Stopped);
        }
    }
}

/// Why instantiation failed, as a call's failure.
fn instantiation_failure(error: InstantiationError, stopped: bool) -> CallFailure {
    match error {
        InstantiationError::Start(error) => CallFailure::classify(&error, stopped),
        InstantiationError::Link(LinkError::Resource(_)) => {
            CallFailure::ResourceLimit(Resource::Memory)
        }
        error => CallFailure::InvalidModule(error.to_string()),
    }
}
