//! The executor's life: instantiation (with the module's start function), the command
//! loop, and the answers to every request left when the instance stops.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use beamr_core::emscripten::invoke::{Handler, Hooks};
use beamr_core::emscripten::Import;
use beamr_core::engine::panic_message;
use beamr_core::failure::{CallFailure, Resource};
use beamr_core::fuel::Meter;
use beamr_core::os_limits;
use beamr_core::prepare::interrupt::{CHECK_MODULE, CHECK_NAME, FUEL_EXPORT};
use beamr_core::prepare::MEMORY_EXPORT;
use beamr_core::state::StateAccess;
use beamr_core::table;
use rustler::Encoder;
use wasmer::{
    AsStoreMut, Extern, Function, FunctionEnv, Imports, Instance, InstantiationError, LinkError,
    Module, Store,
};

use super::call::on_check;
use super::imports::{on_import, on_invoke, on_runtime, ImportSlot, InvokeSlot, RuntimeSlot};
use super::{Context, Frame};
use crate::atoms;
use crate::codec::Values;
use crate::error::Error;
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
    pub(super) fn serve(
        &self,
        module: Module,
        engine: wasmer::Engine,
        start: &Rc<Frame>,
        limits: Limits,
    ) {
        let mut store = Store::new(engine);
        if let Err(failure) = acquire_wasm_stack(&mut store) {
            return self.finish(start, Err(failure));
        }
        let imports = self.import_object(&mut store);
        if !self.enter(Rc::clone(start)) {
            return self.finish(start, Err(CallFailure::Stopped));
        }
        // The start function runs before the host can set the fuel global (still 0), so
        // its first charge reaches the check, which applies the start's limits.
        *self.meter.borrow_mut() = Some(Meter::ungranted(limits.gas));
        self.deadline.set(limits.deadline);
        // wasmer's own (large) error, made once per start.
        #[allow(clippy::result_large_err)]
        let instance = catch_unwind(AssertUnwindSafe(|| {
            beamr_core::prepare::instantiate_with_start(&mut store, &module, &imports)
        }));
        self.leave();
        let failure = match instance {
            Ok(Ok(instance)) if os_limits::room_for_instance() => {
                *self.fuel.borrow_mut() = instance.exports.get_global(FUEL_EXPORT).ok().cloned();
                self.stop_metering(&mut store);
                return self.serve_instance(&mut store, &module, &instance, start);
            }
            // What the instance took leaves the VM too little (see `os_limits`).
            Ok(Ok(_)) => CallFailure::ResourceLimit(Resource::Memory),
            Ok(Err(InstantiationError::Start(error))) => {
                CallFailure::classify(&error, self.shared.is_stopped())
            }
            Ok(Err(InstantiationError::Link(LinkError::Resource(_)))) => {
                CallFailure::ResourceLimit(Resource::Memory)
            }
            Ok(Err(error)) => CallFailure::InvalidModule(error.to_string()),
            Err(panic) => CallFailure::InvalidModule(panic_message(&panic)),
        };
        self.finish(start, Err(failure));
    }

    /// Reports a successful start, then serves commands until the instance stops.
    pub(super) fn serve_instance(
        &self,
        store: &mut Store,
        module: &Module,
        instance: &Instance,
        start: &Frame,
    ) {
        *self.functions.borrow_mut() = self
            .shared
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
            module,
            instance,
            self.shared.module.state_identity,
            self.shared.dirty_tracking,
        ));
        self.publish_memory_size(store);
        self.shared.set_activity(Activity::Idle);
        self.finish(start, Ok(Values::new()));

        while !self.shared.is_stopped() {
            let command = self.next_command();
            self.execute(store, command);
        }
    }

    pub(super) fn import_object(&self, store: &mut Store) -> Imports {
        let mut imports = Imports::new();
        for (index, import) in self.shared.imports.iter().enumerate() {
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

    pub(super) fn next_command(&self) -> Command {
        let deferred = self.deferred.borrow_mut().pop_front();
        deferred.unwrap_or_else(|| self.shared.mailbox.pop())
    }

    /// Serves a request: a call, or a memory or state operation.
    pub(super) fn execute(&self, store: &mut impl AsStoreMut, command: Command) {
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
            // Only the loops that wait for them use these.
            Command::ImportReply { .. } | Command::CallerDown(_) | Command::Stop => {}
        }
    }

    /// Marks the instance stopped and answers every request it will never serve.
    pub(super) fn shutdown(&self) {
        self.shared.stop();
        let deferred: Vec<Command> = self.deferred.borrow_mut().drain(..).collect();
        for command in deferred.into_iter().chain(self.shared.mailbox.close()) {
            if let Command::Call {
                caller,
                slot,
                handle: Some(call),
                ..
            } = command
            {
                let frame = Frame::new(caller, slot, Some(call));
                self.finish(&frame, Err(CallFailure::Stopped));
                continue;
            }
            let (caller, id) = match &command {
                Command::Call { caller, slot, .. }
                | Command::Memory { caller, slot, .. }
                | Command::State { caller, slot, .. } => (*caller, slot.id),
                Command::ImportReply { .. } | Command::CallerDown(_) | Command::Stop => continue,
            };
            self.send(caller, |env| {
                (atoms::hb_beamr(), id, (atoms::error(), Error::Stopped)).encode(env)
            });
        }
    }
}
