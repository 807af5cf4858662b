//! The rewriting of function bodies: charges, throws, waits and grows.

use wasm_encoder::reencode::{Error as ReencodeError, Reencode};
use wasm_encoder::{
    BlockType, ConstExpr, Encode, EntityType, ExportKind, ExportSection, Function, GlobalSection,
    GlobalType, ImportSection, InstructionSink, SectionId, TypeSection, ValType,
};
use wasmparser::Operator;

use crate::prepare::options::TABLE_ENTRY_BYTES;

use super::costs::{MEMORY_UNITS_PER_BYTE, PAGE_BYTES, TABLE_UNITS_PER_ELEMENT};
use super::host_interface::{CHECK_MODULE, CHECK_NAME, FUEL_EXPORT, THROW_SIGNAL};
use super::layout::Layout;

pub(super) struct Instrument {
    pub(super) layout: Layout,
    /// The bytes all memories and tables may take together.
    pub(super) budget: u64,
    /// The sections the pass had to create from nothing, once written.
    pub(super) written: Vec<SectionId>,
    /// The defined function whose body comes next.
    pub(super) next_function: usize,
}

/// Locals added to a function for the operands the rewrites set aside, numbered after the
/// function's own (its parameters and declared locals).
pub(super) struct Scratch {
    pub(super) first: u32,
    /// Each added local, as (type, which one of that type).
    pub(super) added: Vec<(ValType, u32)>,
}

impl Scratch {
    /// The `nth` scratch local of type `ty`.
    pub(super) fn local(&mut self, ty: ValType, nth: u32) -> u32 {
        let index = match self.added.iter().position(|&added| added == (ty, nth)) {
            Some(index) => index,
            None => {
                self.added.push((ty, nth));
                self.added.len() - 1
            }
        };
        self.first + index as u32
    }
}

impl Instrument {
    pub(super) fn add_types(&self, types: &mut TypeSection) {
        types.ty().function([ValType::I64], [ValType::I64]);
        types.ty().function([], [ValType::I64]);
    }

    pub(super) fn add_check_import(&self, imports: &mut ImportSection) {
        imports.import(
            CHECK_MODULE,
            CHECK_NAME,
            EntityType::Function(self.layout.check_type()),
        );
    }

    pub(super) fn add_fuel_global(&self, globals: &mut GlobalSection) {
        let ty = GlobalType {
            val_type: ValType::I64,
            mutable: true,
            shared: false,
        };
        globals.global(ty, &ConstExpr::i64_const(0));
    }

    pub(super) fn add_fuel_export(&self, exports: &mut ExportSection) {
        exports.export(FUEL_EXPORT, ExportKind::Global, self.layout.fuel_global());
    }

    /// The bytes all memories and tables take: Σ pages × 64 KiB + Σ entries × 8. At most
    /// 100 of each (wasmparser's limits) of at most 2^32 pages or entries: no overflow.
    /// (Fixed-size funcref tables cost more, but cannot grow; their part is bounded when
    /// the module is compiled.)
    pub(super) fn footprint(&self) -> Function {
        let mut function = Function::new([]);
        let mut sink = function.instructions();
        sink.i64_const(0);
        for memory in 0..self.layout.shared_memories.len() as u32 {
            sink.memory_size(memory)
                .i64_extend_i32_u()
                .i64_const(PAGE_BYTES as i64)
                .i64_mul()
                .i64_add();
        }
        for table in 0..self.layout.table_elements.len() as u32 {
            sink.table_size(table)
                .i64_extend_i32_u()
                .i64_const(TABLE_ENTRY_BYTES as i64)
                .i64_mul()
                .i64_add();
        }
        sink.end();
        function
    }

