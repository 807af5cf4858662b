//! One request in progress: the hand-over slot through which a NIF can take the next
//! event of a call (its result or an import request) or a memory operation's outcome
//! directly when it comes within microseconds, and the resource that import requests carry
//! so the reply finds the call.
//!
//! Messages from a foreign thread wake a sleeping BEAM scheduler, which costs tens of
//! microseconds; short calls and import round trips therefore spin briefly in the NIF
//! (bounded, well under the 1 ms a NIF may take) and fall back to messages.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustler::{Resource, ResourceArc};

use crate::codec::Values;
use crate::memory::MemoryResult;
use crate::instance::Shared;
use crate::spin::Spin;
use crate::trap::CallFailure;

/// How long a NIF waits for the executor before leaving the event to a message, and
/// how much of that it spins without yielding.
const HANDOVER_SPIN: Duration = Duration::from_micros(20);
const HANDOVER_SPIN_BEFORE_YIELDING: Duration = Duration::from_micros(5);

pub enum Event {
    Import { call: ResourceArc<CallResource>, index: usize, args: Values },
    Done(Result<Values, CallFailure>),
    /// The outcome of a memory operation (these use the same hand-over).
    Memory(MemoryResult),
}

/// Nobody waits in a NIF: the executor sends events as messages.
const IDLE: u8 = 0;
/// A NIF spins for the next event.
const WAITING: u8 = 1;
/// The executor claimed the slot and is writing the event.
const WRITING: u8 = 2;
/// The event is in the slot.
const FILLED: u8 = 3;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub struct ReplySlot {
    /// Tags the request's messages, unique in this VM.
    pub id: u64,
    state: AtomicU8,
    /// Written only by the executor between WRITING and FILLED, read only by the NIF
    /// after it saw FILLED and before it sets IDLE: the state machine serialises access.
    event: UnsafeCell<Option<Event>>,
}

// SAFETY: `event` is only touched under the ownership protocol of `state` (see above).
unsafe impl Sync for ReplySlot {}

impl ReplySlot {
    pub fn new() -> Arc<ReplySlot> {
        Arc::new(ReplySlot { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), state: AtomicU8::new(IDLE), event: UnsafeCell::new(None) })
    }

    /// Announces that the current NIF will wait for the next event (before it queues
    /// the command that leads to that event).
    pub fn arm(&self) {
        self.state.store(WAITING, Ordering::SeqCst);
    }

    /// Executor side: hands `event` to a waiting NIF, or gives it back to be sent.
    pub fn offer(&self, event: Event) -> Result<(), Event> {
        if self
            .state
            .compare_exchange(WAITING, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(event);
        }
        // SAFETY: WRITING gives the executor exclusive access to `event`.
        unsafe { *self.event.get() = Some(event) };
        self.state.store(FILLED, Ordering::Release);
        Ok(())
    }

    /// NIF side, after `arm`: the next event if it comes within `HANDOVER_SPIN`.
    pub fn wait(&self) -> Option<Event> {
        let mut spin = Spin::new(HANDOVER_SPIN_BEFORE_YIELDING, HANDOVER_SPIN);
        loop {
            if self.state.load(Ordering::Acquire) == FILLED {
                return Some(self.take());
            }
            if !spin.step() {
                break;
            }
        }
        if self.state.compare_exchange(WAITING, IDLE, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            return None;
        }
        // The executor claimed the slot just now: its write takes nanoseconds.
        while self.state.load(Ordering::Acquire) != FILLED {
            std::hint::spin_loop();
        }
        Some(self.take())
    }

    fn take(&self) -> Event {
        // SAFETY: FILLED hands `event` to the waiting NIF until it stores IDLE.
        let event = unsafe { (*self.event.get()).take() }.expect("a filled slot holds an event");
        self.state.store(IDLE, Ordering::Release);
        event
    }
}

/// A call as Erlang code sees it inside an import request: `import_reply` and
/// `import_failed` take it to answer that call's pending import.
pub struct CallResource {
    pub shared: Arc<Shared>,
    pub slot: Arc<ReplySlot>,
}

#[rustler::resource_impl]
impl Resource for CallResource {}
