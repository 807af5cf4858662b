//! An instance as the NIFs and its executor thread share it, and the requests in flight
//! between them.
//!
//! These types refer to each other in a loop, which is why they live together: an
//! instance ([`Shared`]) has a mailbox of [`Command`]s; a command carries the
//! [`ReplySlot`] its outcome comes back through and, for an asynchronous call, the call's
//! [`CallResource`]; a slot hands over [`Event`]s; an import request event carries the
//! `CallResource` its reply must name; and a `CallResource` holds its instance.
//!
//! The Store and wasmer Instance never leave the executor thread; `Shared` holds only what
//! other threads need: the mailbox, the stop flag, the export/import tables used to check
//! arguments before queueing, and what `hb_beamr:info/1` reports (the module it runs, and
//! counters the executor keeps up to date with cheap relaxed stores).
//!
//! Public handles are pids (HyperBEAM checks `is_pid/1`): a registry maps each owner pid
//! to its instance so NIFs find it without a round trip through the owner process.
//!
//! Hand-over: messages from a foreign thread wake a sleeping BEAM scheduler, which costs
//! tens of microseconds; short calls and import round trips therefore spin briefly in the
//! NIF and fall back to messages. The protocol (beamr_core's `Slot`) never makes a NIF
//! wait for the executor beyond the spin bound: a NIF that gives up while the executor is
//! writing leaves the event to it, and the executor sends it as a message. Import replies
//! come from Erlang, so any term may arrive: only the process that issued the request may
//! answer its imports, once per import request. Commands from one process never overtake
//! each other: a process waits for the answer to each command before it sends the next.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use beamr_core::compile::Origin;
use beamr_core::dirty_pages::Policy;
use beamr_core::emscripten::invoke::Handler;
use beamr_core::failure::CallFailure;
use beamr_core::handoff::{Closed, Slot};
use beamr_core::memory_access::{MemoryOp, MemoryReply, MemoryResult};
use beamr_core::state::StateError;
use once_cell::sync::Lazy;
use parking_lot::{Mutex, RwLock};
use rustler::{LocalPid, OwnedBinary, Resource, ResourceArc};
use wasmer::{Engine, FunctionType, Module};

use crate::bytes::Bytes;
use crate::codec::Values;
use crate::hibernation::{Hibernation, Wake};
use crate::options::Limits;
use crate::request::{Callee, ImportAnswer, StateOp};

pub type Mailbox = beamr_core::handoff::Mailbox<Command>;

pub struct ExportedFunction {
    pub name: String,
    pub ty: FunctionType,
}

pub struct ImportedFunction {
    pub module: String,
    pub name: String,
    pub signature: String,
    pub ty: FunctionType,
    pub handler: Handler,
}

/// What the executor is doing, for `info/1`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Activity {
    /// Waiting for a command.
    Idle = 0,
    /// Running wasm.
    Running = 1,
    /// Waiting for the calling process to answer an import.
    InImport = 2,
    /// Instantiating the module (and running its start function).
    Starting = 3,
}

/// The module an instance runs: the SHA-256 of its source and how it was obtained.
pub struct ModuleInfo {
    pub sha256: [u8; 32],
    pub origin: Origin,
    /// What its snapshots are bound to (`artifact::Header::state_identity`).
    pub state_identity: [u8; 32],
}

pub struct Shared {
    /// The process whose pid is the public handle; its death stops the instance.
    pub owner: LocalPid,
    pub mailbox: Mailbox,
    pub stopped: AtomicBool,
    /// The fuel the last outermost call used (`hb_beamr:gas_used/1`).
    pub gas_used: AtomicU64,
    /// An `Activity`, written by the executor only.
    pub activity: AtomicU8,
    /// Outermost calls the executor has run to their end.
    pub calls: AtomicU64,
    /// The size of memory 0 when the executor last looked (after instantiation, each
    /// outermost call and memory operation, and at each import).
    pub memory_bytes: AtomicU64,
    pub module: ModuleInfo,
    /// Its exports and imports, shared by the instances of one module.
    pub interface: Arc<Interface>,
    /// How incremental snapshots find changed pages (start option `dirty_tracking`).
    pub dirty_tracking: Policy,
    /// The compiled module and its engine, from which a hibernated instance is revived.
    pub compiled: Module,
    pub engine: Engine,
    pub hibernation: Hibernation,
}

