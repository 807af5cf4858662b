//! Events on their way out: to the NIF waiting for them, or as messages in the request's
//! protocol.

use std::sync::atomic::Ordering;

use beamr_core::failure::CallFailure;
use rustler::{Encoder, Env, LocalPid, Term};
use wasmer::AsStoreRef;

use super::{Context, Frame};
use crate::atoms;
use crate::codec::Values;
use crate::instance::{Event, ReplySlot};
use crate::messages;

impl Context {
    /// Makes the size of memory 0 visible to `info/1`, which cannot reach the Store.
    pub(super) fn publish_memory_size(&self, store: &impl AsStoreRef) {
        if let Some(memory) = self.memory.borrow().as_ref() {
            self.shared
                .memory_bytes
                .store(memory.view(store).data_size(), Ordering::Relaxed);
        }
    }

    pub(super) fn send<F>(&self, to: LocalPid, message: F)
    where
        F: for<'a> FnOnce(Env<'a>) -> Term<'a>,
    {
        // A dead recipient is not an error: its result has nobody to go to.
        let _ = self.outbox.borrow_mut().send_and_clear(&to, message);
    }

    /// Hands an event to the NIF waiting for it, or sends it to `caller` as
    /// `{hb_beamr, Id, Event}`.
    pub(super) fn deliver(&self, caller: LocalPid, slot: &ReplySlot, event: Event) {
        if let Err(event) = slot.offer(event) {
            let shared = &self.shared;
            self.send(caller, |env| {
                (
                    atoms::hb_beamr(),
                    slot.id,
                    messages::event(env, shared, event),
                )
                    .encode(env)
            });
        }
    }

    pub(super) fn finish(&self, frame: &Frame, outcome: Result<Values, CallFailure>) {
        self.deliver_call(frame, Event::Done(outcome));
    }

    /// `deliver` for a call's events; an asynchronous call's messages are in its protocol.
    pub(super) fn deliver_call(&self, frame: &Frame, event: Event) {
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
                messages::asynchronous(env, shared, call, event)
            });
        }
    }
}
