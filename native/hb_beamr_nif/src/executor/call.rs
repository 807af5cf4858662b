//! Running wasm: a call from start to result, its limits (deadline, gas, the frames its
//! exceptions hold), how deeply calls nest, and why a call failed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use beamr_core::emscripten::Thrown;
use beamr_core::engine::panic_message;
use beamr_core::failure::{CallFailure, HostError, TrapKind};
use beamr_core::fuel::{self, Meter, MAX_EXCEPTION_FRAMES, SLICE};
use beamr_core::os_limits;
use beamr_core::prepare::interrupt::THROW_SIGNAL;
use beamr_core::store_objects;
use beamr_core::table;
use smallvec::SmallVec;
use wasmer::{AsStoreMut, Function, RuntimeError, Value};

use super::imports::NestedCalls;
use super::{
    context, stack_address, Context, Frame, EXECUTOR_STACK_SIZE, MAX_NESTING, STACK_RESERVE,
};
use crate::codec::WasmValue;
use crate::instance::Activity;
use crate::options::Limits;
use crate::request::Callee;

impl Context {
    pub(super) fn call(
        &self,
        store: &mut impl AsStoreMut,
        frame: Rc<Frame>,
        func: Callee,
        limits: Limits,
    ) {
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
    pub(super) fn failure(&self, store: &mut impl AsStoreMut, error: &RuntimeError) -> CallFailure {
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
    pub(super) fn describe_uncaught(
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
    pub(super) fn callee(
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
    pub(super) fn enter(&self, frame: Rc<Frame>) -> bool {
        if self.shared.is_stopped() {
            return false;
        }
        self.frames.borrow_mut().push(frame);
        true
    }

    /// Whether one more wasm call may nest inside the ones running.
    pub(super) fn may_nest(&self) -> bool {
        let used = self.stack_top.saturating_sub(stack_address());
        self.nesting.get() < MAX_NESTING && used + STACK_RESERVE < EXECUTOR_STACK_SIZE
    }

    /// Runs `f` (a wasm call) counted as one nesting level. A nested one must fit
    /// (`may_nest`) and takes a wasm stack of its own, which the OS's mapping limit bounds
    /// for the whole VM (see `os_limits::NestedStack`): refused, it traps as nesting too deep.
    pub(super) fn nested<R>(&self, f: impl FnOnce() -> R) -> Result<R, HostError> {
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
    pub(super) fn start_outermost(
        &self,
        store: &mut impl AsStoreMut,
        limits: Limits,
    ) -> store_objects::Mark {
        self.start_metering(store, limits);
        store_objects::mark(store)
    }

    /// Records what the call used and drops the exception and function objects it made,
    /// which nothing can reach any more (see `store_objects`).
    pub(super) fn end_outermost(&self, store: &mut impl AsStoreMut, mark: store_objects::Mark) {
        self.stop_metering(store);
        self.publish_memory_size(store);
        self.shared.calls.fetch_add(1, Ordering::Relaxed);
        store_objects::drop_since(store, mark);
        if let Some(hooks) = self.emscripten.borrow().as_ref() {
            hooks.runtime.end_call();
        }
    }

    pub(super) fn start_metering(&self, store: &mut impl AsStoreMut, limits: Limits) {
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
    pub(super) fn stop_metering(&self, store: &mut impl AsStoreMut) {
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

    pub(super) fn past_deadline(&self) -> bool {
        self.deadline
            .get()
            .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// The module ran out of fuel: stop, time out, or run on with more.
    pub(super) fn check(&self, fuel: i64) -> Result<i64, HostError> {
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
    pub(super) fn throw_check(&self) -> Result<(), HostError> {
        let left = MAX_EXCEPTION_FRAMES.saturating_sub(self.exception_frames.get());
        let frames = fuel::stack_frames(left);
        if frames > left {
            return Err(HostError::ExceptionFrames);
        }
        self.exception_frames
            .set(self.exception_frames.get() + frames);
        Ok(())
    }

    pub(super) fn leave(&self) {
        let mut frames = self.frames.borrow_mut();
        frames.pop();
        if frames.is_empty() {
            if let Some(monitor) = self.caller_monitor.take() {
                self.resource.demonitor(None, &monitor);
            }
            self.caller_died.set(false);
        }
    }
}

/// The host function behind the module's interruption checks.
pub(super) fn on_check(fuel: i64) -> Result<i64, HostError> {
    context().check(fuel)
}
