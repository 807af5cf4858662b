//! Memory 0 operations and snapshots of the whole state, served between calls (or, for
//! memory, from inside an import handler of the calling process).

use std::panic::{catch_unwind, AssertUnwindSafe};

use beamr_core::memory_access::{self, MemoryError, MemoryOp, MemoryReply};
use beamr_core::state::hibernate::Base;
use beamr_core::state::StateError;
use wasmer::AsStoreMut;

use super::Context;
use crate::bytes::{try_binary, Bytes, FirstBinary};
use crate::instance::Event;
use crate::request::StateOp;

impl Context {
    /// Runs `op`; its outcome is the event the request waits for.
    pub(super) fn memory_op(&self, store: &mut impl AsStoreMut, op: MemoryOp<Bytes>) -> Event {
        let memory = self.memory.borrow();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            memory_access::run(memory.as_ref(), store, op, try_binary)
        }));
        Event::Memory(outcome.unwrap_or(Err(MemoryError::Panicked)))
    }

    /// A full snapshot or restore (its outcome is the event the request waits for); refused inside a call (from an import handler), whose
    /// wasm frames are state that no snapshot holds.
    pub(super) fn state_op(&self, store: &mut impl AsStoreMut, op: StateOp) -> Event {
        if !self.frames.borrow().is_empty() {
            return Event::State(Err(StateError::CallInProgress));
        }
        let state = self.state.borrow();
        let state = state.as_ref().expect("the instance is running");
        let outcome = catch_unwind(AssertUnwindSafe(|| match op {
            StateOp::Capture { incremental } => state
                .capture(store, incremental, try_binary)
                .map(MemoryReply::Bytes),
            StateOp::Apply { chain } => {
                let fresh = self.fresh.borrow_mut().take();
                let applied = chain.with_slices(|chain| match &fresh {
                    Some(fresh) => state.apply_to_fresh(store, chain, fresh),
                    None => state.apply(store, chain),
                });
                // The snapshot may be the base of this instance's hibernation image.
                *self.base.borrow_mut() = match applied {
                    Ok(()) => FirstBinary::new(chain).and_then(|f| Base::for_restored(Box::new(f))),
                    Err(_) => None,
                };
                applied.map(|()| MemoryReply::Done)
            }
        }));
        Event::State(outcome.unwrap_or(Err(StateError::Panicked)))
    }
}
