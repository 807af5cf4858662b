//! Hibernation and revival, executor side: the image is made (and written, with
//! `hibernate_dir`) before the instance lets go of anything; a revival that fails leaves
//! the image where it was and answers the queued requests with the reason.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use beamr_core::dirty_pages::Policy;
use beamr_core::failure::{CallFailure, Resource};
use beamr_core::image_dir;
use beamr_core::memory_access::MemoryReply;
use beamr_core::state::base::Base;
use beamr_core::state::hibernate::Image;
use beamr_core::state::{zeroed, StateAccess, StateError};
use wasmer::{Instance, Store};

use super::{Context, Ended, Requester};
use crate::hibernation::{Stored, STATS};
use crate::instance::{Command, Event};
use crate::messages;

/// The instance did not hibernate.
pub(super) struct StaysLive;

impl Context {
    /// Hibernates unless requests wait: `Ok` when the image is handed over, and the
    /// thread must end without touching the instance again, answering the requester once
    /// the Store is gone (so that `ok` means the memory is released); `Err` when the
    /// instance stays live (the requester has its answer).
    pub(super) fn hibernate(
        &self,
        store: &mut Store,
        reply: Requester,
    ) -> Result<Requester, StaysLive> {
        self.shared.hibernation.requested_seen();
        if !self.deferred.borrow().is_empty() || !self.shared.mailbox.is_empty() {
            self.answer_hibernation(reply, Err(StateError::Busy));
            return Err(StaysLive);
        }
        let stored = match self.image(store) {
            Ok(stored) => stored,
            Err(why) => {
                let counter = match why {
                    StateError::Grow(_) => &STATS.failed_no_memory,
                    StateError::Disk(_) => &STATS.failed_disk,
                    _ => &STATS.failed_state,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                self.answer_hibernation(reply, Err(why));
                return Err(StaysLive);
            }
        };
        match self.shared.hibernation.park(stored, &self.shared.mailbox) {
            Ok(()) => {
                self.shared
                    .hibernation
                    .hibernations
                    .fetch_add(1, Ordering::Relaxed);
                STATS.hibernations.fetch_add(1, Ordering::Relaxed);
                Ok(reply)
            }
            Err(stored) => {
                stored.discard();
                self.answer_hibernation(reply, Err(StateError::Busy));
                Err(StaysLive)
            }
        }
    }

    pub(super) fn answer_hibernation(&self, reply: Requester, outcome: Result<(), StateError>) {
        if let Some((caller, slot)) = reply {
            self.deliver(
                caller,
                &slot,
                Event::State(outcome.map(|()| MemoryReply::Done)),
            );
        }
    }

    /// `hibernate/1` from inside a call of the same process.
    pub(super) fn refuse_hibernation(&self, reply: Requester) {
        self.answer_hibernation(reply, Err(StateError::CallInProgress));
    }

    /// The instance's state as an image against its module's base, in memory or written
    /// to `hibernate_dir`.
    fn image(&self, store: &mut Store) -> Result<Stored, StateError> {
        let base = self.base(store)?;
        let state = self.state.borrow();
        let state = state.as_ref().expect("the instance is running");
        let image = state.hibernate(store, base)?;
        let Some(dir) = &self.shared.hibernation.dir else {
            return Ok(Stored::Memory(image));
        };
        let path = image_dir::path(dir, self.resource_id());
        let encoded = image.encode();
        let bytes = encoded.len() as u64;
        image_dir::write(&path, &encoded)
            .map_err(|e| StateError::Disk(format!("{}: {e}", path.display())))?;
        Ok(Stored::Disk {
            path,
            base: Arc::clone(image.base()),
            bytes,
        })
    }

    /// A number naming this instance's image file, unique among the live instances.
    fn resource_id(&self) -> u64 {
        Arc::as_ptr(&self.shared) as u64
    }

    /// The base of this instance's image: the shared snapshot it was restored from, or
    /// its module's freshly instantiated state (made here, in this Store, which goes away
    /// with the executor, the first time).
    fn base(&self, store: &mut Store) -> Result<Arc<Base>, StateError> {
        if let Some(base) = self.base.borrow().as_ref() {
            return Ok(Arc::clone(base));
        }
        let module = &self.shared.compiled;
        let identity = self.shared.module.state_identity;
        let shared = Base::for_module(identity, || {
            let imports = self.import_object(store);
            let fresh =
                Instance::new(store, module, &imports).map_err(|_| StateError::Grow("memory"))?;
            let state = StateAccess::new(store, module, &fresh, identity, Policy::Digests);
            state.capture(store, false, zeroed)
        });
        match shared {
            Ok(base) => Ok(base),
            // No room for a fresh instance (the OS's limits): a larger image, rather than
            // none when memory is short, which is when hibernating matters most.
            Err(StateError::Grow(_)) => {
                let state = self.state.borrow();
                state
                    .as_ref()
                    .expect("the instance is running")
                    .bare_base(store)
            }
            Err(why) => Err(why),
        }
    }

    /// Puts a hibernated instance's state into this new instance.
    pub(super) fn put_back(&self, store: &mut Store, stored: &Stored) -> Result<(), CallFailure> {
        let read;
        let image = match stored {
            Stored::Memory(image) => image,
            Stored::Disk { path, base, .. } => {
                let bytes = std::fs::read(path).map_err(|e| {
                    CallFailure::InvalidSnapshot(format!("{}: {e}", path.display()))
                })?;
                read = Image::decode(&bytes, Arc::clone(base)).map_err(revival_failure)?;
                &read
            }
        };
        let state = self.state.borrow();
        let state = state.as_ref().expect("set up");
        let fresh = self.fresh.borrow_mut().take();
        state
            .revive(store, image, fresh.as_deref())
            .map_err(revival_failure)?;
        *self.base.borrow_mut() = Some(Arc::clone(image.base()));
        Ok(())
    }

    /// A revival failed: the queued requests get `failure`, and the instance hibernates
    /// again with the same image (or ends, when it was stopped meanwhile).
    pub(super) fn unrevived(&self, stored: Stored, failure: CallFailure) -> Ended {
        let shared = &self.shared;
        let refuse = |command| self.refuse(command, &failure);
        match shared
            .hibernation
            .give_back(stored, &shared.mailbox, || shared.is_stopped(), refuse)
        {
            true => Ended::Hibernated(None),
            false => Ended::Stopped,
        }
    }

    /// Answers a request that will not be served.
    pub(super) fn refuse(&self, command: Command, failure: &CallFailure) {
        let Some(caller) = command.caller() else {
            return;
        };
        let shared = &self.shared;
        self.send(caller, |env| {
            messages::refusal(env, shared, command, failure).expect("a request")
        });
    }
}

/// Why a revival failed, for the requests that were waiting for it.
fn revival_failure(error: StateError) -> CallFailure {
    match error {
        StateError::Snapshot(why) => CallFailure::InvalidSnapshot(why.to_string()),
        StateError::Grow(_) => CallFailure::ResourceLimit(Resource::Memory),
        other => CallFailure::InvalidSnapshot(format!("{other:?}")),
    }
}
