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

use wasm_encoder::reencode::{utils, Error as ReencodeError, Reencode};
use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, Encode, EntityType, ExportKind, ExportSection, Function,
    FunctionSection, GlobalSection, GlobalType, ImportSection, InstructionSink, Module, SectionId,
    TypeSection, ValType,
};
use wasmparser::{CompositeInnerType, FunctionBody, Operator, Parser, Payload, RefType, TypeRef};

use super::error::{invalid, PrepareError};
use super::options::TABLE_ENTRY_BYTES;

/// The import the instrumented module calls when its fuel runs out.
pub const CHECK_MODULE: &str = "__hb_beamr";
pub const CHECK_NAME: &str = "check";
/// The fuel global, exported for the host.
pub const FUEL_EXPORT: &str = "__hb_beamr_fuel";

/// A check that never interrupts, for embeddings without limits (tests, the spec harness).
pub fn unlimited_check(store: &mut impl wasmer::AsStoreMut) -> wasmer::Function {
    let ty = wasmer::FunctionType::new([wasmer::Type::I64], [wasmer::Type::I64]);
    wasmer::Function::new(store, ty, |_| Ok(vec![wasmer::Value::I64(i64::MAX)]))
}

/// The check's argument before a `throw` (see the module documentation): never a fuel
/// overdraft, which is at least -(2^36) (a bulk operation's length times its units).
pub const THROW_SIGNAL: i64 = i64::MIN;

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
const PAGE_BYTES: u64 = 65536;

