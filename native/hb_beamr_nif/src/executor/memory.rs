//! Memory 0 operations and snapshots of the whole state, served between calls (or, for
//! memory, from inside an import handler of the calling process).

use std::panic::{catch_unwind, AssertUnwindSafe};

use beamr_core::memory_access::{self, MemoryError, MemoryOp, MemoryReply};
use beamr_core::state::base::Base;
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
                // A snapshot that other instances were restored from is a base: of this
                // instance's hibernation image, and shared as memory (see
                // `beamr_core::state::memory_file`).
                let base = FirstBinary::new(chain.duplicate())
                    .and_then(|first| Base::for_restored(Box::new(first)));
                let applied = chain.with_slices(|chain| {
                    state.apply_known(store, chain, fresh.as_deref(), base.as_deref())
                });
                *self.base.borrow_mut() = applied.as_ref().ok().and(base);
                applied.map(|()| MemoryReply::Done)
            }
        }));
        Event::State(outcome.unwrap_or(Err(StateError::Panicked)))
    }
}
