//! The rewriting of a function body: each instruction on a lowered memory or table gets its
//! 64-bit operands narrowed and its result widened back.

use wasm_encoder::reencode::{Error as ReencodeError, Reencode};
use wasm_encoder::{Encode, Function, ImportSection, InstructionSink};
use wasmparser::types::TypesRef;
use wasmparser::{FunctionBody, MemArgTarget, Operator, TypeRef, ValType};

use crate::prepare::error::PrepareError;

use super::entities::{emptied, Entity, UNSATISFIABLE_MODULE};
use super::narrow::{narrow, narrow_keeping_alignment, ScratchLocals};
use super::shape::{Operand, Shape, Widen};

pub(super) struct Lowering<'a> {
    pub(super) types: TypesRef<'a>,
    /// By original memory index (imports first).
    pub(super) memories: Vec<Entity>,
    /// By original table index (imports first).
    pub(super) tables: Vec<Entity>,
    /// The imports replacing unfittable definitions have been emitted.
    pub(super) definitions_imported: bool,
}

impl Lowering<'_> {
    pub(super) fn is_lowered(&self, target: MemArgTarget) -> bool {
        matches!(target, MemArgTarget::Memory(memory) if self.memories[memory as usize].is64)
    }

    pub(super) fn memory_op(
        &self,
        target: MemArgTarget,
        operands: &[Operand],
        widen: Widen,
    ) -> Option<Shape> {
        self.is_lowered(target).then(|| Shape::new(operands, widen))
    }

    /// An atomic access to memory: its only address is the deepest operand.
    pub(super) fn atomic_op(&self, target: MemArgTarget, operands: &[Operand]) -> Option<Shape> {
        self.memory_op(target, operands, Widen::None)
            .map(|shape| Shape {
                atomic: true,
                ..shape
            })
    }

    pub(super) fn table_op(&self, table: u32, operands: &[Operand], widen: Widen) -> Option<Shape> {
        self.tables[table as usize]
            .is64
            .then(|| Shape::new(operands, widen))
    }

    pub(super) fn table_element(&self, table: u32) -> Operand {
        Operand::Value(ValType::Ref(self.types.table_at(table).element_type))
    }

    /// Emits the import replacing an unfittable memory or table of type `ty`.
    pub(super) fn import_unsatisfiable(
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
    pub(super) fn import_unfittable_definitions(
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
    pub(super) fn shape(&self, op: &Operator) -> Option<Shape> {
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
    pub(super) fn lower_function(
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
    pub(super) fn narrow_operands(
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
