//! The executor thread: one per instance, sole owner of its wasmer Store and Instance.
//!
//! It serves the mailbox in FIFO order. A call that reaches an import sends
//! `{hb_beamr, Id, {import, ...}}` to the calling process and keeps serving that
//! process's commands (memory access, nested calls) until the reply arrives; commands
//! from other processes wait until the outermost call is over.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use beamr_core::emscripten::{Host, Import, Thrown};
use beamr_core::engine::panic_message;
use beamr_core::fuel::{self, Meter, MAX_EXCEPTION_FRAMES, SLICE};
use beamr_core::os_limits;
use beamr_core::prepare::interrupt::{CHECK_MODULE, CHECK_NAME, FUEL_EXPORT, THROW_SIGNAL};
use beamr_core::prepare::MEMORY_EXPORT;
use beamr_core::store_objects;
use rustler::types::tuple::make_tuple;
use rustler::{Encoder, Env, LocalPid, Monitor, OwnedEnv, ResourceArc, Term};
use smallvec::SmallVec;
use wasmer::{
    AsStoreMut, AsStoreRef, Extern, Function, FunctionEnv, FunctionEnvMut, Global, Imports,
    Instance, InstantiationError, LinkError, Memory, Module, RuntimeError, Store, Table, Value,
};

use crate::asynchronous;
use crate::atoms;
use crate::codec::{charlist, Values, WasmValue};
use crate::command::{Callee, Command, ImportAnswer, Limits, MemoryOp};
use crate::emscripten::{Handler, Hooks};
use crate::handover::{CallResource, Event, ReplySlot};
use crate::instance::{Activity, InstanceResource, Shared};
use crate::memory::{self, MemoryError, MemoryReply};
use crate::state::{StateAccess, StateError, StateOp, StateReply};
use crate::table;
use crate::trap::{CallFailure, HostError, Resource, TrapKind};

/// wasm runs on its own stack of this size (wasmer's default of 1 MiB is too small for
/// interpreters such as AO's Lua).
const WASM_STACK_SIZE: usize = 16 << 20;
const EXECUTOR_STACK_SIZE: usize = 16 << 20;

/// Every nested call (an import handler calling back into the instance, `invoke_*`
/// calling a table entry) runs host frames on the executor's stack and takes a wasm stack
/// of its own, so nesting is bounded: deeper calls trap as `stack_overflow`. Lua, the
/// deepest nester among AO's modules, stops at 200 nested C calls.
const MAX_NESTING: usize = 1000;
/// A nested call needs at least this much of the executor's stack left.
const STACK_RESERVE: usize = 2 << 20;

/// Everything an instance's executor needs besides the Store, reachable from host
/// functions through a thread-local (host functions only get the Store).
struct Context {
    resource: ResourceArc<InstanceResource>,
    shared: Arc<Shared>,
    functions: RefCell<Vec<Function>>,
    memory: RefCell<Option<Memory>>,
    /// Table 0, whose entries integer function references call.
    table: RefCell<Option<Table>>,
    /// Snapshot and restore of the whole state (see `state.rs`).
    state: RefCell<Option<StateAccess>>,
    emscripten: RefCell<Option<Hooks>>,
    outbox: RefCell<OwnedEnv>,
    deferred: RefCell<VecDeque<Command>>,
    /// The calls in progress, innermost last. Nested calls only come from the process
    /// handling an import, so every frame of the stack has the same caller.
    frames: RefCell<Vec<Rc<Frame>>>,
    caller_monitor: Cell<Option<Monitor>>,
    caller_died: Cell<bool>,
    /// The module's fuel countdown (see `beamr_core::prepare::interrupt`).
    fuel: RefCell<Option<Global>>,
    /// The outermost call's fuel accounting and deadline.
    meter: RefCell<Option<Meter>>,
    deadline: Cell<Option<Instant>>,
    /// The stack frames the exceptions thrown in the outermost call hold (see
    /// `throw_check`).
    exception_frames: Cell<u64>,
    /// Nested wasm calls in progress (through import handlers or `invoke_*`).
    nesting: Cell<usize>,
    /// An address near the top of the executor's stack, to measure how much is in use.
    stack_top: usize,
}

