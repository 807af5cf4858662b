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

use wasm_encoder::reencode::{utils, Error as ReencodeError, Reencode};
use wasm_encoder::{
    CodeSection, ConstExpr, DataSection, ElementSection, Encode, Function, ImportSection,
    InstructionSink, MemArg, MemorySection, SectionId, TableSection,
};
use wasmparser::types::{EntityType, TypesRef};
use wasmparser::{
    CodeSectionReader, DataKind, ElementKind, FunctionBody, ImportSectionReader, MemArgTarget,
    MemorySectionReader, Operator, Parser, TableSectionReader, TypeRef, ValType,
};

use super::error::PrepareError;

/// The largest a lowered memory may get: one page short of 4 GiB, so that [`SENTINEL`] and
/// everything above it stay out of bounds.
pub(super) const MAX_LOWERED_PAGES: u64 = 65535;

/// The largest a lowered table may get: wasmer refuses tables above 128 Mi elements.
const MAX_LOWERED_TABLE_ELEMENTS: u64 = 1 << 27;

/// What every address, index, length or delta ≥ 2^32 becomes (see the module docs).
const SENTINEL: u32 = 0xFFFF_FFF0;

/// The module that the imports replacing unfittable memories and tables (see the module
/// docs) come from; nothing provides them.
const UNSATISFIABLE_MODULE: &str = "hb_beamr";

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

/// One operand of a rewritten instruction, bottom of the stack first.
#[derive(Clone, Copy)]
enum Operand {
    /// An i64 address, index, length or delta of a lowered memory or table: narrowed.
    Address,
    /// Any other operand: kept as is, but may have to be set aside while one below it is
    /// narrowed.
    Value(ValType),
}

/// How a lowered instruction's i32 result becomes the i64 the original produced.
#[derive(Clone, Copy)]
enum Widen {
    None,
    Unsigned,
    Signed,
}

/// The operands and result of an instruction that touches a lowered memory or table.
struct Shape {
    operands: [Operand; 3],
    len: usize,
    widen: Widen,
    /// An atomic access, which traps when its effective address is not aligned.
    atomic: bool,
}

impl Shape {
    fn new(operands: &[Operand], widen: Widen) -> Shape {
        let mut shape = Shape {
            operands: [Operand::Address; 3],
            len: operands.len(),
            widen,
            atomic: false,
        };
        shape.operands[..operands.len()].copy_from_slice(operands);
        shape
    }

    /// `memory.copy` / `table.copy`: each address has its own memory's type and the length
    /// the narrower of the two (the memory64 proposal's rule).
    fn copy(dst64: bool, src64: bool) -> Option<Shape> {
        let operand = |is64| {
            if is64 {
                Operand::Address
            } else {
                Operand::Value(ValType::I32)
            }
        };
        (dst64 || src64).then(|| {
            Shape::new(
                &[operand(dst64), operand(src64), operand(dst64 && src64)],
                Widen::None,
            )
        })
    }
}

/// A memory or table of the original module.
struct Entity {
    is64: bool,
    imported: bool,
    /// Its index in the lowered module, which differs from the original one when unfittable
    /// definitions before it moved to the imports.
    new_index: u32,
    /// For a 64-bit one whose minimum cannot be lowered: the name of the unsatisfiable
    /// import that replaces it.
    unfittable: Option<String>,
}

/// The memories (or tables) of a module, given whether each is 64-bit and its minimum
/// (imports first, the first `imported` of them imported), with the new index order: the
/// imports, then the unfittable definitions (which become imports), then the others.
fn entities(
    limits: impl Iterator<Item = (bool, u64)>,
    imported: usize,
    cap: u64,
    what: &str,
    unit: &str,
) -> Vec<Entity> {
    let mut entities: Vec<Entity> = limits
        .enumerate()
        .map(|(index, (is64, initial))| Entity {
            is64,
            imported: index < imported,
            new_index: index as u32,
            unfittable: (is64 && initial > cap)
                .then(|| format!("{what} {index} of {initial} {unit} does not fit in 32 bits (at most {cap} {unit})")),
        })
        .collect();
    let moved = entities[imported..]
        .iter()
        .filter(|entity| entity.unfittable.is_some())
        .count();
    let (mut next_moved, mut next_kept) = (imported, imported + moved);
    for entity in &mut entities[imported..] {
        let next = if entity.unfittable.is_some() {
            &mut next_moved
        } else {
            &mut next_kept
        };
        entity.new_index = *next as u32;
        *next += 1;
    }
    entities
}

/// The type of the import replacing an unfittable memory or table: the same with a minimum
/// of zero, so that it lowers to a valid 32-bit type.
fn emptied(ty: TypeRef) -> TypeRef {
    match ty {
        TypeRef::Memory(memory) => TypeRef::Memory(wasmparser::MemoryType {
            initial: 0,
            ..memory
        }),
        TypeRef::Table(table) => TypeRef::Table(wasmparser::TableType {
            initial: 0,
            ..table
        }),
        other => other,
    }
}

struct Lowering<'a> {
    types: TypesRef<'a>,
    /// By original memory index (imports first).
    memories: Vec<Entity>,
    /// By original table index (imports first).
    tables: Vec<Entity>,
    /// The imports replacing unfittable definitions have been emitted.
    definitions_imported: bool,
}

