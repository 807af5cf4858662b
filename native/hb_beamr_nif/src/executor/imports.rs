//! Imports: the host functions behind the module's imports, and the wait for an import's
//! answer, during which the executor serves the calling process (memory access, nested
//! calls) and keeps other callers' requests (and their deadlines) for later.

use std::collections::VecDeque;
use std::time::Instant;

use beamr_core::emscripten::{Host, Import, Thrown};
use beamr_core::failure::{CallFailure, HostError};
use beamr_core::store_objects;
use rustler::LocalPid;
use wasmer::{AsStoreMut, Function, FunctionEnvMut, RuntimeError, Value};

use super::{context, Context, Frame};
use crate::codec::{Values, WasmValue};
use crate::instance::{Activity, Command, Event};
use crate::request::ImportAnswer;

/// Which import a host function stands for.
pub(super) struct ImportSlot(pub(super) usize);

/// Which `invoke_*` import a host function stands for, and whether its i64s are halved.
pub(super) struct InvokeSlot {
    pub(super) index: usize,
    pub(super) legalized: bool,
}

/// Which import of Emscripten's runtime a host function stands for.
pub(super) struct RuntimeSlot {
    pub(super) index: usize,
    pub(super) import: Import,
}

/// The calls Emscripten's runtime makes into the module, nested like any other.
pub(super) struct NestedCalls<'a>(pub(super) &'a Context);

impl Host for NestedCalls<'_> {
    fn call(
        &self,
        store: &mut impl AsStoreMut,
        function: &Function,
        args: &[Value],
    ) -> Result<Box<[Value]>, RuntimeError> {
        self.0
            .nested(|| function.call(store, args))
            .unwrap_or_else(|refused| Err(RuntimeError::user(Box::new(refused))))
    }
}

impl Context {
    /// Monitors the process handling imports, once per outermost call.
    pub(super) fn watch_caller(&self, caller: LocalPid) {
        let monitor = self.caller_monitor.take();
        match monitor {
            Some(monitor) => self.caller_monitor.set(Some(monitor)),
            None => match self.resource.monitor(None, &caller) {
                Some(monitor) => self.caller_monitor.set(Some(monitor)),
                // Monitoring fails only when the process is already gone.
                None => self.caller_died.set(true),
            },
        }
    }

    /// Serves the import's caller until it answers the import of call `frame`. Calls
    /// from other processes wait meanwhile; their deadlines still end them.
    pub(super) fn await_reply(
        &self,
        store: &mut impl AsStoreMut,
        frame: &Frame,
    ) -> Result<ImportAnswer, HostError> {
        loop {
            if self.shared.is_stopped() {
                return Err(HostError::Stopped);
            }
            if self.caller_died.get() {
                return Err(HostError::CallerDied);
            }
            let command = match self.take_deferred_for(frame) {
                Some(command) => command,
                None => match self
                    .shared
                    .mailbox
                    .pop_until(self.earliest_deferred_deadline())
                {
                    Some(command) => command,
                    None => {
                        self.expire_deferred();
                        continue;
                    }
                },
            };
            match command {
                Command::ImportReply { id, answer } if id == frame.slot.id => {
                    if self.past_deadline() {
                        return Err(HostError::Timeout);
                    }
                    return match answer {
                        ImportAnswer::Failed => Err(HostError::ImportFailed),
                        answer => Ok(answer),
                    };
                }
                Command::CallerDown(pid) if pid == frame.caller => self.caller_died.set(true),
                command if command.caller() == Some(frame.caller) => self.execute(store, command),
                command @ (Command::Call { .. }
                | Command::Memory { .. }
                | Command::State { .. }
                | Command::Hibernate { .. }) => self.deferred.borrow_mut().push_back(command),
                // Stale replies and monitors of earlier calls, or a stop wake-up.
                Command::ImportReply { .. } | Command::CallerDown(_) | Command::Stop => {}
            }
        }
    }

    /// The first deferred command that the wait for `frame`'s import must see: its reply,
    /// its caller's death, or a request of its caller (queued meanwhile by a check).
    pub(super) fn take_deferred_for(&self, frame: &Frame) -> Option<Command> {
        let mut deferred = self.deferred.borrow_mut();
        let position = deferred.iter().position(|command| match command {
            Command::ImportReply { id, .. } => *id == frame.slot.id,
            Command::CallerDown(pid) => *pid == frame.caller,
            command => command.caller() == Some(frame.caller),
        })?;
        deferred.remove(position)
    }

    /// Moves the commands queued while wasm runs behind the running call (in order), so
    /// that the deadlines of the calls among them are kept however long that call runs.
    pub(super) fn defer_queued(&self) {
        while let Some(command) = self.shared.mailbox.try_pop() {
            self.deferred.borrow_mut().push_back(command);
        }
        self.expire_deferred();
    }