struct Frame {
    caller: LocalPid,
    slot: Arc<ReplySlot>,
    /// Created at the call's first import: most calls never need one.
    handle: OnceCell<ResourceArc<CallResource>>,
}

impl Frame {
    /// `handle` is an asynchronous call's reference, made by the NIF that queued it.
    fn new(
        caller: LocalPid,
        slot: Arc<ReplySlot>,
        handle: Option<ResourceArc<CallResource>>,
    ) -> Rc<Frame> {
        Rc::new(Frame {
            caller,
            slot,
            handle: handle.map(OnceCell::from).unwrap_or_default(),
        })
    }

    fn handle(&self, shared: &Arc<Shared>) -> ResourceArc<CallResource> {
        self.handle
            .get_or_init(|| CallResource::new(Arc::clone(shared), Arc::clone(&self.slot), None))
            .clone()
    }

    /// The reference of an asynchronous call.
    fn asynchronous(&self) -> Option<&ResourceArc<CallResource>> {
        self.handle.get().filter(|call| call.protocol.is_some())
    }
}

thread_local! {
    static CONTEXT: RefCell<Option<Rc<Context>>> = const { RefCell::new(None) };
}

fn context() -> Rc<Context> {
    CONTEXT
        .with(|c| c.borrow().clone())
        .expect("host function outside an executor")
}

/// Which import a host function stands for.
struct ImportSlot(usize);

/// Which `invoke_*` import a host function stands for, and whether its i64s are halved.
struct InvokeSlot {
    index: usize,
    legalized: bool,
}

/// Which import of Emscripten's runtime a host function stands for.
struct RuntimeSlot {
    index: usize,
    import: Import,
}

/// The calls Emscripten's runtime makes into the module, nested like any other.
struct NestedCalls<'a>(&'a Context);

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

/// Starts the executor; it instantiates `module` in a Store of `engine` (the engine that
/// compiled it), running the module's start function within `limits`, and reports to
/// `starter` as `start`'s events.
pub fn spawn(
    resource: ResourceArc<InstanceResource>,
    module: Module,
    engine: wasmer::Engine,
    starter: LocalPid,
    start: Arc<ReplySlot>,
    limits: Limits,
) -> std::io::Result<()> {
    beamr_core::executor_thread::spawn(c"hb_beamr_exec", EXECUTOR_STACK_SIZE, move || {
        let _live = os_limits::LiveInstance::count();
        run(
            resource,
            module,
            engine,
            Frame::new(starter, start, None),
            limits,
        )
    })
}

fn run(
    resource: ResourceArc<InstanceResource>,
    module: Module,
    engine: wasmer::Engine,
    start: Rc<Frame>,
    limits: Limits,
) {
    let shared = Arc::clone(&resource.shared);
    shared.mailbox.bind_executor();
    let context = Rc::new(Context {
        resource,
        shared: Arc::clone(&shared),
        functions: RefCell::new(Vec::new()),
        memory: RefCell::new(None),
        table: RefCell::new(None),
        state: RefCell::new(None),
        emscripten: RefCell::new(None),
        outbox: RefCell::new(OwnedEnv::new()),
        deferred: RefCell::new(VecDeque::new()),
        frames: RefCell::new(Vec::new()),
        caller_monitor: Cell::new(None),
        caller_died: Cell::new(false),
        fuel: RefCell::new(None),
        meter: RefCell::new(None),
        deadline: Cell::new(None),
        exception_frames: Cell::new(0),
        nesting: Cell::new(0),
        stack_top: stack_address(),
    });
    CONTEXT.with(|c| *c.borrow_mut() = Some(Rc::clone(&context)));
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| {
        context.serve(module, engine, &start, limits)
    })) {
        context.finish(&start, Err(CallFailure::panic(panic_message(&panic))));
    }
    context.shutdown();
    CONTEXT.with(|c| *c.borrow_mut() = None);
}

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

/// The address of a local of the calling frame.
#[inline(never)]
fn stack_address() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