impl Lowering<'_> {
    fn is_lowered(&self, target: MemArgTarget) -> bool {
        matches!(target, MemArgTarget::Memory(memory) if self.memories[memory as usize].is64)
    }

    fn memory_op(&self, target: MemArgTarget, operands: &[Operand], widen: Widen) -> Option<Shape> {
        self.is_lowered(target).then(|| Shape::new(operands, widen))
    }

    /// An atomic access to memory: its only address is the deepest operand.
    fn atomic_op(&self, target: MemArgTarget, operands: &[Operand]) -> Option<Shape> {
        self.memory_op(target, operands, Widen::None)
            .map(|shape| Shape {
                atomic: true,
                ..shape
            })
    }

    fn table_op(&self, table: u32, operands: &[Operand], widen: Widen) -> Option<Shape> {
        self.tables[table as usize]
            .is64
            .then(|| Shape::new(operands, widen))
    }

    fn table_element(&self, table: u32) -> Operand {
        Operand::Value(ValType::Ref(self.types.table_at(table).element_type))
    }

    /// Emits the import replacing an unfittable memory or table of type `ty`.
    fn import_unsatisfiable(
        &mut self,
        imports: &mut ImportSection,
        name: &str,
        ty: TypeRef,
    ) -> Result<(), ReencodeError<PrepareError>> {
        imports.import(UNSATISFIABLE_MODULE, name, self.entity_type(emptied(ty))?);
        Ok(())
    }

    /// Emits the imports replacing the unfittable definitions, in their new index order,
    /// once: after the module's own imports, or in an import section of their own.
    fn import_unfittable_definitions(
        &mut self,
        imports: &mut ImportSection,
    ) -> Result<(), ReencodeError<PrepareError>> {
        self.definitions_imported = true;
        let types = self.types;
        let memories = self
            .memories
            .iter()
            .enumerate()
            .map(|(i, m)| (m, TypeRef::Memory(types.memory_at(i as u32))));
        let tables = self
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| (t, TypeRef::Table(types.table_at(i as u32))));
        let unfittable: Vec<(String, TypeRef)> = memories
            .chain(tables)
            .filter(|(entity, _)| !entity.imported)
            .filter_map(|(entity, ty)| Some((entity.unfittable.clone()?, ty)))
            .collect();
        for (name, ty) in unfittable {
            self.import_unsatisfiable(imports, &name, ty)?;
        }
        Ok(())
    }

    /// The shape of `op` if it touches a lowered memory or table, else None.
    fn shape(&self, op: &Operator) -> Option<Shape> {
        use Operand::{Address as A, Value as V};
        use Operator as O;
        use ValType::{F32, F64, I32, I64, V128};
        match *op {
            O::I32Load { memarg }
            | O::I64Load { memarg }
            | O::F32Load { memarg }
            | O::F64Load { memarg }
            | O::I32Load8S { memarg }
            | O::I32Load8U { memarg }
            | O::I32Load16S { memarg }
            | O::I32Load16U { memarg }
            | O::I64Load8S { memarg }
            | O::I64Load8U { memarg }
            | O::I64Load16S { memarg }
            | O::I64Load16U { memarg }
            | O::I64Load32S { memarg }
            | O::I64Load32U { memarg }
            | O::V128Load { memarg }
            | O::V128Load8x8S { memarg }
            | O::V128Load8x8U { memarg }
            | O::V128Load16x4S { memarg }
            | O::V128Load16x4U { memarg }
            | O::V128Load32x2S { memarg }
            | O::V128Load32x2U { memarg }
            | O::V128Load8Splat { memarg }
            | O::V128Load16Splat { memarg }
            | O::V128Load32Splat { memarg }
            | O::V128Load64Splat { memarg }
            | O::V128Load32Zero { memarg }
            | O::V128Load64Zero { memarg } => self.memory_op(memarg.target, &[A], Widen::None),

            O::I32Store { memarg } | O::I32Store8 { memarg } | O::I32Store16 { memarg } => {
                self.memory_op(memarg.target, &[A, V(I32)], Widen::None)
            }
            O::I64Store { memarg }
            | O::I64Store8 { memarg }
            | O::I64Store16 { memarg }
            | O::I64Store32 { memarg } => self.memory_op(memarg.target, &[A, V(I64)], Widen::None),
            O::F32Store { memarg } => self.memory_op(memarg.target, &[A, V(F32)], Widen::None),
            O::F64Store { memarg } => self.memory_op(memarg.target, &[A, V(F64)], Widen::None),

            O::V128Store { memarg }
            | O::V128Load8Lane { memarg, .. }
            | O::V128Load16Lane { memarg, .. }
            | O::V128Load32Lane { memarg, .. }
            | O::V128Load64Lane { memarg, .. }
            | O::V128Store8Lane { memarg, .. }
            | O::V128Store16Lane { memarg, .. }
            | O::V128Store32Lane { memarg, .. }
            | O::V128Store64Lane { memarg, .. } => {
                self.memory_op(memarg.target, &[A, V(V128)], Widen::None)
            }

            O::I32AtomicLoad { memarg }
            | O::I64AtomicLoad { memarg }
            | O::I32AtomicLoad8U { memarg }
            | O::I32AtomicLoad16U { memarg }
            | O::I64AtomicLoad8U { memarg }
            | O::I64AtomicLoad16U { memarg }
            | O::I64AtomicLoad32U { memarg } => self.atomic_op(memarg.target, &[A]),

            O::I32AtomicStore { memarg }
            | O::I32AtomicStore8 { memarg }
            | O::I32AtomicStore16 { memarg }
            | O::I32AtomicRmwAdd { memarg }
            | O::I32AtomicRmw8AddU { memarg }
            | O::I32AtomicRmw16AddU { memarg }
            | O::I32AtomicRmwSub { memarg }
            | O::I32AtomicRmw8SubU { memarg }
            | O::I32AtomicRmw16SubU { memarg }
            | O::I32AtomicRmwAnd { memarg }
            | O::I32AtomicRmw8AndU { memarg }
            | O::I32AtomicRmw16AndU { memarg }
            | O::I32AtomicRmwOr { memarg }
            | O::I32AtomicRmw8OrU { memarg }
            | O::I32AtomicRmw16OrU { memarg }
            | O::I32AtomicRmwXor { memarg }
            | O::I32AtomicRmw8XorU { memarg }
            | O::I32AtomicRmw16XorU { memarg }
            | O::I32AtomicRmwXchg { memarg }
            | O::I32AtomicRmw8XchgU { memarg }
            | O::I32AtomicRmw16XchgU { memarg } => self.atomic_op(memarg.target, &[A, V(I32)]),

            O::I64AtomicStore { memarg }
            | O::I64AtomicStore8 { memarg }
            | O::I64AtomicStore16 { memarg }
            | O::I64AtomicStore32 { memarg }
            | O::I64AtomicRmwAdd { memarg }
            | O::I64AtomicRmw8AddU { memarg }
            | O::I64AtomicRmw16AddU { memarg }
            | O::I64AtomicRmw32AddU { memarg }
            | O::I64AtomicRmwSub { memarg }
            | O::I64AtomicRmw8SubU { memarg }
            | O::I64AtomicRmw16SubU { memarg }
            | O::I64AtomicRmw32SubU { memarg }
            | O::I64AtomicRmwAnd { memarg }
            | O::I64AtomicRmw8AndU { memarg }
            | O::I64AtomicRmw16AndU { memarg }
            | O::I64AtomicRmw32AndU { memarg }
            | O::I64AtomicRmwOr { memarg }
            | O::I64AtomicRmw8OrU { memarg }
            | O::I64AtomicRmw16OrU { memarg }
            | O::I64AtomicRmw32OrU { memarg }
            | O::I64AtomicRmwXor { memarg }
            | O::I64AtomicRmw8XorU { memarg }
            | O::I64AtomicRmw16XorU { memarg }
            | O::I64AtomicRmw32XorU { memarg }
            | O::I64AtomicRmwXchg { memarg }
            | O::I64AtomicRmw8XchgU { memarg }
            | O::I64AtomicRmw16XchgU { memarg }
            | O::I64AtomicRmw32XchgU { memarg } => self.atomic_op(memarg.target, &[A, V(I64)]),

            O::I32AtomicRmwCmpxchg { memarg }
            | O::I32AtomicRmw8CmpxchgU { memarg }
            | O::I32AtomicRmw16CmpxchgU { memarg } => {
                self.atomic_op(memarg.target, &[A, V(I32), V(I32)])
            }
            O::I64AtomicRmwCmpxchg { memarg }
            | O::I64AtomicRmw8CmpxchgU { memarg }
            | O::I64AtomicRmw16CmpxchgU { memarg }
            | O::I64AtomicRmw32CmpxchgU { memarg } => {
                self.atomic_op(memarg.target, &[A, V(I64), V(I64)])
            }
            // wasmer checks these (a runtime call) for bounds before alignment, whatever the
            // memory, so they need no alignment-keeping narrowing.
            O::MemoryAtomicNotify { memarg } => {
                self.memory_op(memarg.target, &[A, V(I32)], Widen::None)
            }
            O::MemoryAtomicWait32 { memarg } => {
                self.memory_op(memarg.target, &[A, V(I32), V(I64)], Widen::None)
            }
            O::MemoryAtomicWait64 { memarg } => {
                self.memory_op(memarg.target, &[A, V(I64), V(I64)], Widen::None)
            }

            O::MemorySize { mem } => {
                self.memory_op(MemArgTarget::Memory(mem), &[], Widen::Unsigned)
            }
            O::MemoryGrow { mem } => self.memory_op(MemArgTarget::Memory(mem), &[A], Widen::Signed),
            O::MemoryFill { mem } => {
                self.memory_op(MemArgTarget::Memory(mem), &[A, V(I32), A], Widen::None)
            }
            O::MemoryInit { mem, .. } => {
                self.memory_op(MemArgTarget::Memory(mem), &[A, V(I32), V(I32)], Widen::None)
            }
            O::MemoryCopy { dst_mem, src_mem } => Shape::copy(
                self.memories[dst_mem as usize].is64,
                self.memories[src_mem as usize].is64,
            ),

            O::CallIndirect { table_index, .. } => self.table_op(table_index, &[A], Widen::None),
            O::TableGet { table } => self.table_op(table, &[A], Widen::None),
            O::TableSet { table } => {
                self.table_op(table, &[A, self.table_element(table)], Widen::None)
            }
            O::TableSize { table } => self.table_op(table, &[], Widen::Unsigned),
            O::TableGrow { table } => {
                self.table_op(table, &[self.table_element(table), A], Widen::Signed)
            }
            O::TableFill { table } => {
                self.table_op(table, &[A, self.table_element(table), A], Widen::None)
            }
            O::TableInit { table, .. } => self.table_op(table, &[A, V(I32), V(I32)], Widen::None),
            O::TableCopy {
                dst_table,
                src_table,
            } => Shape::copy(
                self.tables[dst_table as usize].is64,
                self.tables[src_table as usize].is64,
            ),
            _ => None,
        }
    }

    /// Re-encodes one function body, rewriting the instructions that touch lowered memories
    /// and tables; the scratch locals they need are appended to the body's locals.
    fn lower_function(
        &mut self,
        body: FunctionBody,
        params: u32,
    ) -> Result<Function, ReencodeError<PrepareError>> {
        let mut locals = Vec::new();
        let mut local_count = params;
        for declaration in body.get_locals_reader()? {
            let (count, ty) = declaration?;
            locals.push((count, self.val_type(ty)?));
            local_count += count;
        }
        let mut scratch = ScratchLocals {
            first: local_count,
            locals: Vec::new(),
        };
        let mut code = Vec::new();
        let mut reader = body.get_operators_reader()?;
        while !reader.eof() {
            let op = reader.read()?;
            let shape = self.shape(&op);
            if let Some(shape) = &shape {
                self.narrow_operands(shape, &mut scratch, &mut code)?;
            }
            self.instruction(op)?.encode(&mut code);
            let mut sink = InstructionSink::new(&mut code);
            match shape.map_or(Widen::None, |shape| shape.widen) {
                Widen::None => {}
                Widen::Unsigned => {
                    sink.i64_extend_i32_u();
                }
                Widen::Signed => {
                    sink.i64_extend_i32_s();
                }
            }
        }
        locals.extend(scratch.locals.iter().map(|&(ty, _)| (1, ty)));
        let mut function = Function::new(locals);
        function.raw(code);
        Ok(function)
    }

    /// Emits the code that narrows every `Address` operand of `shape` in place on the stack:
    /// the operands above the deepest address are set aside in scratch locals (narrowed
    /// first if they are addresses too) and pushed back once it is narrowed.
    fn narrow_operands(
        &mut self,
        shape: &Shape,
        scratch: &mut ScratchLocals,
        code: &mut Vec<u8>,
    ) -> Result<(), ReencodeError<PrepareError>> {
        let operands = &shape.operands[..shape.len];
        let Some(deepest) = operands.iter().position(|o| matches!(o, Operand::Address)) else {
            return Ok(());
        };
        let mut set_aside = [0u32; 2];
        let mut count = 0;
        for (position, operand) in operands.iter().enumerate().skip(deepest + 1).rev() {
            let ty = match *operand {
                Operand::Address => {
                    narrow(scratch, code);
                    wasm_encoder::ValType::I32
                }
                Operand::Value(ty) => self.val_type(ty)?,
            };
            let local = scratch.local(ty, position);
            InstructionSink::new(code).local_set(local);
            set_aside[count] = local;
            count += 1;
        }
        if shape.atomic {
            narrow_keeping_alignment(scratch, code);
        } else {
            narrow(scratch, code);
        }
        for &local in set_aside[..count].iter().rev() {
            InstructionSink::new(code).local_get(local);
        }
        Ok(())
    }
}

