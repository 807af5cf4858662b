//! One request in progress: the hand-over slot through which a NIF can take the next
//! event of a call (its result or an import request) or a memory operation's outcome
//! directly when it comes within microseconds, and the resource that import requests carry
//! so the reply finds the call.
//!
//! Messages from a foreign thread wake a sleeping BEAM scheduler, which costs tens of
//! microseconds; short calls and import round trips therefore spin briefly in the NIF
//! and fall back to messages. The protocol (beamr_core's `Slot`) never makes a NIF wait
//! for the executor beyond the spin bound: a NIF that gives up while the executor is
//! writing leaves the event to it, and the executor sends it as a message.
//!
//! Import replies come from Erlang, so any term may arrive: only the process that
//! issued the request may answer its imports, once per import request.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use beamr_core::handoff::Slot;
use parking_lot::Mutex;
use rustler::{LocalPid, Resource, ResourceArc};

use crate::asynchronous::Protocol;

use crate::codec::Values;
use crate::instance::Shared;
use crate::memory::MemoryResult;
use crate::trap::CallFailure;

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
    Memory(MemoryResult),
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

    /// Executor side: hands `event` to a waiting NIF, or gives it back to be sent.
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
    /// `asynchronous`); the resource is then also the call's public reference.
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