/// A module's functions as the NIFs check calls against them and the executor links and
/// answers them: the same for every instance of the module (with one `emscripten` mode),
/// so made once and shared.
pub struct Interface {
    pub exports: Vec<ExportedFunction>,
    pub export_index: HashMap<String, usize>,
    /// The length in bytes of the longest export name: no longer name is looked up.
    pub longest_export_name: usize,
    pub imports: Vec<ImportedFunction>,
}

impl Interface {
    pub fn new(exports: Vec<ExportedFunction>, imports: Vec<ImportedFunction>) -> Interface {
        let export_index = exports
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        let longest_export_name = exports.iter().map(|e| e.name.len()).max().unwrap_or(0);
        Interface {
            exports,
            export_index,
            longest_export_name,
            imports,
        }
    }
}

pub struct InstanceResource {
    pub shared: Arc<Shared>,
}

impl Shared {
    pub fn new(
        owner: LocalPid,
        module: ModuleInfo,
        interface: Arc<Interface>,
        dirty_tracking: Policy,
        compiled: (Module, Engine),
        hibernation: Hibernation,
    ) -> Shared {
        Shared {
            owner,
            mailbox: Mailbox::new(),
            stopped: AtomicBool::new(false),
            gas_used: AtomicU64::new(0),
            activity: AtomicU8::new(Activity::Starting as u8),
            calls: AtomicU64::new(0),
            memory_bytes: AtomicU64::new(0),
            module,
            interface,
            dirty_tracking,
            compiled: compiled.0,
            engine: compiled.1,
            hibernation,
        }
    }

    /// Executor side. Relaxed: readers only report it, nothing is synchronised by it.
    pub fn set_activity(&self, activity: Activity) {
        self.activity.store(activity as u8, Ordering::Relaxed);
    }

