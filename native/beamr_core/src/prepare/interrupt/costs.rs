//! The cost model: what each operator, bulk operation and charged region costs.

use wasmparser::{FunctionBody, Operator};

/// What a throw costs, in units of an ordinary operator.
pub const THROW_COST: u64 = 10_000;

/// What a bulk operation costs besides its length: a call into the runtime, 4–16 ns here
/// for a length of 0 or 1, where an operator of a tight loop takes ~0.07 ns. Without it,
/// a loop of empty `table.fill`s would run ~40 ms on one slice of fuel.
pub const BULK_COST: u64 = 128;

/// What each byte of `memory.fill/copy/init` costs. Measured here: 0.009–0.02 ns per byte
/// in cache (up to ~110 GB/s), 0.074 ns copying 8 MiB, against ~0.07 ns per operator of
/// a tight loop. At one unit per byte, a unit of bulk work takes no longer than a unit of
/// other code, so a slice of fuel ([`crate::fuel::SLICE`], 2^24 units) is at most ~1.2 ms
/// of it; a bulk operation still costs far less than a loop moving the same bytes.
pub const MEMORY_UNITS_PER_BYTE: u64 = 1;

/// What each element of `table.fill/copy/init` costs: 0.17 (copy) to 0.5 ns (fill) per
/// element measured here, ~7 operators' worth; a slice is at most ~1 ms of it.
pub const TABLE_UNITS_PER_ELEMENT: u64 = 8;

/// The bytes of a wasm page.
pub(super) const PAGE_BYTES: u64 = 65536;

/// The fuel an operator costs, besides what a bulk operation's length adds.
pub(super) fn cost(operator: &Operator) -> u64 {
    match operator {
        Operator::Throw { .. } | Operator::ThrowRef | Operator::Rethrow { .. } => THROW_COST,
        Operator::MemoryFill { .. }
        | Operator::MemoryCopy { .. }
        | Operator::MemoryInit { .. }
        | Operator::TableFill { .. }
        | Operator::TableCopy { .. }
        | Operator::TableInit { .. } => BULK_COST,
        _ => 1,
    }
}

/// The cost of each charged region of a function: its body outside loops, and each loop
/// body outside nested loops (in the order the loops appear).
pub(super) struct RegionCosts {
    pub(super) entry: u64,
    pub(super) loops: Vec<u64>,
}

impl RegionCosts {
    pub(super) fn of(
        body: &FunctionBody<'_>,
    ) -> Result<RegionCosts, wasmparser::BinaryReaderError> {
        let mut costs = RegionCosts {
            entry: 0,
            loops: Vec::new(),
        };
        // Per open block: the region it belongs to (None: the function's own region).
        let mut open: Vec<Option<usize>> = vec![None];
        let mut reader = body.get_operators_reader()?;
        while !reader.eof() {
            let operator = reader.read()?;
            let region = *open.last().unwrap_or(&None);
            let charge = match region {
                Some(index) => &mut costs.loops[index],
                None => &mut costs.entry,
            };
            *charge = charge.saturating_add(cost(&operator));
            match operator {
                Operator::Loop { .. } => {
                    costs.loops.push(0);
                    open.push(Some(costs.loops.len() - 1));
                }
                Operator::Block { .. }
                | Operator::If { .. }
                | Operator::TryTable { .. }
                | Operator::Try { .. } => open.push(region),
                Operator::End | Operator::Delegate { .. } => {
                    open.pop();
                }
                _ => {}
            }
        }
        Ok(costs)
    }
}
