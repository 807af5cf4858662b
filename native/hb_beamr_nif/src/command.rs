//! What NIFs ask of an executor.

use std::sync::Arc;
use std::time::Instant;

use rustler::{LocalPid, ResourceArc};

use crate::bytes::Bytes;
use crate::codec::{UncheckedArgs, Values};
use crate::handover::{CallResource, ReplySlot};
use crate::state::StateOp;

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
        op: MemoryOp,
    },
    /// The Erlang side answered the pending import of call `id`.
    ImportReply { id: u64, answer: ImportAnswer },
    /// A monitored caller died.
    CallerDown(LocalPid),
    /// Wakes the executor so it notices the instance's stop flag.
    Stop,
}

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

/// What a call may use (call/6 options). Only an outermost call's limits apply: a nested
/// call runs within the call that is waiting for its import.
#[derive(Clone, Copy, Default)]
pub struct Limits {
    pub deadline: Option<Instant>,
    pub gas: Option<u64>,
}

pub enum MemoryOp {
    Size,
    Read {
        offset: u64,
        len: u64,
    },
    /// All of memory 0.
    Snapshot,
    Write {
        offset: u64,
        data: Bytes,
    },
    /// The bytes from `ptr` up to (excluding) the first NUL, which must come within `max`.
    ReadString {
        ptr: u64,
        max: u64,
    },
    /// Write at offset 0, growing the memory first when `data` does not fit.
    Restore {
        data: Bytes,
    },
    /// The whole state (memory, globals, table): served by `state.rs`, not `memory.rs`.
    State(StateOp),
}

impl Command {
    /// The process a Call or Memory command answers to.
    pub fn caller(&self) -> Option<LocalPid> {
        match self {
            Command::Call { caller, .. } | Command::Memory { caller, .. } => Some(*caller),
            _ => None,
        }
    }
}
