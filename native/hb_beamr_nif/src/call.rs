//! One call in progress, as a resource: import requests carry it so the reply finds the
//! call, and it holds the hand-over slot that lets a NIF take the call's next event
//! (its result or an import request) directly when it comes within microseconds.
//!
//! Messages from a foreign thread wake a sleeping BEAM scheduler, which costs tens of
//! microseconds; short calls and import round trips therefore spin briefly in the NIF
//! (bounded, well under the 1 ms a NIF may take) and fall back to messages.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustler::{Resource, ResourceArc};

use crate::codec::WasmValue;
use crate::instance::{next_id, Shared};
use crate::mailbox::relax;
use crate::trap::CallFailure;

/// How long a NIF waits for the executor before leaving the event to a message.
pub const HANDOVER_SPIN: Duration = Duration::from_micros(20);

pub enum Event {
    Import { index: usize, args: Vec<WasmValue> },
    Done(Result<Vec<WasmValue>, CallFailure>),
}

pub struct CallResource {
    pub shared: Arc<Shared>,
    pub id: u64,
    state: AtomicU8,
    event: Mutex<Option<Event>>,
}

#[rustler::resource_impl]
impl Resource for CallResource {}

/// Nobody waits in a NIF: the executor sends events as messages.
const IDLE: u8 = 0;
/// A NIF spins for the next event.
const WAITING: u8 = 1;
/// The executor left the next event in the slot.
const FILLED: u8 = 2;

impl CallResource {
    pub fn new(shared: Arc<Shared>) -> ResourceArc<CallResource> {
        ResourceArc::new(CallResource {
            shared,
            id: next_id(),
            state: AtomicU8::new(IDLE),
            event: Mutex::new(None),
        })
    }

    /// Announces that the current NIF will wait for the next event (before it queues
    /// the command that leads to that event).
    pub fn arm(&self) {
        self.state.store(WAITING, Ordering::SeqCst);
    }

    /// Executor side: hands `event` to a waiting NIF, or gives it back to be sent.
    pub fn offer(&self, event: Event) -> Result<(), Event> {
        if self.state.load(Ordering::Acquire) != WAITING {
            return Err(event);
        }
        *self.event.lock() = Some(event);
        match self.state.compare_exchange(WAITING, FILLED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Ok(()),
            Err(_) => Err(self.event.lock().take().expect("event just stored")),
        }
    }

    /// NIF side, after `arm`: the next event if it comes within `HANDOVER_SPIN`.
    pub fn wait(&self) -> Option<Event> {
        let deadline = Instant::now() + HANDOVER_SPIN;
        let mut polls = 0u32;
        loop {
            if self.state.load(Ordering::Acquire) == FILLED {
                return self.take();
            }
            polls += 1;
            if polls % 32 == 0 && Instant::now() >= deadline {
                break;
            }
            relax(polls);
        }
        match self.state.compare_exchange(WAITING, IDLE, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => None,
            Err(_) => self.take(),
        }
    }

    fn take(&self) -> Option<Event> {
        let event = self.event.lock().take();
        self.state.store(IDLE, Ordering::Release);
        event
    }
}