/// Folds an i64 constant expression. Without the GC proposal a `global.get` in one can
/// only read an imported global, whose value is unknown here.
fn fold(expr: &wasmparser::ConstExpr) -> Result<u64, PrepareError> {
    let unsupported = || {
        PrepareError(
            "memory64 lowering: a data or element segment offset of a 64-bit memory or table \
         reads an imported global, which preparation cannot evaluate"
                .into(),
        )
    };
    let mut stack: Vec<u64> = Vec::new();
    for op in expr.get_operators_reader() {
        let op = op.map_err(|e| PrepareError(e.to_string()))?;
        let value = match op {
            Operator::I64Const { value } => value as u64,
            Operator::I64Add | Operator::I64Sub | Operator::I64Mul => {
                let (Some(b), Some(a)) = (stack.pop(), stack.pop()) else {
                    return Err(unsupported());
                };
                match op {
                    Operator::I64Add => a.wrapping_add(b),
                    Operator::I64Sub => a.wrapping_sub(b),
                    _ => a.wrapping_mul(b),
                }
            }
            Operator::End => break,
            _ => return Err(unsupported()),
        };
        stack.push(value);
    }
    stack.pop().ok_or_else(unsupported)
}

/// The i32 offset expression replacing a 64-bit segment offset.
fn lowered_offset(expr: &wasmparser::ConstExpr) -> Result<ConstExpr, ReencodeError<PrepareError>> {
    let offset = fold(expr).map_err(ReencodeError::UserError)?;
    Ok(ConstExpr::i32_const(
        u32::try_from(offset).unwrap_or(SENTINEL) as i32,
    ))
}

