//! Memory 0 operations and snapshots of the whole state, served between calls (or, for
//! memory, from inside an import handler of the calling process).

use std::panic::{catch_unwind, AssertUnwindSafe};

use beamr_core::memory_access::{self, MemoryError, MemoryReply};
use beamr_core::state::StateError;
use wasmer::AsStoreMut;

use super::Context;
use crate::bytes::try_binary;
use crate::instance::Event;
use crate::request::{MemoryOp, StateOp};

impl Context {
    /// Runs `op`; its outcome is the event the request waits for.
    pub(super) fn memory_op(&self, store: &mut impl AsStoreMut, op: MemoryOp) -> Event {
        let memory = self.memory.borrow();
        let memory = memory.as_ref();
        let mut run = |op: memory_access::MemoryOp| {
            catch_unwind(AssertUnwindSafe(|| {
                memory_access::run(memory, store, op, try_binary)
            }))
            .unwrap_or(Err(MemoryError::Panicked))
        };
        let outcome = match op {
            MemoryOp::Size => run(memory_access::MemoryOp::Size),
            MemoryOp::Read { offset, len } => run(memory_access::MemoryOp::Read { offset, len }),
            MemoryOp::Snapshot => run(memory_access::MemoryOp::Snapshot),
            MemoryOp::ReadString { ptr, max } => {
                run(memory_access::MemoryOp::ReadString { ptr, max })
            }
            MemoryOp::Write { offset, data } => {
                data.with_slice(|data| run(memory_access::MemoryOp::Write { offset, data }))
            }
            MemoryOp::Restore { data } => {
                data.with_slice(|data| run(memory_access::MemoryOp::Restore { data }))
            }
        };
        Event::Memory(outcome)
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
            StateOp::Apply { chain } => chain
                .with_slices(|chain| state.apply(store, chain))
                .map(|()| MemoryReply::Done),
        }));
        Event::State(outcome.unwrap_or(Err(StateError::Panicked)))
    }
}
