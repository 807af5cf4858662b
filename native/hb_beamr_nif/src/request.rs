//! What a command asks of an executor: the function to call, the state operation, the
//! answer to an import (memory operations are `beamr_core::memory_access::MemoryOp`s).

use crate::bytes::BinaryList;
use crate::codec::{UncheckedArgs, Values};

/// How the Erlang side answered an import.
pub enum ImportAnswer {
    Results(Values),
    /// The import fun raised or returned something unusable: the call traps.
    Failed,
    /// `{import_exception, Reason}` (Reason in the external term format): thrown at the
    /// import's call site, to the nearest `invoke_*`.
    Exception(Vec<u8>),
}

/// The function a call runs, with its arguments.
pub enum Callee {
    /// Export number `n` of `Shared::exports`; the arguments were checked against its type.
    Export(usize, Values),
    /// Entry `n` of table 0, whose type only the executor can see (entries change as wasm
    /// runs), so it checks the arguments.
    TableEntry(u32, UncheckedArgs),
}

/// An operation on the whole state (memory, globals, table; see `beamr_core::state`).
pub enum StateOp {
    /// A snapshot: a delta of the changes since the base when `incremental` and there is
    /// a base, a full one otherwise.
    Capture { incremental: bool },
    /// Restore a chain: a full snapshot, then its deltas.
    Apply { chain: BinaryList },
}