/// The fuel an operator costs, besides what a bulk operation's length adds.
fn cost(operator: &Operator) -> u64 {
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

/// The index spaces the added items go into, and what the rewrites need to know of the
/// module's functions, memories and tables.
struct Layout {
    /// Per type, its parameter count (0 for a type that is not a function's).
    type_params: Vec<u32>,
    imported_functions: u32,
    /// Per defined function, its type.
    function_types: Vec<u32>,
    globals: u32,
    /// Per memory (imported ones first), whether it is shared.
    shared_memories: Vec<bool>,
    /// Per table (imported ones first), its element type.
    table_elements: Vec<RefType>,
    /// Which of the sections the pass adds to exist already.
    present: Vec<SectionId>,
}

impl Layout {
    fn read(wasm: &[u8]) -> Result<Layout, wasmparser::BinaryReaderError> {
        let mut layout = Layout {
            type_params: Vec::new(),
            imported_functions: 0,
            function_types: Vec::new(),
            globals: 0,
            shared_memories: Vec::new(),
            table_elements: Vec::new(),
            present: Vec::new(),
        };
        for payload in Parser::new(0).parse_all(wasm) {
            match payload? {
                Payload::TypeSection(reader) => {
                    layout.present.push(SectionId::Type);
                    for group in reader {
                        for ty in group?.types() {
                            layout.type_params.push(match &ty.composite_type.inner {
                                CompositeInnerType::Func(func) => func.params().len() as u32,
                                _ => 0,
                            });
                        }
                    }
                }
                Payload::ImportSection(reader) => {
                    layout.present.push(SectionId::Import);
                    for import in reader.into_imports() {
                        match import?.ty {
                            TypeRef::Func(_) | TypeRef::FuncExact(_) => {
                                layout.imported_functions += 1
                            }
                            TypeRef::Global(_) => layout.globals += 1,
                            TypeRef::Memory(memory) => layout.shared_memories.push(memory.shared),
                            TypeRef::Table(table) => layout.table_elements.push(table.element_type),
                            TypeRef::Tag(_) => {}
                        }
                    }
                }
                Payload::FunctionSection(reader) => {
                    for ty in reader {
                        layout.function_types.push(ty?);
                    }
                }
                Payload::TableSection(reader) => {
                    for table in reader {
                        layout.table_elements.push(table?.ty.element_type);
                    }
                }
                Payload::MemorySection(reader) => {
                    for memory in reader {
                        layout.shared_memories.push(memory?.shared);
                    }
                }
                Payload::GlobalSection(reader) => {
                    layout.present.push(SectionId::Global);
                    layout.globals += reader.count();
                }
                Payload::ExportSection(_) => layout.present.push(SectionId::Export),
                _ => {}
            }
        }
        Ok(layout)
    }

    /// The index of the check function's type, appended to the type section.
    fn check_type(&self) -> u32 {
        self.type_params.len() as u32
    }

    /// The index of the footprint function's type, after the check's.
    fn footprint_type(&self) -> u32 {
        self.check_type() + 1
    }

    /// The check import comes right after the module's own function imports.
    fn check_function(&self) -> u32 {
        self.imported_functions
    }

    /// The footprint function comes after all the module's own functions.
    fn footprint_function(&self) -> u32 {
        self.imported_functions + 1 + self.function_types.len() as u32
    }

    fn fuel_global(&self) -> u32 {
        self.globals
    }

    /// The parameter count of defined function `index`.
    fn params(&self, index: usize) -> u32 {
        self.type_params[self.function_types[index] as usize]
    }
}

struct Instrument {
    layout: Layout,
    /// The bytes all memories and tables may take together.
    budget: u64,
    /// The sections the pass had to create from nothing, once written.
    written: Vec<SectionId>,
    /// The defined function whose body comes next.
    next_function: usize,
}

/// Locals added to a function for the operands the rewrites set aside, numbered after the
/// function's own (its parameters and declared locals).
struct Scratch {
    first: u32,
    /// Each added local, as (type, which one of that type).
    added: Vec<(ValType, u32)>,
}

impl Scratch {
    /// The `nth` scratch local of type `ty`.
    fn local(&mut self, ty: ValType, nth: u32) -> u32 {
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
    fn add_types(&self, types: &mut TypeSection) {
        types.ty().function([ValType::I64], [ValType::I64]);
        types.ty().function([], [ValType::I64]);
    }

    fn add_check_import(&self, imports: &mut ImportSection) {
        imports.import(
            CHECK_MODULE,
            CHECK_NAME,
            EntityType::Function(self.layout.check_type()),
        );
    }

    fn add_fuel_global(&self, globals: &mut GlobalSection) {
        let ty = GlobalType {
            val_type: ValType::I64,
            mutable: true,
            shared: false,
        };
        globals.global(ty, &ConstExpr::i64_const(0));
    }

    fn add_fuel_export(&self, exports: &mut ExportSection) {
        exports.export(FUEL_EXPORT, ExportKind::Global, self.layout.fuel_global());
    }

    /// The bytes all memories and tables take: Σ pages × 64 KiB + Σ entries × 8. At most
    /// 100 of each (wasmparser's limits) of at most 2^32 pages or entries: no overflow.
    /// (Fixed-size funcref tables cost more, but cannot grow; their part is bounded when
    /// the module is compiled.)
    fn footprint(&self) -> Function {
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
    fn charge(&self, body: &mut Vec<u8>, cost: impl FnOnce(&mut InstructionSink<'_>)) {
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

    fn charge_fixed(&self, body: &mut Vec<u8>, cost: u64) {
        self.charge(body, |sink| {
            sink.i64_const(cost as i64);
        });
    }

    /// Charges the bulk operation about to run `units` per item of its length (the i32 on
    /// top of the stack, left there).
    fn charge_length(&self, body: &mut Vec<u8>, scratch: &mut Scratch, units: u64) {
        let length = scratch.local(ValType::I32, 0);
        InstructionSink::new(body).local_tee(length);
        self.charge(body, |sink| {
            sink.local_get(length)
                .i64_extend_i32_u()
                .i64_const(units as i64)
                .i64_mul();
        });
    }

    /// A wait that cannot block (see the module documentation); `wide` for `wait64`.
    fn wait(
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
    fn guarded_grow(
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
    fn rewrite(
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
fn position(id: SectionId) -> u8 {
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

impl Reencode for Instrument {
    type Error = std::convert::Infallible;

    fn function_index(&mut self, func: u32) -> Result<u32, ReencodeError> {
        Ok(if func >= self.layout.check_function() {
            func + 1
        } else {
            func
        })
    }

    fn parse_type_section(
        &mut self,
        types: &mut TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), ReencodeError> {
        utils::parse_type_section(self, types, section)?;
        self.add_types(types);
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), ReencodeError> {
        utils::parse_import_section(self, imports, section)?;
        self.add_check_import(imports);
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), ReencodeError> {
        utils::parse_global_section(self, globals, section)?;
        self.add_fuel_global(globals);
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), ReencodeError> {
        utils::parse_export_section(self, exports, section)?;
        self.add_fuel_export(exports);
        Ok(())
    }

    /// Creates the sections the pass adds to when the module has none of them.
    fn intersperse_section_hook(
        &mut self,
        module: &mut Module,
        after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), ReencodeError> {
        let after = after.map_or(0, position);
        let before = before.map_or(u8::MAX, position);
        for id in [
            SectionId::Type,
            SectionId::Import,
            SectionId::Global,
            SectionId::Export,
        ] {
            let place = position(id);
            if self.layout.present.contains(&id)
                || self.written.contains(&id)
                || place <= after
                || place >= before
            {
                continue;
            }
            match id {
                SectionId::Type => module.section(&{
                    let mut types = TypeSection::new();
                    self.add_types(&mut types);
                    types
                }),
                SectionId::Import => module.section(&{
                    let mut imports = ImportSection::new();
                    self.add_check_import(&mut imports);
                    imports
                }),
                SectionId::Global => module.section(&{
                    let mut globals = GlobalSection::new();
                    self.add_fuel_global(&mut globals);
                    globals
                }),
                _ => module.section(&{
                    let mut exports = ExportSection::new();
                    self.add_fuel_export(&mut exports);
                    exports
                }),
            };
            self.written.push(id);
        }
        Ok(())
    }

    /// Names are debug information: a name section that does not parse is dropped
    /// rather than failing a module that is valid without it.
    fn parse_custom_section(
        &mut self,
        module: &mut Module,
        section: wasmparser::CustomSectionReader<'_>,
    ) -> Result<(), ReencodeError> {
        match section.as_known() {
            wasmparser::KnownCustom::Name(names) => {
                if let Ok(names) = self.custom_name_section(names) {
                    module.section(&names);
                }
            }
            _ => {
                module.section(&self.custom_section(section)?);
            }
        }
        Ok(())
    }

    /// The footprint function comes after the module's own functions.
    fn parse_function_section(
        &mut self,
        functions: &mut FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), ReencodeError> {
        utils::parse_function_section(self, functions, section)?;
        functions.function(self.layout.footprint_type());
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), ReencodeError> {
        utils::parse_code_section(self, code, section)?;
        code.function(&self.footprint());
        Ok(())
    }

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        body: FunctionBody<'_>,
    ) -> Result<(), ReencodeError> {
        let costs = RegionCosts::of(&body)?;
        let mut locals = Vec::new();
        let mut first_scratch = self.layout.params(self.next_function);
        self.next_function += 1;
        for pair in body.get_locals_reader()? {
            let (count, ty) = pair?;
            first_scratch += count;
            locals.push((count, self.val_type(ty)?));
        }
        let mut scratch = Scratch {
            first: first_scratch,
            added: Vec::new(),
        };
        let mut instrumented = Vec::new();
        self.charge_fixed(&mut instrumented, costs.entry);
        let mut loops = costs.loops.iter();
        let mut reader = body.get_operators_reader()?;
        while !reader.eof() {
            let operator = reader.read()?;
            let is_loop = matches!(operator, Operator::Loop { .. });
            self.rewrite(&mut instrumented, &mut scratch, operator)?;
            if is_loop {
                let cost = loops.next().copied().expect("one cost per loop");
                self.charge_fixed(&mut instrumented, cost);
            }
        }
        locals.extend(scratch.added.iter().map(|&(ty, _)| (1, ty)));
        let mut function = Function::new(locals);
        function.raw(instrumented);
        code.function(&function);
        Ok(())
    }
}

/// The cost of each charged region of a function: its body outside loops, and each loop
/// body outside nested loops (in the order the loops appear).
struct RegionCosts {
    entry: u64,
    loops: Vec<u64>,
}

impl RegionCosts {
    fn of(body: &FunctionBody<'_>) -> Result<RegionCosts, wasmparser::BinaryReaderError> {
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

#[cfg(test)]
mod tests;