    pub fn activity(&self) -> Activity {
        match self.activity.load(Ordering::Relaxed) {
            1 => Activity::Running,
            2 => Activity::InImport,
            3 => Activity::Starting,
            _ => Activity::Idle,
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Queues a command unless the instance is stopping or gone; then says whether the
    /// request must wake a hibernated instance (see `hibernation`).
    pub fn submit(&self, command: Command) -> Result<Wake, Closed> {
        if self.is_stopped() {
            return Err(Closed);
        }
        self.mailbox.push(command)?;
        Ok(self.hibernation.after_push())
    }

    /// Ends the instance: idempotent, returns at once. Running wasm notices at its next
    /// interruption check (see `beamr_core::prepare::interrupt`) and an executor waiting
    /// for a command or an import reply is woken by the `Stop` command.
    pub fn stop(self: &Arc<Self>) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        unregister(&self.owner);
        let _ = self.mailbox.push(Command::Stop);
    }
}

impl InstanceResource {
    pub fn new(shared: Arc<Shared>) -> ResourceArc<InstanceResource> {
        ResourceArc::new(InstanceResource { shared })
    }
}

static INSTANCES: Lazy<RwLock<HashMap<LocalPid, ResourceArc<InstanceResource>>>> =
    Lazy::new(|| RwLock::new(HashMap::new()));

/// Makes the instance findable by its owner's pid.
pub fn register(owner: LocalPid, instance: ResourceArc<InstanceResource>) {
    INSTANCES.write().insert(owner, instance);
}

/// The instance whose public handle is `owner`, unless it stopped.
pub fn lookup(owner: &LocalPid) -> Option<ResourceArc<InstanceResource>> {
    INSTANCES.read().get(owner).cloned()
}

pub fn unregister(owner: &LocalPid) {
    INSTANCES.write().remove(owner);
}

/// How many instances are registered (live or hibernated).
pub fn count() -> usize {
    INSTANCES.read().len()
}

/// What NIFs ask of an executor.
pub enum Command {
    /// Call `func`; its events go to `caller` (see `ReplySlot`). `handle` is set for an
    /// asynchronous call: its reference, which also says how its events are sent.
    Call {
        caller: LocalPid,
        slot: Arc<ReplySlot>,
        func: Callee,
        limits: Limits,
        handle: Option<ResourceArc<CallResource>>,
    },
    /// Access memory 0; the outcome goes to `caller` (see `ReplySlot`).
    Memory {
        caller: LocalPid,
        slot: Arc<ReplySlot>,
        op: MemoryOp<Bytes>,
    },
    /// Snapshot or restore the whole state; the outcome goes to `caller`.
    State {
        caller: LocalPid,
        slot: Arc<ReplySlot>,
        op: StateOp,
    },
    /// The Erlang side answered the pending import of call `id`.
    ImportReply { id: u64, answer: ImportAnswer },
    /// Hibernate now if idle; the outcome goes to the caller when there is one (`max_live`
    /// sends it without).
    Hibernate {
        reply: Option<(LocalPid, Arc<ReplySlot>)>,
    },
    /// A monitored caller died.
    CallerDown(LocalPid),
    /// Wakes the executor so it notices the instance's stop flag.
    Stop,
}

impl Command {
    /// The process a request (a call, a memory or state operation) answers to.
    pub fn caller(&self) -> Option<LocalPid> {
        match self {
            Command::Call { caller, .. }
            | Command::Memory { caller, .. }
            | Command::State { caller, .. }
            | Command::Hibernate {
                reply: Some((caller, _)),
            } => Some(*caller),
            _ => None,
        }
    }
}

/// How long a NIF spins for the executor before leaving the event to a message. Pure
/// spinning (a yield can give away a whole time slice): a NIF must return within 100 µs.
pub(crate) const HANDOVER_SPIN: Duration = Duration::from_micros(20);

pub enum Event {
    Import {
        call: ResourceArc<CallResource>,
        index: usize,
        args: Values,
    },
    Done(Result<Values, CallFailure>),
    /// The outcome of a memory operation (these use the same hand-over).
    Memory(MemoryResult<OwnedBinary>),
    /// The outcome of a snapshot (`Bytes`) or restore (`Done`).
    State(Result<MemoryReply<OwnedBinary>, StateError>),
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// How long an executor waits for a caller to post an event its NIF took: the caller
/// does it right after the NIF returns, unless it died meanwhile.
const POSTING_BOUND: Duration = Duration::from_millis(100);

pub struct ReplySlot {
    /// Tags the request's messages, unique in this VM.
    pub id: u64,
    /// The process that issued the request, which receives its events and alone may
    /// answer its imports.
    caller: LocalPid,
    /// 1 + the index of the import request still unanswered, 0 when there is none.
    /// It stays set when the call ends otherwise (stop, caller death), so a handler that
    /// was running then can still answer once; the executor ignores that answer.
    pending_import: AtomicUsize,
    /// An asynchronous call's event was taken by a NIF and is on its way into the caller's
    /// mailbox (Erlang sends it to itself): the executor's next message for the call must
    /// not overtake it.
    posting: AtomicBool,
    slot: Slot<Event>,
}

impl ReplySlot {
    pub fn new(caller: LocalPid) -> Arc<ReplySlot> {
        Arc::new(ReplySlot {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            caller,
            pending_import: AtomicUsize::new(0),
            posting: AtomicBool::new(false),
            slot: Slot::new(),
        })
    }

    /// Announces that the current NIF will wait for the next event (before it queues
    /// the command that leads to that event). False when an earlier hand-over on this
    /// slot has not finished: then the NIF must not wait, the event comes as a message.
    #[must_use]
    pub fn arm(&self) -> bool {
        self.slot.arm()
    }