    /// The earliest deadline of a call waiting in `deferred`.
    pub(super) fn earliest_deferred_deadline(&self) -> Option<Instant> {
        self.deferred
            .borrow()
            .iter()
            .filter_map(queued_deadline)
            .min()
    }

    /// Ends the waiting calls whose deadline has passed: `{trap, timeout, _}`, as if they
    /// had run out of time running.
    pub(super) fn expire_deferred(&self) {
        let now = Instant::now();
        let expired: VecDeque<Command> = {
            let mut deferred = self.deferred.borrow_mut();
            if !deferred
                .iter()
                .any(|command| queued_deadline(command).is_some_and(|deadline| deadline <= now))
            {
                return;
            }
            let (expired, waiting) = deferred.drain(..).partition(|command| {
                queued_deadline(command).is_some_and(|deadline| deadline <= now)
            });
            *deferred = waiting;
            expired
        };
        for command in expired {
            if let Command::Call {
                caller,
                slot,
                handle,
                ..
            } = command
            {
                self.finish(
                    &Frame::new(caller, slot, handle),
                    Err(CallFailure::from(&HostError::Timeout)),
                );
            }
        }
    }
}

/// The host function behind every import: ask the calling process, serve it meanwhile.
pub(super) fn on_import(
    mut env: FunctionEnvMut<ImportSlot>,
    args: &[Value],
) -> Result<Vec<Value>, RuntimeError> {
    let index = env.data().0;
    let context = context();
    let frame = context
        .frames
        .borrow()
        .last()
        .cloned()
        .expect("imports run inside a call");
    context.watch_caller(frame.caller);
    let args: Values = args.iter().map(WasmValue::from_wasmer).collect();
    let call = frame.handle(&context.shared);
    context.publish_memory_size(&env);
    context.shared.set_activity(Activity::InImport);
    context.deliver_call(&frame, Event::Import { call, index, args });
    let reply = context.await_reply(&mut env, &frame);
    context.shared.set_activity(Activity::Running);
    match reply {
        Ok(ImportAnswer::Results(results)) => {
            Ok(results.into_iter().map(WasmValue::to_wasmer).collect())
        }
        Ok(ImportAnswer::Exception(reason)) => Err(Thrown::Foreign(reason).raise()),
        Ok(ImportAnswer::Failed) => Err(RuntimeError::user(Box::new(HostError::ImportFailed))),
        Err(error) => Err(RuntimeError::user(Box::new(error))),
    }
}

/// The host function behind Emscripten's `invoke_*` imports.
pub(super) fn on_invoke(
    mut env: FunctionEnvMut<InvokeSlot>,
    args: &[Value],
) -> Result<Vec<Value>, RuntimeError> {
    let context = context();
    let (index, legalized) = (env.data().index, env.data().legalized);
    let import = &context.shared.interface.imports[index];
    let hooks = context.emscripten.borrow();
    // Instantiation has finished whenever wasm can reach an invoke (start functions
    // aside, which Emscripten does not use).
    let hooks = hooks
        .as_ref()
        .ok_or_else(|| RuntimeError::new("invoke_* called during instantiation"))?;
    // The table entry it reads is a new function object in the Store: gone once the
    // invoke returns, not at the end of the outermost call (an Eval may invoke millions
    // of times). Unless a reference it returns may be one of them (not Emscripten's).
    let mark = store_objects::mark(&mut env);
    let result = context
        .nested(|| {
            hooks.invoke(
                &mut env,
                &NestedCalls(&context),
                args,
                import.ty.results(),
                legalized,
            )
        })
        .unwrap_or_else(|refused| Err(RuntimeError::user(Box::new(refused))));
    if !import.ty.results().iter().any(|ty| ty.is_ref()) {
        store_objects::drop_functions_since(&mut env, mark);
    }
    result
}

/// The host function behind the imports of Emscripten's exception and longjmp runtime.
pub(super) fn on_runtime(
    mut env: FunctionEnvMut<RuntimeSlot>,
    args: &[Value],
) -> Result<Vec<Value>, RuntimeError> {
    let context = context();
    let (index, import) = (env.data().index, env.data().import);
    let hooks = context.emscripten.borrow();
    let hooks = hooks
        .as_ref()
        .ok_or_else(|| RuntimeError::new("Emscripten's runtime called during instantiation"))?;
    let results = context.shared.interface.imports[index].ty.results();
    hooks
        .runtime
        .answer(&mut env, &NestedCalls(&context), import, args, results)
}

/// A queued call's deadline.
fn queued_deadline(command: &Command) -> Option<Instant> {
    match command {
        Command::Call { limits, .. } => limits.deadline,
        _ => None,
    }
}