/// Narrows the i64 on top of the stack to an i32, mapping everything ≥ 2^32 to [`SENTINEL`].
fn narrow(scratch: &mut ScratchLocals, code: &mut Vec<u8>) {
    let local = scratch.local(wasm_encoder::ValType::I64, usize::MAX);
    InstructionSink::new(code)
        .local_tee(local)
        .i32_wrap_i64()
        .i32_const(SENTINEL as i32)
        .local_get(local)
        .i64_const(32)
        .i64_shr_u()
        .i64_eqz()
        .select();
}

/// Narrows the i64 address of an atomic access on top of the stack to an i32: an address
/// ≥ 2^32 becomes `SENTINEL | (address & 15)`, out of bounds but aligned as the original.
fn narrow_keeping_alignment(scratch: &mut ScratchLocals, code: &mut Vec<u8>) {
    let local = scratch.local(wasm_encoder::ValType::I64, usize::MAX);
    InstructionSink::new(code)
        .local_tee(local)
        .i32_wrap_i64()
        .local_get(local)
        .i64_const(32)
        .i64_shr_u()
        .i64_eqz()
        .i32_const(1)
        .i32_sub()
        .i32_const(SENTINEL as i32)
        .i32_and()
        .i32_or();
}

/// The extra locals of one function. Each is keyed by type and operand position so that
/// the values set aside for one instruction never share a local; [`narrow`] uses its own
/// key. Values never live across instructions, so every instruction reuses the same set.
struct ScratchLocals {
    first: u32,
    locals: Vec<(wasm_encoder::ValType, usize)>,
}

impl ScratchLocals {
    fn local(&mut self, ty: wasm_encoder::ValType, key: usize) -> u32 {
        let index = match self.locals.iter().position(|&local| local == (ty, key)) {
            Some(index) => index,
            None => {
                self.locals.push((ty, key));
                self.locals.len() - 1
            }
        };
        self.first + index as u32
    }
}

impl Reencode for Lowering<'_> {
    type Error = PrepareError;

    fn memory_index(&mut self, memory: u32) -> Result<u32, ReencodeError<PrepareError>> {
        Ok(self.memories[memory as usize].new_index)
    }

    fn table_index(&mut self, table: u32) -> Result<u32, ReencodeError<PrepareError>> {
        Ok(self.tables[table as usize].new_index)
    }

    /// Only called for memories that fit (the others become unsatisfiable imports).
    fn memory_type(
        &mut self,
        ty: wasmparser::MemoryType,
    ) -> Result<wasm_encoder::MemoryType, ReencodeError<PrepareError>> {
        let mut lowered = utils::memory_type(self, ty);
        if ty.memory64 {
            lowered.memory64 = false;
            lowered.maximum = Some(clamp_maximum(ty.maximum, MAX_LOWERED_PAGES));
        }
        Ok(lowered)
    }

    /// Only called for tables that fit (the others become unsatisfiable imports).
    fn table_type(
        &mut self,
        ty: wasmparser::TableType,
    ) -> Result<wasm_encoder::TableType, ReencodeError<PrepareError>> {
        let mut lowered = utils::table_type(self, ty)?;
        if ty.table64 {
            lowered.table64 = false;
            lowered.maximum = Some(clamp_maximum(ty.maximum, MAX_LOWERED_TABLE_ELEMENTS));
        }
        Ok(lowered)
    }

    /// Renames the unfittable imports and appends the unfittable definitions.
    fn parse_import_section(
        &mut self,
        imports: &mut ImportSection,
        section: ImportSectionReader<'_>,
    ) -> Result<(), ReencodeError<PrepareError>> {
        let (mut memories, mut tables) = (0..self.memories.len(), 0..self.tables.len());
        for import in section.into_imports() {
            let import = import?;
            let entity = match import.ty {
                TypeRef::Memory(_) => memories.next().map(|index| &self.memories[index]),
                TypeRef::Table(_) => tables.next().map(|index| &self.tables[index]),
                _ => None,
            };
            match entity.and_then(|entity| entity.unfittable.clone()) {
                Some(name) => self.import_unsatisfiable(imports, &name, import.ty)?,
                None => self.parse_import(imports, import)?,
            }
        }
        self.import_unfittable_definitions(imports)
    }

    /// A module without imports gets an import section for its unfittable definitions
    /// where the import section belongs: before the first section that must follow it.
    fn intersperse_section_hook(
        &mut self,
        module: &mut wasm_encoder::Module,
        _after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), ReencodeError<PrepareError>> {
        if !self.definitions_imported
            && !matches!(before, Some(SectionId::Type | SectionId::Import))
        {
            let mut imports = ImportSection::new();
            self.import_unfittable_definitions(&mut imports)?;
            if !imports.is_empty() {
                module.section(&imports);
            }
        }
        Ok(())
    }

    /// Leaves out the unfittable memories, imported instead.
    fn parse_memory_section(
        &mut self,
        memories: &mut MemorySection,
        section: MemorySectionReader<'_>,
    ) -> Result<(), ReencodeError<PrepareError>> {
        let first = self.memories.len() - section.count() as usize;
        for (index, memory) in (first..).zip(section) {
            let memory = memory?;
            if self.memories[index].unfittable.is_none() {
                memories.memory(self.memory_type(memory)?);
            }
        }
        Ok(())
    }

    /// Leaves out the unfittable tables, imported instead.
    fn parse_table_section(
        &mut self,
        tables: &mut TableSection,
        section: TableSectionReader<'_>,
    ) -> Result<(), ReencodeError<PrepareError>> {
        let first = self.tables.len() - section.count() as usize;
        for (index, table) in (first..).zip(section) {
            let table = table?;
            if self.tables[index].unfittable.is_none() {
                self.parse_table(tables, table)?;
            }
        }
        Ok(())
    }

    fn mem_arg(&mut self, arg: wasmparser::MemArg) -> Result<MemArg, ReencodeError<PrepareError>> {
        let mut lowered = utils::mem_arg(self, arg)?;
        if self.is_lowered(arg.target) && lowered.offset > u64::from(u32::MAX) {
            // Out of bounds, but aligned as the original (see the module docs).
            lowered.offset = u64::from(SENTINEL) | (lowered.offset & 15);
        }
        Ok(lowered)
    }

    fn parse_data(
        &mut self,
        data: &mut DataSection,
        datum: wasmparser::Data<'_>,
    ) -> Result<(), ReencodeError<PrepareError>> {
        match datum.kind {
            DataKind::Active {
                memory_index,
                offset_expr,
            } if self.memories[memory_index as usize].is64 => {
                let offset = lowered_offset(&offset_expr)?;
                data.active(
                    self.memory_index(memory_index)?,
                    &offset,
                    datum.data.iter().copied(),
                );
                Ok(())
            }
            _ => utils::parse_data(self, data, datum),
        }
    }

    fn parse_element(
        &mut self,
        elements: &mut ElementSection,
        element: wasmparser::Element<'_>,
    ) -> Result<(), ReencodeError<PrepareError>> {
        match element.kind {
            ElementKind::Active {
                table_index,
                offset_expr,
            } if self.tables[table_index.unwrap_or(0) as usize].is64 => {
                let offset = lowered_offset(&offset_expr)?;
                let items = self.element_items(element.items)?;
                // An implicit table 0 stays implicit only if it is still table 0.
                let table_index = match (table_index, self.table_index(table_index.unwrap_or(0))?) {
                    (None, 0) => None,
                    (_, new_index) => Some(new_index),
                };
                elements.active(table_index, &offset, items);
                Ok(())
            }
            _ => utils::parse_element(self, elements, element),
        }
    }

    fn parse_code_section(
        &mut self,
        code: &mut CodeSection,
        section: CodeSectionReader<'_>,
    ) -> Result<(), ReencodeError<PrepareError>> {
        let first_defined = self.types.function_count() - section.count();
        for (i, body) in section.into_iter().enumerate() {
            let ty = self.types.core_function_at(first_defined + i as u32);
            let params = self.types[ty].unwrap_func().params().len() as u32;
            code.function(&self.lower_function(body?, params)?);
        }
        Ok(())
    }

    fn parse_custom_section(
        &mut self,
        module: &mut wasm_encoder::Module,
        section: wasmparser::CustomSectionReader<'_>,
    ) -> Result<(), ReencodeError<PrepareError>> {
        // Copied as is: local names stay valid (scratch locals are only appended).
        module.section(&self.custom_section(section)?);
        Ok(())
    }
}