impl Context {
    fn serve(&self, module: Module, engine: wasmer::Engine, start: &Rc<Frame>, limits: Limits) {
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
        let instance = catch_unwind(AssertUnwindSafe(|| {
            Instance::new(&mut store, &module, &imports)
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
    fn serve_instance(
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
        *self.state.borrow_mut() = Some(StateAccess::new(store, module, instance, &self.shared));
        self.publish_memory_size(store);
        self.shared.set_activity(Activity::Idle);
        self.finish(start, Ok(Values::new()));

        while !self.shared.is_stopped() {
            match self.next_command() {
                command @ (Command::Call { .. } | Command::Memory { .. }) => {
                    self.execute(store, command)
                }
                Command::ImportReply { .. } | Command::CallerDown(_) | Command::Stop => {}
            }
        }
    }

    fn import_object(&self, store: &mut Store) -> Imports {
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

    fn next_command(&self) -> Command {
        let deferred = self.deferred.borrow_mut().pop_front();
        deferred.unwrap_or_else(|| self.shared.mailbox.pop())
    }

    fn execute(&self, store: &mut impl AsStoreMut, command: Command) {
        match command {
            Command::Call {
                caller,
                slot,
                func,
                limits,
                handle,
            } => self.call(store, Frame::new(caller, slot, handle), func, limits),
            Command::Memory {
                caller,
                slot,
                op: MemoryOp::State(op),
            } => {
                let result = self.state_op(store, op);
                self.publish_memory_size(store);
                self.deliver(caller, &slot, Event::Memory(result));
            }
            Command::Memory { caller, slot, op } => {
                let memory = self.memory.borrow();
                let result =
                    catch_unwind(AssertUnwindSafe(|| memory::run(memory.as_ref(), store, op)))
                        .unwrap_or(Err(MemoryError::Panicked));
                drop(memory);
                self.publish_memory_size(store);
                self.deliver(caller, &slot, Event::Memory(result));
            }
            _ => unreachable!("only calls and memory operations are executed"),
        }
    }

    /// A full snapshot or restore; refused inside a call (from an import handler), whose
    /// wasm frames are state that no snapshot holds.
    fn state_op(&self, store: &mut impl AsStoreMut, op: StateOp) -> memory::MemoryResult {
        if !self.frames.borrow().is_empty() {
            return Err(MemoryError::State(StateError::CallInProgress));
        }
        let state = self.state.borrow();
        let state = state.as_ref().expect("the instance is running");
        match catch_unwind(AssertUnwindSafe(|| state.run(store, op))) {
            Ok(Ok(StateReply::Captured(binary))) => Ok(MemoryReply::Bytes(binary)),
            Ok(Ok(StateReply::Restored)) => Ok(MemoryReply::Done),
            Ok(Err(error)) => Err(MemoryError::State(error)),
            Err(_) => Err(MemoryError::State(StateError::Panicked)),
        }
    }

    fn call(&self, store: &mut impl AsStoreMut, frame: Rc<Frame>, func: Callee, limits: Limits) {
        let (function, params) = match self.callee(store, func) {
            Ok(callee) => callee,
            Err(failure) => return self.finish(&frame, Err(failure)),
        };
        let outermost = self.frames.borrow().is_empty();
        if outermost
            && limits
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return self.finish(&frame, Err(CallFailure::from(&HostError::Timeout)));
        }
        if !self.enter(Rc::clone(&frame)) {
            return self.finish(&frame, Err(CallFailure::Stopped));
        }
        let mark = outermost.then(|| self.start_outermost(store, limits));
        self.shared.set_activity(Activity::Running);
        let outcome =
            self.nested(|| catch_unwind(AssertUnwindSafe(|| function.call(store, &params))));
        // Converted before the call's exceptions are dropped: an error may refer to one.
        let outcome = match outcome {
            Ok(Ok(Ok(results))) => Ok(results.iter().map(WasmValue::from_wasmer).collect()),
            Ok(Ok(Err(error))) => Err(self.failure(store, &error)),
            Ok(Err(panic)) => Err(CallFailure::panic(panic_message(&panic))),
            Err(refused) => Err(CallFailure::from(&refused)),
        };
        if let Some(mark) = mark {
            self.end_outermost(store, mark);
        }
        // A nested call returns to the import handler that made it.
        self.shared.set_activity(if outermost {
            Activity::Idle
        } else {
            Activity::InImport
        });
        self.leave();
        self.finish(&frame, outcome);
    }

    /// Why a call failed: a throw that no `invoke_*` caught is reported with what it
    /// carries (an import handler's reason, the C++ exception's `what()`).
    fn failure(&self, store: &mut impl AsStoreMut, error: &RuntimeError) -> CallFailure {
        if let Some(Thrown::Foreign(reason)) = Thrown::of(error) {
            return CallFailure::ImportException(reason.clone());
        }
        match self.describe_uncaught(store, error) {
            Some(message) => CallFailure::Trap {
                kind: TrapKind::Exception,
                message,
            },
            None => CallFailure::classify(error, self.shared.is_stopped()),
        }
    }

    /// The message of an exception nothing caught: a throw of Emscripten's runtime, or a
    /// wasm exception of libc++abi's (see `Runtime::describe*`); `None` for other errors.
    fn describe_uncaught(
        &self,
        store: &mut impl AsStoreMut,
        error: &RuntimeError,
    ) -> Option<String> {
        let hooks = self.emscripten.borrow();
        let runtime = hooks.as_ref().map(|hooks| &hooks.runtime);
        match (Thrown::of(error), runtime) {
            (Some(thrown), Some(runtime)) => {
                Some(runtime.describe(store, &NestedCalls(self), thrown))
            }
            (Some(thrown), None) => Some(thrown.to_string()),
            (None, Some(runtime)) if error.is_exception() && !self.shared.is_stopped() => {
                let payload = error.to_exception()?.payload(store);
                runtime.describe_wasm_exception(store, &NestedCalls(self), &payload)
            }
            (None, _) => None,
        }
    }

    /// The function a call runs and its arguments as wasm values.
    fn callee(
        &self,
        store: &mut impl AsStoreMut,
        func: Callee,
    ) -> Result<(Function, SmallVec<[Value; 4]>), CallFailure> {
        let (function, args) = match func {
            Callee::Export(index, args) => (self.functions.borrow()[index].clone(), args),
            Callee::TableEntry(index, args) => {
                let function = table::entry(store, self.table.borrow().as_ref(), index)
                    .map_err(|error| CallFailure::from(&error))?;
                let args = args.check(function.ty(store).params())?;
                (function, args)
            }
        };
        Ok((function, args.iter().map(|a| a.to_wasmer()).collect()))
    }

    /// Announces a call about to run wasm; false (and nothing entered) when the
    /// instance is stopping. A stop that comes later is noticed by the module's next check.
    fn enter(&self, frame: Rc<Frame>) -> bool {
        if self.shared.is_stopped() {
            return false;
        }
        self.frames.borrow_mut().push(frame);
        true
    }

    /// Whether one more wasm call may nest inside the ones running.
    fn may_nest(&self) -> bool {
        let used = self.stack_top.saturating_sub(stack_address());
        self.nesting.get() < MAX_NESTING && used + STACK_RESERVE < EXECUTOR_STACK_SIZE
    }

    /// Runs `f` (a wasm call) counted as one nesting level. A nested one must fit
    /// (`may_nest`) and takes a wasm stack of its own, which the OS's mapping limit bounds
    /// for the whole VM (see `os_limits::NestedStack`): refused, it traps as nesting too deep.
    fn nested<R>(&self, f: impl FnOnce() -> R) -> Result<R, HostError> {
        let _stack = match self.nesting.get() {
            0 => None,
            _ if !self.may_nest() => return Err(HostError::NestedTooDeep),
            _ => Some(os_limits::NestedStack::take().ok_or(HostError::NestedTooDeep)?),
        };
        self.nesting.set(self.nesting.get() + 1);
        let result = f();
        self.nesting.set(self.nesting.get() - 1);
        Ok(result)
    }

    /// Sets up an outermost call: its limits, and where its exceptions will start.
    fn start_outermost(&self, store: &mut impl AsStoreMut, limits: Limits) -> store_objects::Mark {
        self.start_metering(store, limits);
        store_objects::mark(store)
    }

    /// Records what the call used and drops the exception and function objects it made,
    /// which nothing can reach any more (see `store_objects`).
    fn end_outermost(&self, store: &mut impl AsStoreMut, mark: store_objects::Mark) {
        self.stop_metering(store);
        self.publish_memory_size(store);
        self.shared.calls.fetch_add(1, Ordering::Relaxed);
        store_objects::drop_since(store, mark);
        if let Some(hooks) = self.emscripten.borrow().as_ref() {
            hooks.runtime.end_call();
        }
    }

    fn start_metering(&self, store: &mut impl AsStoreMut, limits: Limits) {
        self.exception_frames.set(0);
        let (meter, fuel) = Meter::start(limits.gas);
        *self.meter.borrow_mut() = Some(meter);
        self.deadline.set(limits.deadline);
        if let Some(global) = self.fuel.borrow().as_ref() {
            global
                .set(store, Value::I64(fuel))
                .expect("the fuel global is a mutable i64");
        }
    }

    /// Records what the call used for `gas_used`.
    fn stop_metering(&self, store: &mut impl AsStoreMut) {
        self.deadline.set(None);
        let Some(meter) = self.meter.take() else {
            return;
        };
        let fuel = match self.fuel.borrow().as_ref().map(|global| global.get(store)) {
            Some(Value::I64(fuel)) => fuel,
            _ => return,
        };
        self.shared
            .gas_used
            .store(meter.finish(fuel), Ordering::Release);
    }

    fn past_deadline(&self) -> bool {
        self.deadline
            .get()
            .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// The module ran out of fuel: stop, time out, or run on with more.
    fn check(&self, fuel: i64) -> Result<i64, HostError> {
        if self.shared.is_stopped() {
            return Err(HostError::Stopped);
        }
        self.defer_queued();
        if self.past_deadline() {
            return Err(HostError::Timeout);
        }
        if fuel == THROW_SIGNAL {
            return self.throw_check().map(|()| 0);
        }
        match self.meter.borrow_mut().as_mut() {
            Some(meter) => meter.refill(fuel).map_err(|_| HostError::OutOfGas),
            // Instantiation (a start function) runs outside any call: no budget.
            None => Ok(SLICE),
        }
    }

    /// The module is about to throw: the runtime will keep a backtrace of the whole stack
    /// until the call ends. Beyond `MAX_EXCEPTION_FRAMES` for the call the throw traps
    /// instead.
    fn throw_check(&self) -> Result<(), HostError> {
        let left = MAX_EXCEPTION_FRAMES.saturating_sub(self.exception_frames.get());
        let frames = fuel::stack_frames(left);
        if frames > left {
            return Err(HostError::ExceptionFrames);
        }
        self.exception_frames
            .set(self.exception_frames.get() + frames);
        Ok(())
    }

    /// Makes the size of memory 0 visible to `info/1`, which cannot reach the Store.
    fn publish_memory_size(&self, store: &impl AsStoreRef) {
        if let Some(memory) = self.memory.borrow().as_ref() {
            self.shared
                .memory_bytes
                .store(memory.view(store).data_size(), Ordering::Relaxed);
        }
    }

    fn leave(&self) {
        let mut frames = self.frames.borrow_mut();
        frames.pop();
        if frames.is_empty() {
            if let Some(monitor) = self.caller_monitor.take() {
                self.resource.demonitor(None, &monitor);
            }
            self.caller_died.set(false);
        }
    }

    /// Monitors the process handling imports, once per outermost call.
    fn watch_caller(&self, caller: LocalPid) {
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
    fn await_reply(
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
                command @ (Command::Call { .. } | Command::Memory { .. }) => {
                    self.deferred.borrow_mut().push_back(command)
                }
                // Stale replies and monitors of earlier calls, or a stop wake-up.
                Command::ImportReply { .. } | Command::CallerDown(_) | Command::Stop => {}
            }
        }
    }

    /// The first deferred command that the wait for `frame`'s import must see: its reply,
    /// its caller's death, or a request of its caller (queued meanwhile by a check).
    fn take_deferred_for(&self, frame: &Frame) -> Option<Command> {
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
    fn defer_queued(&self) {
        while let Some(command) = self.shared.mailbox.try_pop() {
            self.deferred.borrow_mut().push_back(command);
        }
        self.expire_deferred();
    }

    /// The earliest deadline of a call waiting in `deferred`.
    fn earliest_deferred_deadline(&self) -> Option<Instant> {
        self.deferred
            .borrow()
            .iter()
            .filter_map(queued_deadline)
            .min()
    }

    /// Ends the waiting calls whose deadline has passed: `{trap, timeout, _}`, as if they
    /// had run out of time running.
    fn expire_deferred(&self) {
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

    fn send<F>(&self, to: LocalPid, message: F)
    where
        F: for<'a> FnOnce(Env<'a>) -> Term<'a>,
    {
        // A dead recipient is not an error: its result has nobody to go to.
        let _ = self.outbox.borrow_mut().send_and_clear(&to, message);
    }

    /// Hands an event to the NIF waiting for it, or sends it to `caller` as
    /// `{hb_beamr, Id, Event}`.
    fn deliver(&self, caller: LocalPid, slot: &ReplySlot, event: Event) {
        if let Err(event) = slot.offer(event) {
            let shared = &self.shared;
            self.send(caller, |env| {
                (atoms::hb_beamr(), slot.id, encode_event(env, shared, event)).encode(env)
            });
        }
    }

    fn finish(&self, frame: &Frame, outcome: Result<Values, CallFailure>) {
        self.deliver_call(frame, Event::Done(outcome));
    }

    /// `deliver` for a call's events; an asynchronous call's messages are in its protocol.
    fn deliver_call(&self, frame: &Frame, event: Event) {
        let Some(call) = frame.asynchronous() else {
            return self.deliver(frame.caller, &frame.slot, event);
        };
        if let Event::Done(_) = event {
            frame.slot.clear_pending();
        }
        if let Err(event) = frame.slot.offer(event) {
            // Messages of one call arrive in the order they happened: after an event
            // that a NIF took and the caller is still posting to itself.
            frame.slot.await_posted();
            let shared = &self.shared;
            self.send(frame.caller, |env| {
                asynchronous::message(env, shared, call, event)
            });
        }
    }

    /// Marks the instance stopped and answers every request it will never serve.
    fn shutdown(&self) {
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
            let id = match &command {
                Command::Call { slot, .. } | Command::Memory { slot, .. } => slot.id,
                _ => continue,
            };
            let caller = command
                .caller()
                .expect("calls and memory operations have callers");
            self.send(caller, |env| {
                (
                    atoms::hb_beamr(),
                    id,
                    (atoms::error(), CallFailure::Stopped),
                )
                    .encode(env)
            });
        }
    }
}

/// The host function behind every import: ask the calling process, serve it meanwhile.
fn on_import(
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
fn on_invoke(
    mut env: FunctionEnvMut<InvokeSlot>,
    args: &[Value],
) -> Result<Vec<Value>, RuntimeError> {
    let context = context();
    let (index, legalized) = (env.data().index, env.data().legalized);
    let import = &context.shared.imports[index];
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
fn on_runtime(
    mut env: FunctionEnvMut<RuntimeSlot>,
    args: &[Value],
) -> Result<Vec<Value>, RuntimeError> {
    let context = context();
    let (index, import) = (env.data().index, env.data().import);
    let hooks = context.emscripten.borrow();
    let hooks = hooks
        .as_ref()
        .ok_or_else(|| RuntimeError::new("Emscripten's runtime called during instantiation"))?;
    let results = context.shared.imports[index].ty.results();
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

/// The host function behind the module's interruption checks.
fn on_check(fuel: i64) -> Result<i64, HostError> {
    context().check(fuel)
}

/// An event as Erlang sees it: a call's `{ok, Results}`, `{error, Reason}` or
/// `{import, Call, Index, Module, Name, Signature, Args}`, or a memory operation's reply
/// (`{ok, Size}`, `{ok, Bytes}`, `ok`, `{error, Reason}`).
pub fn encode_event<'a>(env: Env<'a>, shared: &Shared, event: Event) -> Term<'a> {
    match event {
        Event::Done(Ok(results)) => (atoms::ok(), results.as_slice()).encode(env),
        Event::Done(Err(failure)) => (atoms::error(), failure).encode(env),
        Event::Memory(Ok(MemoryReply::Size(size))) => (atoms::ok(), size).encode(env),
        Event::Memory(Ok(MemoryReply::Bytes(bytes))) => {
            (atoms::ok(), bytes.release(env)).encode(env)
        }
        Event::Memory(Ok(MemoryReply::Done)) => atoms::ok().encode(env),
        Event::Memory(Err(error)) => (atoms::error(), error).encode(env),
        Event::Import { call, index, args } => {
            let import = &shared.imports[index];
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

pub fn set_wasm_stack_size() {
    wasmer::sys::vm::set_stack_size(WASM_STACK_SIZE);
}
