//! memory64 lowering: 64-bit memories and tables become 32-bit ones.
//!
//! wasmer has no 64-bit memories (it panics on them) and no 64-bit tables, but AO's
//! modules declare a 64-bit memory that in practice stays far below 4 GiB. So each 64-bit
//! memory (and table) is redeclared with a 32-bit index type, and every instruction that
//! takes an address (index, length, page delta) from a 64-bit one narrows that i64 operand
//! to i32 just before the instruction. Function signatures do not change: addresses are
//! still i64 values everywhere else, so the module's exports look exactly as before.
//!
//! Narrowing must not wrap: an address ≥ 2^32 has to trap as out of bounds, as it would on a
//! real 64-bit memory. It is replaced, branchlessly, by [`SENTINEL`]:
//!
//! ```text
//! local.tee $scratch  i32.wrap_i64  i32.const SENTINEL
//! local.get $scratch  i64.const 32  i64.shr_u  i64.eqz  select
//! ```
//!
//! That is sound because a lowered memory never exceeds [`MAX_LOWERED_PAGES`] (its maximum
//! is clamped to it), so its byte size is at most `0xFFFF_0000 < SENTINEL`: any access of
//! one byte or more at `SENTINEL + offset` is out of bounds (wasmer computes `address +
//! offset` of a 32-bit heap in 64 bits, without wrapping), as is any bulk operation whose
//! destination, source or length became `SENTINEL` (even with a zero length, since the
//! address then lies beyond the end), and `memory.grow` by `SENTINEL` pages fails with -1.
//! Lowered tables are clamped to wasmer's own table limit, far below it. A static `offset`
//! ≥ 2^32 in a memory argument (always out of bounds) becomes `SENTINEL | (offset & 15)`.
//!
//! Atomics trap as `unaligned` or `out of bounds`, and which one must be decided on the real
//! effective address `address + offset`: the threads proposal checks its alignment first,
//! then the bounds, and wasmer does the same on the narrowed address and offset. So the
//! address operand of an atomic keeps its low four bits when it is narrowed:
//!
//! ```text
//! local.tee $scratch  i32.wrap_i64  local.get $scratch  i64.const 32  i64.shr_u  i64.eqz
//! i32.const 1  i32.sub  i32.const SENTINEL  i32.and  i32.or
//! ```
//!
//! which is `SENTINEL | (address & 15)` for an address ≥ 2^32 (`SENTINEL` is 16-byte aligned,
//! and no atomic is wider than 8 bytes), just as out of bounds but aligned as the original.
//! The same holds for the offset, so the narrowed `address + offset` is aligned exactly when
//! the real one is. Other accesses never trap as unaligned and keep the shorter sequence, as
//! do `memory.atomic.wait*`/`notify`, which wasmer checks for bounds before alignment (also
//! on 32-bit memories).
//!
//! Results grow back to i64: `memory.size`/`table.size` zero-extend, `memory.grow`/
//! `table.grow` sign-extend so that -1 stays -1 (sizes are far below 2^31, so this is exact).
//!
//! Active data and element segments of lowered memories and tables get i32 offsets, folded
//! at preparation time from `i64.const` and extended-const arithmetic; an offset ≥ 2^32
//! becomes `SENTINEL` so instantiation fails as it should. An offset that reads a global
//! (necessarily an imported one, as in dynamically linked side modules) cannot be folded
//! and is reported as unsupported.
//!
//! Limits: maximums of 64-bit memories above [`MAX_LOWERED_PAGES`] and of 64-bit tables
//! above [`MAX_LOWERED_TABLE_ELEMENTS`] (or absent) are clamped to those values, so a grow
//! beyond them returns -1, which the spec allows any engine to do. The clamp is monotone, so
//! an import of a lowered memory or table matches an export exactly when it did before.
//!
//! A minimum above those values cannot be lowered. Such a module is still valid, it just
//! can never be instantiated (no engine can allocate 2^48 pages), so it must compile but
//! fail to instantiate. Each such memory or table, defined or imported, becomes an import
//! of a small 32-bit one from [`UNSATISFIABLE_MODULE`] under a name that says what went
//! wrong: nothing provides it, so instantiation fails with a link error naming it. An
//! import is renamed in place; a definition moves to the end of the imports, which shifts
//! the indices of the memories (or tables) defined after it, so every reference to one
//! (instructions, segments, exports) is renumbered. The name section is copied as is, so
//! its memory and table names may then be off, which cannot matter for a module that never
//! runs.
//!
//! [`SENTINEL`]: narrow::SENTINEL
//! [`MAX_LOWERED_TABLE_ELEMENTS`]: entities::MAX_LOWERED_TABLE_ELEMENTS
//! [`UNSATISFIABLE_MODULE`]: entities::UNSATISFIABLE_MODULE

mod entities;
mod lowering;
mod narrow;
mod sections;
mod shape;
#[cfg(test)]
mod tests;

use wasm_encoder::reencode::{Error as ReencodeError, Reencode};
use wasmparser::types::{EntityType, TypesRef};
use wasmparser::Parser;

use crate::prepare::error::PrepareError;

use entities::{entities, MAX_LOWERED_TABLE_ELEMENTS};
use lowering::Lowering;

pub(super) use entities::MAX_LOWERED_PAGES;

/// Lowers every 64-bit memory and table of a module already validated as `types`, or
/// returns None when it has none.
pub(super) fn lower(wasm: &[u8], types: TypesRef<'_>) -> Result<Option<Vec<u8>>, PrepareError> {
    let imports: Vec<EntityType> = types
        .core_imports()
        .into_iter()
        .flatten()
        .map(|(_, _, ty)| ty)
        .collect();
    let imported = |kind: fn(&EntityType) -> bool| imports.iter().filter(|&ty| kind(ty)).count();
    let memories = entities(
        (0..types.memory_count())
            .map(|i| types.memory_at(i))
            .map(|memory| (memory.memory64, memory.initial)),
        imported(|ty| matches!(ty, EntityType::Memory(_))),
        MAX_LOWERED_PAGES,
        "memory",
        "pages",
    );
    let tables = entities(
        (0..types.table_count())
            .map(|i| types.table_at(i))
            .map(|table| (table.table64, table.initial)),
        imported(|ty| matches!(ty, EntityType::Table(_))),
        MAX_LOWERED_TABLE_ELEMENTS,
        "table",
        "elements",
    );
    if !memories.iter().chain(&tables).any(|entity| entity.is64) {
        return Ok(None);
    }
    let mut lowering = Lowering {
        types,
        memories,
        tables,
        definitions_imported: false,
    };
    let mut module = wasm_encoder::Module::new();
    lowering
        .parse_core_module(&mut module, Parser::new(0), wasm)
        .map_err(|e| match e {
            ReencodeError::UserError(e) => e,
            other => PrepareError(format!("memory64 lowering: {other}")),
        })?;
    Ok(Some(module.finish()))
}