/// The maximum of a lowered memory or table: at most `cap`.
fn clamp_maximum(maximum: Option<u64>, cap: u64) -> u64 {
    maximum.map_or(cap, |max| max.min(cap))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{prepare, PrepareOptions};
    use wasmer::sys::vm::TrapCode;
    use wasmer::Value;

    const MEMORY: &str = r#"(module
        (memory (export "mem") i64 1 4)
        (data (i64.const 16) "\01\02\03\04\05\06\07\08")
        (func (export "load64") (param i64) (result i64) (i64.load (local.get 0)))
        (func (export "load8") (param i64) (result i32) (i32.load8_u offset=1 (local.get 0)))
        (func (export "store64") (param i64 i64) (i64.store (local.get 0) (local.get 1)))
        (func (export "store8") (param i64 i32) (i32.store8 (local.get 0) (local.get 1)))
        (func (export "storef") (param i64 f64) (f64.store offset=8 (local.get 0) (local.get 1)))
        (func (export "loadf") (param i64) (result f64) (f64.load offset=8 (local.get 0)))
        (func (export "size") (result i64) (memory.size))
        (func (export "grow") (param i64) (result i64) (memory.grow (local.get 0)))
        (func (export "fill") (param i64 i32 i64) (memory.fill (local.get 0) (local.get 1) (local.get 2)))
        (func (export "copy") (param i64 i64 i64) (memory.copy (local.get 0) (local.get 1) (local.get 2))))"#;

    #[track_caller]
    fn oob(result: Result<Box<[Value]>, wasmer::RuntimeError>) {
        assert_eq!(trap_code(result), Some(TrapCode::HeapAccessOutOfBounds));
    }

    #[test]
    fn loads_and_stores_round_trip() {
        let (mut store, instance) = instantiate(MEMORY);
        let s = &mut store;
        call(s, &instance, "store64", &[Value::I64(1000), Value::I64(-2)]).unwrap();
        assert_eq!(
            call(s, &instance, "load64", &[Value::I64(1000)]).unwrap()[0],
            Value::I64(-2)
        );
        call(
            s,
            &instance,
            "store8",
            &[Value::I64(65535), Value::I32(0x1ff)],
        )
        .unwrap();
        assert_eq!(
            call(s, &instance, "load8", &[Value::I64(65534)]).unwrap()[0],
            Value::I32(0xff)
        );
        call(s, &instance, "storef", &[Value::I64(40), Value::F64(2.5)]).unwrap();
        assert_eq!(
            call(s, &instance, "loadf", &[Value::I64(40)]).unwrap()[0],
            Value::F64(2.5)
        );
        // The data segment landed at 16.
        assert_eq!(
            call(s, &instance, "load64", &[Value::I64(16)]).unwrap()[0],
            Value::I64(0x0807060504030201)
        );
        assert_eq!(
            call(s, &instance, "load8", &[Value::I64(15)]).unwrap()[0],
            Value::I32(1)
        );
    }

    #[test]
    fn addresses_at_or_above_4_gib_trap_out_of_bounds() {
        let (mut store, instance) = instantiate(MEMORY);
        let s = &mut store;
        for address in [
            0x1_0000_0000i64,
            0x1_0000_0001,
            0x1_0000_0010,
            -1,
            131072,
            131065,
            0xFFFF_FFFF,
        ] {
            oob(call(s, &instance, "load64", &[Value::I64(address)]));
            oob(call(
                s,
                &instance,
                "store64",
                &[Value::I64(address), Value::I64(1)],
            ));
            oob(call(
                s,
                &instance,
                "storef",
                &[Value::I64(address), Value::F64(1.0)],
            ));
        }
        // Had the address wrapped to 0 or 16, these would have read or clobbered the data.
        oob(call(s, &instance, "load8", &[Value::I64(0x1_0000_000F)]));
        oob(call(
            s,
            &instance,
            "store8",
            &[Value::I64(0x1_0000_0010), Value::I32(9)],
        ));
        assert_eq!(
            call(s, &instance, "load8", &[Value::I64(15)]).unwrap()[0],
            Value::I32(1)
        );
    }

    #[test]
    fn memory_size_and_grow_are_widened() {
        let (mut store, instance) = instantiate(MEMORY);
        let s = &mut store;
        // WAMR layout gives this module one extra page (it uses memory.grow/size), and one
        // more page to its maximum: 2 of at most 5.
        assert_eq!(call(s, &instance, "size", &[]).unwrap()[0], Value::I64(2));
        assert_eq!(
            call(s, &instance, "grow", &[Value::I64(1)]).unwrap()[0],
            Value::I64(2)
        );
        assert_eq!(
            call(s, &instance, "grow", &[Value::I64(3)]).unwrap()[0],
            Value::I64(-1)
        );
        assert_eq!(
            call(s, &instance, "grow", &[Value::I64(0x1_0000_0000)]).unwrap()[0],
            Value::I64(-1)
        );
        assert_eq!(
            call(s, &instance, "grow", &[Value::I64(-1)]).unwrap()[0],
            Value::I64(-1)
        );
        assert_eq!(
            call(s, &instance, "grow", &[Value::I64(2)]).unwrap()[0],
            Value::I64(3)
        );
        assert_eq!(call(s, &instance, "size", &[]).unwrap()[0], Value::I64(5));
    }

    #[test]
    fn bulk_operations_with_huge_operands_trap_out_of_bounds() {
        let (mut store, instance) = instantiate(MEMORY);
        let s = &mut store;
        let huge = [0x1_0000_0000i64, 0x1_0000_0010, -1];
        for n in huge {
            oob(call(
                s,
                &instance,
                "fill",
                &[Value::I64(0), Value::I32(7), Value::I64(n)],
            ));
            oob(call(
                s,
                &instance,
                "copy",
                &[Value::I64(0), Value::I64(16), Value::I64(n)],
            ));
            // Zero-length operations at an address beyond the memory trap too.
            oob(call(
                s,
                &instance,
                "fill",
                &[Value::I64(n), Value::I32(7), Value::I64(0)],
            ));
            oob(call(
                s,
                &instance,
                "copy",
                &[Value::I64(n), Value::I64(0), Value::I64(0)],
            ));
            oob(call(
                s,
                &instance,
                "copy",
                &[Value::I64(0), Value::I64(n), Value::I64(0)],
            ));
        }
        call(
            s,
            &instance,
            "fill",
            &[Value::I64(100), Value::I32(7), Value::I64(4)],
        )
        .unwrap();
        call(
            s,
            &instance,
            "copy",
            &[Value::I64(200), Value::I64(100), Value::I64(4)],
        )
        .unwrap();
        assert_eq!(
            call(s, &instance, "load8", &[Value::I64(202)]).unwrap()[0],
            Value::I32(7)
        );
        // Nothing was written by the trapping fills (the data at 16 is intact).
        assert_eq!(
            call(s, &instance, "load8", &[Value::I64(15)]).unwrap()[0],
            Value::I32(1)
        );
        assert_eq!(
            call(s, &instance, "load64", &[Value::I64(0)]).unwrap()[0],
            Value::I64(0)
        );
    }

    #[test]
    fn static_offsets_beyond_4_gib_trap() {
        let (mut store, instance) = instantiate(
            r#"(module (memory i64 1)
                (func (export "load") (result i32) (i32.load offset=0x1_0000_0000 (i64.const 0)))
                (func (export "store") (i32.store offset=0xFFFF_FFFF (i64.const 1) (i32.const 1))))"#,
        );
        oob(call(&mut store, &instance, "load", &[]));
        oob(call(&mut store, &instance, "store", &[]));
    }

    #[test]
    fn atomics_and_simd_are_lowered() {
        let (mut store, instance) = instantiate(
            r#"(module (memory i64 1 1 shared)
                (func (export "rmw") (param i64 i64) (result i64) (i64.atomic.rmw.add (local.get 0) (local.get 1)))
                (func (export "cas") (param i64 i32 i32) (result i32)
                    (i32.atomic.rmw.cmpxchg (local.get 0) (local.get 1) (local.get 2)))
                (func (export "splat") (param i64) (result i32) (i32x4.extract_lane 3 (v128.load32_splat (local.get 0))))
                (func (export "lane") (param i64) (v128.store32_lane 1 (local.get 0) (v128.const i32x4 0 9 0 0))))"#,
        );
        let s = &mut store;
        assert_eq!(
            call(s, &instance, "rmw", &[Value::I64(8), Value::I64(5)]).unwrap()[0],
            Value::I64(0)
        );
        assert_eq!(
            call(s, &instance, "rmw", &[Value::I64(8), Value::I64(5)]).unwrap()[0],
            Value::I64(5)
        );
        assert_eq!(
            call(
                s,
                &instance,
                "cas",
                &[Value::I64(8), Value::I32(10), Value::I32(3)]
            )
            .unwrap()[0],
            Value::I32(10)
        );
        call(s, &instance, "lane", &[Value::I64(32)]).unwrap();
        assert_eq!(
            call(s, &instance, "splat", &[Value::I64(32)]).unwrap()[0],
            Value::I32(9)
        );
        oob(call(
            s,
            &instance,
            "rmw",
            &[Value::I64(0x1_0000_0008), Value::I64(1)],
        ));
        oob(call(
            s,
            &instance,
            "cas",
            &[Value::I64(0x1_0000_0008), Value::I32(0), Value::I32(1)],
        ));
        oob(call(s, &instance, "splat", &[Value::I64(0x1_0000_0000)]));
        oob(call(s, &instance, "lane", &[Value::I64(0x1_0000_0000)]));
    }

    #[track_caller]
    fn unaligned(result: Result<Box<[Value]>, wasmer::RuntimeError>) {
        let code = trap_code(result);
        assert!(
            matches!(
                code,
                Some(TrapCode::HeapMisaligned | TrapCode::UnalignedAtomic)
            ),
            "{code:?}"
        );
    }

    /// The threads proposal decides on the effective address `address + offset`: unaligned
    /// traps first, then out of bounds; narrowing must not change which one an atomic gets.
    #[test]
    fn atomics_beyond_4_gib_trap_by_their_real_effective_address() {
        let (mut store, instance) = instantiate(
            r#"(module (memory i64 1 1 shared)
                (func (export "load") (param i64) (result i32) (i32.atomic.load (local.get 0)))
                (func (export "load_off3") (param i64) (result i32) (i32.atomic.load offset=3 (local.get 0)))
                (func (export "load_off_huge") (param i64) (result i32)
                    (i32.atomic.load offset=0x1_0000_0001 (local.get 0)))
                (func (export "rmw_off4") (param i64) (result i64) (i64.atomic.rmw.add offset=4 (local.get 0) (i64.const 1)))
                (func (export "cas") (param i64) (result i32)
                    (i32.atomic.rmw.cmpxchg (local.get 0) (i32.const 0) (i32.const 1)))
                (func (export "notify") (param i64) (result i32) (memory.atomic.notify (local.get 0) (i32.const 0)))
                (func (export "wait") (param i64) (result i32)
                    (memory.atomic.wait32 (local.get 0) (i32.const 1) (i64.const 0))))"#,
        );
        let s = &mut store;
        let at = |address: i64| [Value::I64(address)];
        // In bounds: as a 32-bit memory would.
        assert_eq!(
            call(s, &instance, "load_off3", &at(1)).unwrap()[0],
            Value::I32(0)
        );
        unaligned(call(s, &instance, "load", &at(1)));
        // Aligned effective addresses beyond 4 GiB are out of bounds, however the address
        // and the offset split them...
        oob(call(s, &instance, "load_off3", &at(0x1_0000_0001)));
        oob(call(s, &instance, "load", &at(0x1_0000_0004)));
        oob(call(s, &instance, "load_off_huge", &at(3)));
        oob(call(s, &instance, "load_off3", &at(0xFFFF_FFFD)));
        oob(call(s, &instance, "rmw_off4", &at(0x1_0000_0004)));
        oob(call(s, &instance, "cas", &at(-4)));
        oob(call(s, &instance, "notify", &at(0x2_0000_0000)));
        oob(call(s, &instance, "wait", &at(0x1_0000_0000)));
        // ...and unaligned ones are unaligned, even beyond 4 GiB.
        unaligned(call(s, &instance, "load", &at(0x1_0000_0001)));
        unaligned(call(s, &instance, "load_off3", &at(0x1_0000_0002)));
        unaligned(call(s, &instance, "load_off_huge", &at(0)));
        unaligned(call(s, &instance, "load_off3", &at(0xFFFF_FFFE)));
        unaligned(call(s, &instance, "rmw_off4", &at(0x1_0000_0002)));
        unaligned(call(s, &instance, "cas", &at(-1)));
        // wasmer checks notify and wait for bounds first, as it does on 32-bit memories.
        unaligned(call(s, &instance, "notify", &at(2)));
        unaligned(call(s, &instance, "wait", &at(6)));
        oob(call(s, &instance, "notify", &at(0x2_0000_0003)));
        oob(call(s, &instance, "wait", &at(0x1_0000_000E)));
    }

    #[test]
    fn mixed_memories_only_lower_the_64_bit_ones() {
        let (mut store, instance) = instantiate(
            r#"(module
                (memory $m32 1)
                (memory $m64 i64 1)
                (data (memory $m32) (i32.const 4) "\aa")
                (data (memory $m64) (i64.const 4) "\bb")
                (func (export "to32") (param i32 i64 i32) (memory.copy $m32 $m64 (local.get 0) (local.get 1) (local.get 2)))
                (func (export "to64") (param i64 i32 i32) (memory.copy $m64 $m32 (local.get 0) (local.get 1) (local.get 2)))
                (func (export "load32") (param i32) (result i32) (i32.load8_u $m32 (local.get 0)))
                (func (export "load64") (param i64) (result i32) (i32.load8_u $m64 (local.get 0))))"#,
        );
        let s = &mut store;
        call(
            s,
            &instance,
            "to32",
            &[Value::I32(10), Value::I64(4), Value::I32(1)],
        )
        .unwrap();
        assert_eq!(
            call(s, &instance, "load32", &[Value::I32(10)]).unwrap()[0],
            Value::I32(0xbb)
        );
        call(
            s,
            &instance,
            "to64",
            &[Value::I64(20), Value::I32(4), Value::I32(1)],
        )
        .unwrap();
        assert_eq!(
            call(s, &instance, "load64", &[Value::I64(20)]).unwrap()[0],
            Value::I32(0xaa)
        );
        oob(call(
            s,
            &instance,
            "to32",
            &[Value::I32(0), Value::I64(0x1_0000_0000), Value::I32(0)],
        ));
        oob(call(
            s,
            &instance,
            "to64",
            &[Value::I64(0x1_0000_0000), Value::I32(0), Value::I32(0)],
        ));
    }

    #[test]
    fn tables_are_lowered() {
        let (mut store, instance) = instantiate(
            r#"(module
                (type $r (func (result i32)))
                (table $t i64 2 10 funcref)
                (elem (table $t) (i64.const 1) func $seven)
                (func $seven (result i32) (i32.const 7))
                (func (export "call") (param i64) (result i32) (call_indirect $t (type $r) (local.get 0)))
                (func (export "size") (result i64) (table.size $t))
                (func (export "grow") (param i64) (result i64) (table.grow $t (ref.null func) (local.get 0)))
                (func (export "copy") (param i64 i64 i64) (table.copy $t $t (local.get 0) (local.get 1) (local.get 2)))
                (func (export "fill") (param i64 i64) (table.fill $t (local.get 0) (ref.func $seven) (local.get 1)))
                (func (export "is_null") (param i64) (result i32) (ref.is_null (table.get $t (local.get 0)))))"#,
        );
        let s = &mut store;
        assert_eq!(
            call(s, &instance, "call", &[Value::I64(1)]).unwrap()[0],
            Value::I32(7)
        );
        assert_eq!(call(s, &instance, "size", &[]).unwrap()[0], Value::I64(2));
        assert_eq!(
            call(s, &instance, "grow", &[Value::I64(3)]).unwrap()[0],
            Value::I64(2)
        );
        assert_eq!(
            call(s, &instance, "grow", &[Value::I64(6)]).unwrap()[0],
            Value::I64(-1)
        );
        assert_eq!(
            call(s, &instance, "grow", &[Value::I64(0x1_0000_0000)]).unwrap()[0],
            Value::I64(-1)
        );
        call(
            s,
            &instance,
            "copy",
            &[Value::I64(4), Value::I64(1), Value::I64(1)],
        )
        .unwrap();
        assert_eq!(
            call(s, &instance, "call", &[Value::I64(4)]).unwrap()[0],
            Value::I32(7)
        );
        call(s, &instance, "fill", &[Value::I64(2), Value::I64(1)]).unwrap();
        assert_eq!(
            call(s, &instance, "is_null", &[Value::I64(2)]).unwrap()[0],
            Value::I32(0)
        );
        assert_eq!(
            call(s, &instance, "is_null", &[Value::I64(3)]).unwrap()[0],
            Value::I32(1)
        );
        for index in [6i64, 0x1_0000_0001, -1] {
            assert!(call(s, &instance, "call", &[Value::I64(index)]).is_err());
            assert!(call(s, &instance, "is_null", &[Value::I64(index)]).is_err());
            assert!(call(s, &instance, "fill", &[Value::I64(index), Value::I64(0)]).is_err());
            assert!(call(s, &instance, "fill", &[Value::I64(0), Value::I64(index)]).is_err());
        }
    }

    #[test]
    fn segment_offsets_fold_and_overflow_fails_instantiation() {
        let (mut store, instance) = instantiate(
            r#"(module
                (memory i64 1)
                (data (i64.add (i64.const 0x100) (i64.const 2)) "\2a")
                (func (export "load") (param i64) (result i32) (i32.load8_u (local.get 0))))"#,
        );
        assert_eq!(
            call(&mut store, &instance, "load", &[Value::I64(0x102)]).unwrap()[0],
            Value::I32(42)
        );

        let engine = crate::engine::engine();
        let too_far = prepare_wat(r#"(module (memory i64 1) (data (i64.const 0x1_0000_0000) ""))"#);
        let module = wasmer::Module::new(engine, too_far.wasm).unwrap();
        let mut store = wasmer::Store::new(engine.clone());
        let imports = crate::prepare::test_support::with_check(&mut store, wasmer::imports! {});
        assert!(wasmer::Instance::new(&mut store, &module, &imports).is_err());

        let imported =
            wat::parse_str(r#"(module (global (import "env" "base") i64) (memory i64 1) (data (global.get 0) "x"))"#)
                .unwrap();
        assert!(prepare(&imported, &PrepareOptions::default()).is_err());
    }

    #[test]
    fn limits_are_clamped() {
        let limits = |wat: &str| {
            let wasm = prepare(
                &wat::parse_str(wat).unwrap(),
                &PrepareOptions {
                    wamr_compat: false,
                    ..Default::default()
                },
            )?
            .wasm;
            let types = wasmparser::Validator::new().validate_all(&wasm).unwrap();
            let memory = types.as_ref().memory_at(0);
            Ok::<_, super::PrepareError>((memory.memory64, memory.initial, memory.maximum))
        };
        assert_eq!(
            limits("(module (memory i64 3))").unwrap(),
            (false, 3, Some(65535))
        );
        assert_eq!(
            limits("(module (memory i64 3 0x1_0000_0000_0000))").unwrap(),
            (false, 3, Some(65535))
        );
        assert_eq!(
            limits("(module (memory i64 192 32768))").unwrap(),
            (false, 192, Some(32768))
        );
        assert_eq!(
            limits("(module (memory i64 65535))").unwrap(),
            (false, 65535, Some(65535))
        );
    }

    /// Prepares and compiles `wat`, which must then fail to instantiate with `imports`, with
    /// a message naming `what`.
    fn assert_unlinkable(
        wat: &str,
        imports: impl FnOnce(&mut wasmer::Store) -> wasmer::Imports,
        what: &str,
    ) {
        let prepared = prepare(&wat::parse_str(wat).unwrap(), &PrepareOptions::default()).unwrap();
        let engine = crate::engine::engine();
        let module = wasmer::Module::new(engine, &prepared.wasm).unwrap();
        let mut store = wasmer::Store::new(engine.clone());
        let imports = imports(&mut store);
        let imports = crate::prepare::test_support::with_check(&mut store, imports);
        let error = wasmer::Instance::new(&mut store, &module, &imports).expect_err("instantiated");
        let error = error.to_string();
        assert!(error.contains(what), "{error}");
    }

    #[test]
    fn unfittable_memories_and_tables_compile_but_never_instantiate() {
        let none = |_: &mut wasmer::Store| wasmer::imports! {};
        assert_unlinkable(
            "(module (memory i64 0x1_0000_0000_0000))",
            none,
            "memory 0 of 281474976710656 pages does not fit in 32 bits (at most 65535 pages)",
        );
        assert_unlinkable(
            "(module (table i64 0xffff_ffff_ffff_ffff funcref))",
            none,
            "table 0 of 18446744073709551615 elements does not fit in 32 bits (at most 134217728 elements)",
        );
        assert_unlinkable(
            "(module (memory i64 65536 65537 shared) (func (drop (i32.atomic.load (i64.const 0)))))",
            none,
            "memory 0 of 65536 pages",
        );
        // An unfittable import is renamed: whatever provides the original cannot satisfy it.
        let memory = |store: &mut wasmer::Store| {
            let memory =
                wasmer::Memory::new(store, wasmer::MemoryType::new(1, None, false)).unwrap();
            wasmer::imports! { "env" => { "m" => memory } }
        };
        assert_unlinkable(
            r#"(module (memory (import "env" "m") i64 0x1_0000_0000))"#,
            memory,
            "memory 0 of 4294967296",
        );
    }

    #[test]
    fn unfittable_definitions_become_imports_and_indices_follow() {
        // The unfittable memory and table move after the imported memory, ahead of the other
        // definitions, whose indices all shift by one.
        let wat = r#"(module
            (type $r (func (result i32)))
            (import "env" "m" (memory 1))
            (memory $huge i64 0x1_0000_0000_0000)
            (memory $small (export "small") i64 2 3)
            (table $t i64 0x1_0000_0000 funcref)
            (table $u (export "u") i64 4 funcref)
            (data (memory $small) (i64.const 8) "\2a")
            (elem (table $u) (i64.const 3) func $seven)
            (func $seven (result i32) (i32.const 7))
            (func (export "load") (param i64) (result i32) (i32.load8_u $small (local.get 0)))
            (func (export "grow") (result i64) (memory.grow $small (i64.const 1)))
            (func (export "call") (param i64) (result i32) (call_indirect $u (type $r) (local.get 0)))
            (func (export "size") (result i64) (table.size $u)))"#;
        let prepared = prepare(&wat::parse_str(wat).unwrap(), &PrepareOptions::default()).unwrap();
        let engine = crate::engine::engine();
        let module = wasmer::Module::new(engine, &prepared.wasm).unwrap();
        let names: Vec<(String, String)> = module
            .imports()
            .map(|import| (import.module().to_string(), import.name().to_string()))
            .collect();
        assert_eq!(names[0], ("env".to_string(), "m".to_string()));
        assert_eq!(names[1].0, super::UNSATISFIABLE_MODULE);
        assert!(
            names[1].1.starts_with("memory 1 of 281474976710656 pages"),
            "{}",
            names[1].1
        );
        assert!(
            names[2].1.starts_with("table 0 of 4294967296 elements"),
            "{}",
            names[2].1
        );
        assert_eq!(names[3].0, crate::prepare::interrupt::CHECK_MODULE);
        assert_eq!(names.len(), 4);

        // Providing the unsatisfiable imports shows that every reference followed its memory
        // or table.
        let mut store = wasmer::Store::new(engine.clone());
        let env = wasmer::Memory::new(&mut store, wasmer::MemoryType::new(1, None, false)).unwrap();
        let huge = wasmer::Memory::new(&mut store, wasmer::MemoryType::new(0, Some(65535), false))
            .unwrap();
        let table = wasmer::Table::new(
            &mut store,
            wasmer::TableType::new(wasmer::Type::FuncRef, 0, Some(1 << 27)),
            Value::FuncRef(None),
        )
        .unwrap();
        let imports = wasmer::imports! {
            "env" => { "m" => env.clone() },
            super::UNSATISFIABLE_MODULE => { &names[1].1 => huge, &names[2].1 => table },
        };
        let imports = crate::prepare::test_support::with_check(&mut store, imports);
        let instance = wasmer::Instance::new(&mut store, &module, &imports).unwrap();
        let s = &mut store;
        assert_eq!(
            call(s, &instance, "load", &[Value::I64(8)]).unwrap()[0],
            Value::I32(42)
        );
        assert_eq!(env.view(s).read_u8(8).unwrap(), 0);
        assert_eq!(call(s, &instance, "grow", &[]).unwrap()[0], Value::I64(2));
        assert_eq!(
            instance
                .exports
                .get_memory("small")
                .unwrap()
                .view(s)
                .size()
                .0,
            3
        );
        assert_eq!(
            call(s, &instance, "call", &[Value::I64(3)]).unwrap()[0],
            Value::I32(7)
        );
        assert_eq!(call(s, &instance, "size", &[]).unwrap()[0], Value::I64(4));
        assert_eq!(instance.exports.get_table("u").unwrap().size(s), 4);
    }
}