    /// `fuel -= cost; if fuel < 0 { fuel = check(fuel) }`, the i64 cost pushed by `cost`.
    pub(super) fn charge(&self, body: &mut Vec<u8>, cost: impl FnOnce(&mut InstructionSink<'_>)) {
        let fuel = self.layout.fuel_global();
        let mut sink = InstructionSink::new(body);
        sink.global_get(fuel);
        cost(&mut sink);
        sink.i64_sub()
            .global_set(fuel)
            .global_get(fuel)
            .i64_const(0)
            .i64_lt_s()
            .if_(BlockType::Empty)
            .global_get(fuel)
            .call(self.layout.check_function())
            .global_set(fuel)
            .end();
    }

    pub(super) fn charge_fixed(&self, body: &mut Vec<u8>, cost: u64) {
        self.charge(body, |sink| {
            sink.i64_const(cost as i64);
        });
    }

    /// Charges the bulk operation about to run `units` per item of its length (the i32 on
    /// top of the stack, left there).
    pub(super) fn charge_length(&self, body: &mut Vec<u8>, scratch: &mut Scratch, units: u64) {
        let length = scratch.local(ValType::I32, 0);
        InstructionSink::new(body).local_tee(length);
        self.charge(body, |sink| {
            sink.local_get(length)
                .i64_extend_i32_u()
                .i64_const(units as i64)
                .i64_mul();
        });
    }

    /// A wait that cannot block (see the `interrupt` module documentation); `wide` for `wait64`.
    pub(super) fn wait(
        &mut self,
        body: &mut Vec<u8>,
        scratch: &mut Scratch,
        memarg: wasmparser::MemArg,
        wide: bool,
    ) -> Result<(), ReencodeError> {
        let shared = matches!(
            memarg.target,
            wasmparser::MemArgTarget::Memory(m) if self.layout.shared_memories[m as usize]
        );
        let memarg = self.mem_arg(memarg)?;
        let value_type = if wide { ValType::I64 } else { ValType::I32 };
        let timeout = scratch.local(ValType::I64, 0);
        let expected = scratch.local(value_type, if wide { 1 } else { 0 });
        let mut sink = InstructionSink::new(body);
        sink.local_set(timeout).local_set(expected);
        if wide {
            sink.i64_atomic_load(memarg).local_get(expected).i64_ne();
        } else {
            sink.i32_atomic_load(memarg).local_get(expected).i32_ne();
        }
        sink.if_(BlockType::Result(ValType::I32))
            .i32_const(1)
            .else_();
        if shared {
            sink.local_get(timeout)
                .i64_const(0)
                .i64_lt_s()
                .if_(BlockType::Empty)
                .unreachable()
                .end()
                .i32_const(2);
        } else {
            sink.unreachable();
        }
        sink.end();
        Ok(())
    }

    /// A `memory.grow` or `table.grow` (`grow`) of the i32 delta on top of the stack, by
    /// `unit_bytes` per unit, that answers -1 beyond the budget. `init`: the local to set a
    /// table's initial element aside in, from under the delta.
    pub(super) fn guarded_grow(
        &self,
        body: &mut Vec<u8>,
        scratch: &mut Scratch,
        unit_bytes: u64,
        init: Option<u32>,
        grow: impl FnOnce(&mut InstructionSink<'_>),
    ) {
        let delta = scratch.local(ValType::I32, 0);
        let mut sink = InstructionSink::new(body);
        sink.local_set(delta);
        if let Some(init) = init {
            sink.local_set(init);
        }
        sink.call(self.layout.footprint_function())
            .local_get(delta)
            .i64_extend_i32_u()
            .i64_const(unit_bytes as i64)
            .i64_mul()
            .i64_add()
            .i64_const(self.budget as i64)
            .i64_gt_u()
            .if_(BlockType::Result(ValType::I32))
            .i32_const(-1)
            .else_();
        if let Some(init) = init {
            sink.local_get(init);
        }
        sink.local_get(delta);
        grow(&mut sink);
        sink.end();
    }

    /// Appends `operator` to `body`, rewritten where it needs to be.
    pub(super) fn rewrite(
        &mut self,
        body: &mut Vec<u8>,
        scratch: &mut Scratch,
        operator: Operator<'_>,
    ) -> Result<(), ReencodeError> {
        let replaced = match operator {
            Operator::MemoryFill { .. }
            | Operator::MemoryCopy { .. }
            | Operator::MemoryInit { .. } => {
                self.charge_length(body, scratch, MEMORY_UNITS_PER_BYTE);
                false
            }
            Operator::TableFill { .. }
            | Operator::TableCopy { .. }
            | Operator::TableInit { .. } => {
                self.charge_length(body, scratch, TABLE_UNITS_PER_ELEMENT);
                false
            }
            Operator::Throw { .. } => {
                InstructionSink::new(body)
                    .i64_const(THROW_SIGNAL)
                    .call(self.layout.check_function())
                    .drop();
                false
            }
            Operator::MemoryAtomicWait32 { memarg } => {
                self.wait(body, scratch, memarg, false)?;
                true
            }
            Operator::MemoryAtomicWait64 { memarg } => {
                self.wait(body, scratch, memarg, true)?;
                true
            }
            Operator::MemoryGrow { mem } => {
                self.guarded_grow(body, scratch, PAGE_BYTES, None, |sink| {
                    sink.memory_grow(mem);
                });
                true
            }
            Operator::TableGrow { table } => {
                let element = self.ref_type(self.layout.table_elements[table as usize])?;
                let init = scratch.local(ValType::Ref(element), 0);
                self.guarded_grow(body, scratch, TABLE_ENTRY_BYTES, Some(init), |sink| {
                    sink.table_grow(table);
                });
                true
            }
            _ => false,
        };
        if !replaced {
            self.instruction(operator)?.encode(body);
        }
        Ok(())
    }
}

/// Where in the module order a section goes (custom sections have no place).
pub(super) fn position(id: SectionId) -> u8 {
    match id {
        SectionId::Type => 1,
        SectionId::Import => 2,
        SectionId::Function => 3,
        SectionId::Table => 4,
        SectionId::Memory => 5,
        SectionId::Tag => 6,
        SectionId::Global => 7,
        SectionId::Export => 8,
        SectionId::Start => 9,
        SectionId::Element => 10,
        SectionId::DataCount => 11,
        SectionId::Code => 12,
        SectionId::Data => 13,
        _ => 0,
    }
}