    /// Executor side: hands `event` to a waiting NIF, or gives it back to be sent (not
    /// boxed: that would cost every hand-over an allocation).
    #[allow(clippy::result_large_err)]
    pub fn offer(&self, event: Event) -> Result<(), Event> {
        if let Event::Import { index, .. } = &event {
            // Before the request can reach Erlang, by either path.
            self.pending_import.store(index + 1, Ordering::Release);
        }
        self.slot.offer(event)
    }

    /// NIF side, after a successful `arm`: the next event if `shared`'s executor sends it
    /// within `HANDOVER_SPIN` (less when it turns out to wait for this NIF's core);
    /// otherwise it will come as a message.
    pub fn wait(&self, shared: &Shared) -> Option<Event> {
        self.slot
            .wait(HANDOVER_SPIN, || shared.mailbox.consumer_may_run())
    }

    /// Takes the right to answer the pending import request (`index`, or whichever is
    /// pending when `None`) for process `from`: granted once per request, and only to
    /// the request's caller.
    pub fn claim_reply(&self, from: LocalPid, index: Option<usize>) -> bool {
        match index {
            Some(index) => {
                from == self.caller
                    && self
                        .pending_import
                        .compare_exchange(index + 1, 0, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
            }
            None => self.claim_pending(from).is_some(),
        }
    }

    /// NIF side, before `arm` for an asynchronous call: an event it takes stays marked as
    /// being posted until `posted`.
    pub fn start_posting(&self) {
        self.posting.store(true, Ordering::Release);
    }

    /// The event taken (if any) is in the caller's mailbox.
    pub fn posted(&self) {
        self.posting.store(false, Ordering::Release);
    }

    /// Executor side, before sending a message for this request: waits (a bounded time:
    /// the caller may have died in between) until an event a NIF took is posted.
    pub fn await_posted(&self) {
        let give_up = std::time::Instant::now() + POSTING_BOUND;
        while self.posting.load(Ordering::Acquire) && std::time::Instant::now() < give_up {
            std::thread::yield_now();
        }
    }

    /// The call ended: nothing of it can be answered any more.
    pub fn clear_pending(&self) {
        self.pending_import.store(0, Ordering::Release);
    }

    /// Whether an import request waits for `from`'s answer.
    pub fn is_pending_for(&self, from: LocalPid) -> bool {
        from == self.caller && self.pending_import.load(Ordering::Acquire) != 0
    }

    /// `claim_reply` for whichever import is pending: its index.
    pub fn claim_pending(&self, from: LocalPid) -> Option<usize> {
        if from != self.caller {
            return None;
        }
        self.pending_import.swap(0, Ordering::AcqRel).checked_sub(1)
    }
}

/// A call as Erlang code sees it inside an import request: `import_reply` and
/// `import_failed` take it to answer that call's pending import.
pub struct CallResource {
    pub shared: Arc<Shared>,
    pub slot: Arc<ReplySlot>,
    /// Set for asynchronous calls, whose events are messages in this protocol (see
    /// `messages::asynchronous`); the resource is then also the call's public reference.
    pub protocol: Option<Protocol>,
    /// An asynchronous call's failed import: its index and the reason the caller gave
    /// (external term format), to report in the call's result.
    pub failure: Mutex<Option<(usize, Vec<u8>)>>,
}

impl CallResource {
    pub fn new(
        shared: Arc<Shared>,
        slot: Arc<ReplySlot>,
        protocol: Option<Protocol>,
    ) -> ResourceArc<CallResource> {
        ResourceArc::new(CallResource {
            shared,
            slot,
            protocol,
            failure: Mutex::new(None),
        })
    }
}

#[rustler::resource_impl]
impl Resource for CallResource {}

/// How an asynchronous call's events are put as messages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `{hb_beamr_result, Ref, {ok, Results} | {error, Reason}}` and
    /// `{hb_beamr_import, Ref, #{instance, module, func, args, func_sig}}`.
    Async,
    /// HyperBEAM's seed port: `{execution_result, Results}`, `{error, Reason}` and
    /// `{import, Module, Func, Args, Sig}`.
    Seed,
}
