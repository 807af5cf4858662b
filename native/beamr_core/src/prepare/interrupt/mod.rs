//! Interruption and gas: a fuel countdown compiled into every function.
//!
//! Running wasm must be stoppable (stop/1, timeouts, gas budgets) without asynchronous
//! signals: a signal landing inside the runtime's own code (an exception being thrown, an
//! allocation) can deadlock it. So the module polices itself. The pass adds
//!
//! * a mutable i64 global, the *fuel*, exported as [`FUEL_EXPORT`] so the host can set and
//!   read it between calls;
//! * an imported function [`CHECK_MODULE`].[`CHECK_NAME`] of type `(i64) -> i64`, placed
//!   after the module's own imports (so every defined function's index moves up by one);
//! * at every function entry and every loop header a *charge*: the fuel is decreased by
//!   the cost of the code that can run before the next charge, and when it drops below
//!   zero the module calls the check with the fuel left (negative: the overdraft). The
//!   host checks the stop flag, the deadline and the gas budget there, then traps (an
//!   ordinary host error) or returns fresh fuel.
//!
//! Cost model (what `gas_used` counts): one unit per operator, but [`THROW_COST`] for
//! each `throw`, `throw_ref` and `rethrow` (the runtime allocates an exception and unwinds
//! the stack: microseconds, where other operators take a nanosecond), and [`BULK_COST`]
//! for each bulk operation (`memory.fill/copy/init`, `table.fill/copy/init`: a call into
//! the runtime) plus its length, [`MEMORY_UNITS_PER_BYTE`] per byte and
//! [`TABLE_UNITS_PER_ELEMENT`] per table element. Entering a function charges every
//! operator of its body outside loops; entering or repeating a loop charges every operator
//! of that loop's body outside nested loops; a bulk operation's length is charged just
//! before it runs, so one the budget cannot pay for never starts. Forward branches can
//! only skip code, so between two charges wasm never runs more than it paid for, and the
//! same call on the same state always costs the same.
//!
//! Three more rewrites keep everything a module does within reach of the check:
//!
//! * every `throw` first calls the check with [`THROW_SIGNAL`] (and drops its answer).
//!   The runtime creates each exception with a backtrace of the whole stack, kept until
//!   the call ends: a throw costs time and memory in proportion to the stack's depth, which
//!   no fixed cost can stand for (a throw rethrown at each of 10,000 levels took 14 s and
//!   2.3 GB). So the host looks at each throw: it checks the stop flag and the deadline,
//!   and bounds the stack frames the call's exceptions hold.
//!
//! * `memory.atomic.wait32/64` would block inside the runtime, where neither a stop nor a
//!   deadline reaches it. No other thread ever runs on an instance's memory, so no
//!   `memory.atomic.notify` can come, and each wait is replaced by its outcome: an atomic
//!   load at the same address (the wait's out-of-bounds and alignment traps) compared with
//!   the expected value; different: 1 ("not-equal"); equal with a timeout (>= 0): 2
//!   ("timed-out"), at once, as it would be after sleeping; equal without a timeout (< 0),
//!   which would never return: trap `unreachable`. On an unshared memory, where wasmer
//!   traps whenever the value is equal, an equal value traps `unreachable`.
//! * `memory.grow` and `table.grow` first add the growth asked for to what all the
//!   instance's memories and tables take (64 KiB per page, [`TABLE_ENTRY_BYTES`] per
//!   table entry, summed in i64 by one added function) and answer -1, the spec's failure,
//!   without growing when that exceeds the instance's byte budget. Beyond keeping the
//!   instance within its budget, this is what stops a huge `table.grow` from reaching
//!   wasmer, which aborts the process when it cannot allocate the table.
//!
//! [`TABLE_ENTRY_BYTES`]: super::TABLE_ENTRY_BYTES

mod costs;
mod host_interface;
mod instrument;
mod layout;
mod sections;
#[cfg(test)]
mod tests;

use wasm_encoder::reencode::Reencode;
use wasm_encoder::Module;
use wasmparser::Parser;

use crate::prepare::error::{invalid, PrepareError};

pub use costs::{BULK_COST, MEMORY_UNITS_PER_BYTE, TABLE_UNITS_PER_ELEMENT, THROW_COST};
pub use host_interface::{unlimited_check, CHECK_MODULE, CHECK_NAME, FUEL_EXPORT, THROW_SIGNAL};
use instrument::Instrument;
use layout::Layout;

/// Instruments `wasm` (32-bit memories and tables only: memory64 is lowered before), whose
/// memories and tables together may take at most `budget` bytes; `None` when it defines
/// no functions (nothing can run).
pub(super) fn instrument(wasm: &[u8], budget: u64) -> Result<Option<Vec<u8>>, PrepareError> {
    let layout = Layout::read(wasm).map_err(invalid)?;
    if layout.function_types.is_empty() {
        return Ok(None);
    }
    let mut instrument = Instrument {
        layout,
        budget,
        written: Vec::new(),
        next_function: 0,
    };
    let mut module = Module::new();
    instrument
        .parse_core_module(&mut module, Parser::new(0), wasm)
        .map_err(|e| PrepareError(format!("interruption checks: {e}")))?;
    Ok(Some(module.finish()))
}
