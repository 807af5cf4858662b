//! The executor thread: one per instance, sole owner of its wasmer Store and Instance.
//!
//! It serves the mailbox in FIFO order. A call that reaches an import sends
//! `{hb_beamr, Id, {import, ...}}` to the calling process and keeps serving that
//! process's commands (memory access, nested calls) until the reply arrives; commands
//! from other processes wait until the outermost call is over.
//!
//! [`Context`] is what the thread keeps besides the Store; its methods are spread by
//! concern: `lifecycle.rs` (instantiation, the command loop, shutdown), `hibernate.rs`
//! (hibernation and revival), `call.rs` (running
//! wasm: limits, nesting, failures), `imports.rs` (the host functions and the wait for an
//! import's answer), `memory.rs` (memory and state operations), `delivery.rs` (events to
//! the waiting NIF or as messages).

mod call;
mod delivery;
mod hibernate;
mod imports;
mod lifecycle;
mod memory;

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use beamr_core::emscripten::invoke::Hooks;
use beamr_core::engine::panic_message;
use beamr_core::failure::CallFailure;
use beamr_core::fuel::Meter;
use beamr_core::os_limits;
use beamr_core::state::base::Base;
use beamr_core::state::zero_pages::ZeroPages;
use beamr_core::state::StateAccess;
use parking_lot::Mutex;
use rustler::{LocalPid, Monitor, OwnedEnv, ResourceArc};
use wasmer::{Function, Global, Memory, Table};

use crate::budget::Executing;
use crate::hibernation::Stored;
use crate::instance::{CallResource, Command, InstanceResource, ReplySlot, Shared};
use crate::options::Limits;

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
    /// Snapshot and restore of the whole state (see `beamr_core::state`).
    state: RefCell<Option<StateAccess>>,
    /// The snapshot this instance was restored from when other instances share it: the
    /// base of its hibernation image (the module's fresh state otherwise).
    base: RefCell<Option<Arc<Base>>>,
    /// The pages of zeros of memory while it is a fresh instantiation's (until a call,
    /// memory operation or restore): a restore then skips them unread.
    fresh: RefCell<Option<Arc<ZeroPages>>>,
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

/// Starts the executor; it instantiates `module` in a Store of `engine` (the engine that
/// compiled it), running the module's start function within `limits`, and reports to
/// `starter` as `start`'s events.
pub fn spawn(
    resource: ResourceArc<InstanceResource>,
    starter: LocalPid,
    start: Arc<ReplySlot>,
    limits: Limits,
) -> std::io::Result<()> {
    beamr_core::executor_thread::spawn(c"hb_beamr_exec", EXECUTOR_STACK_SIZE, move || {
        let _live = os_limits::LiveInstance::count();
        let start = Frame::new(starter, start, None);
        run(resource, |context| {
            let ended = catch_unwind(AssertUnwindSafe(|| context.serve(&start, limits)));
            ended.unwrap_or_else(|panic| {
                context.finish(&start, Err(CallFailure::panic(panic_message(&panic))));
                Ended::Stopped
            })
        })
    })
}

/// Starts an executor that revives a hibernated instance from `stored` and serves what
/// its mailbox holds. `Err` gives the image back when the OS refuses the thread.
pub fn revive(resource: ResourceArc<InstanceResource>, stored: Stored) -> Result<(), Box<Stored>> {
    let handed = Arc::new(Mutex::new(Some(stored)));
    let taken = Arc::clone(&handed);
    beamr_core::executor_thread::spawn(c"hb_beamr_exec", EXECUTOR_STACK_SIZE, move || {
        let _live = os_limits::LiveInstance::count();
        let stored = taken.lock().take().expect("handed over once");
        run(resource, |context| {
            catch_unwind(AssertUnwindSafe(|| context.revive(stored))).unwrap_or(Ended::Stopped)
        })
    })
    .map_err(|_| Box::new(handed.lock().take().expect("not taken")))
}

/// Runs `serve` with the thread's `Context`; an instance that ended (rather than
/// hibernated) is shut down.
fn run(resource: ResourceArc<InstanceResource>, serve: impl FnOnce(&Context) -> Ended) {
    let shared = Arc::clone(&resource.shared);
    let _executing = Executing::new(&shared);
    shared.mailbox.bind_executor();
    let context = Rc::new(Context {
        resource,
        shared: Arc::clone(&shared),
        functions: RefCell::new(Vec::new()),
        memory: RefCell::new(None),
        table: RefCell::new(None),
        state: RefCell::new(None),
        base: RefCell::new(None),
        fresh: RefCell::new(None),
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
    // The Store went with `serve`: a hibernation is answered once its memory is released.
    match serve(&context) {
        Ended::Stopped => context.shutdown(),
        Ended::Hibernated(requester) => context.answer_hibernation(requester, Ok(())),
    }
    CONTEXT.with(|c| *c.borrow_mut() = None);
}

/// Who asked for a hibernation, to answer: `hibernate/1`'s caller, none for `max_live`'s
/// requests and `hibernate_after`.
type Requester = Option<(LocalPid, Arc<ReplySlot>)>;

/// How an executor's service ended.
enum Ended {
    /// The instance stopped: what is still queued is refused.
    Stopped,
    /// The instance hibernated: its image holds the state, the next request revives it.
    /// Who asked, to answer.
    Hibernated(Requester),
}

/// The address of a local of the calling frame.
#[inline(never)]
fn stack_address() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}
pub fn set_wasm_stack_size() {
    wasmer::sys::vm::set_stack_size(WASM_STACK_SIZE);
}
