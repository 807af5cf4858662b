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
//! the stack: microseconds, where other operators take a nanosecond). Entering a function
//! charges every operator of its body outside loops; entering or repeating a loop charges
//! every operator of that loop's body outside nested loops. Forward branches can only
//! skip code, so between two charges wasm never runs more than it paid for, and the same
//! call on the same state always costs the same.

use wasm_encoder::reencode::{utils, Error as ReencodeError, Reencode};
use wasm_encoder::{
    CodeSection, ConstExpr, EntityType, ExportKind, ExportSection, Function, GlobalSection, GlobalType,
    ImportSection, Instruction, Module, SectionId, TypeSection, ValType,
};
use wasmparser::{FunctionBody, Operator, Parser, Payload, TypeRef};

use super::PrepareError;

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

/// What a throw costs, in units of an ordinary operator.
pub const THROW_COST: u64 = 10_000;

/// The fuel an operator costs.
fn cost(operator: &Operator) -> u64 {
    match operator {
        Operator::Throw { .. } | Operator::ThrowRef | Operator::Rethrow { .. } => THROW_COST,
        _ => 1,
    }
}

/// Instruments `wasm`; `None` when it defines no functions (nothing can run).
pub(super) fn instrument(wasm: &[u8]) -> Result<Option<Vec<u8>>, PrepareError> {
    let layout = Layout::read(wasm).map_err(super::invalid)?;
    if layout.defined_functions == 0 {
        return Ok(None);
    }
    let mut instrument = Instrument { layout, written: Vec::new() };
    let mut module = Module::new();
    instrument
        .parse_core_module(&mut module, Parser::new(0), wasm)
        .map_err(|e| PrepareError(format!("interruption checks: {e}")))?;
    Ok(Some(module.finish()))
}

/// The index spaces the added items go into.
struct Layout {
    types: u32,
    imported_functions: u32,
    defined_functions: u32,
    globals: u32,
    /// Which of the sections the pass adds to exist already.
    present: Vec<SectionId>,
}

impl Layout {
    fn read(wasm: &[u8]) -> Result<Layout, wasmparser::BinaryReaderError> {
        let mut layout =
            Layout { types: 0, imported_functions: 0, defined_functions: 0, globals: 0, present: Vec::new() };
        for payload in Parser::new(0).parse_all(wasm) {
            match payload? {
                Payload::TypeSection(reader) => {
                    layout.present.push(SectionId::Type);
                    for group in reader {
                        layout.types += group?.types().len() as u32;
                    }
                }
                Payload::ImportSection(reader) => {
                    layout.present.push(SectionId::Import);
                    for import in reader.into_imports() {
                        match import?.ty {
                            TypeRef::Func(_) | TypeRef::FuncExact(_) => layout.imported_functions += 1,
                            TypeRef::Global(_) => layout.globals += 1,
                            _ => {}
                        }
                    }
                }
                Payload::FunctionSection(reader) => layout.defined_functions = reader.count(),
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
        self.types
    }

    /// The check import comes right after the module's own function imports.
    fn check_function(&self) -> u32 {
        self.imported_functions
    }

    fn fuel_global(&self) -> u32 {
        self.globals
    }
}

struct Instrument {
    layout: Layout,
    /// The sections the pass had to create from nothing, once written.
    written: Vec<SectionId>,
}

impl Instrument {
    fn add_check_type(&self, types: &mut TypeSection) {
        types.ty().function([ValType::I64], [ValType::I64]);
    }

    fn add_check_import(&self, imports: &mut ImportSection) {
        imports.import(CHECK_MODULE, CHECK_NAME, EntityType::Function(self.layout.check_type()));
    }

    fn add_fuel_global(&self, globals: &mut GlobalSection) {
        let ty = GlobalType { val_type: ValType::I64, mutable: true, shared: false };
        globals.global(ty, &ConstExpr::i64_const(0));
    }

    fn add_fuel_export(&self, exports: &mut ExportSection) {
        exports.export(FUEL_EXPORT, ExportKind::Global, self.layout.fuel_global());
    }

    /// `fuel -= cost; if fuel < 0 { fuel = check(fuel) }`
    fn charge(&self, function: &mut Function, cost: u64) {
        let fuel = self.layout.fuel_global();
        function
            .instruction(&Instruction::GlobalGet(fuel))
            .instruction(&Instruction::I64Const(cost as i64))
            .instruction(&Instruction::I64Sub)
            .instruction(&Instruction::GlobalSet(fuel))
            .instruction(&Instruction::GlobalGet(fuel))
            .instruction(&Instruction::I64Const(0))
            .instruction(&Instruction::I64LtS)
            .instruction(&Instruction::If(wasm_encoder::BlockType::Empty))
            .instruction(&Instruction::GlobalGet(fuel))
            .instruction(&Instruction::Call(self.layout.check_function()))
            .instruction(&Instruction::GlobalSet(fuel))
            .instruction(&Instruction::End);
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
        Ok(if func >= self.layout.check_function() { func + 1 } else { func })
    }

    fn parse_type_section(
        &mut self,
        types: &mut TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), ReencodeError> {
        utils::parse_type_section(self, types, section)?;
        self.add_check_type(types);
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
        for id in [SectionId::Type, SectionId::Import, SectionId::Global, SectionId::Export] {
            let place = position(id);
            if self.layout.present.contains(&id) || self.written.contains(&id) || place <= after || place >= before {
                continue;
            }
            match id {
                SectionId::Type => module.section(&{
                    let mut types = TypeSection::new();
                    self.add_check_type(&mut types);
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

    fn parse_function_body(&mut self, code: &mut CodeSection, body: FunctionBody<'_>) -> Result<(), ReencodeError> {
        let costs = RegionCosts::of(&body)?;
        let mut function = self.new_function_with_parsed_locals(&body)?;
        self.charge(&mut function, costs.entry);
        let mut loops = costs.loops.iter();
        let mut reader = body.get_operators_reader()?;
        while !reader.eof() {
            let operator = reader.read()?;
            let is_loop = matches!(operator, Operator::Loop { .. });
            function.instruction(&self.instruction(operator)?);
            if is_loop {
                let cost = loops.next().copied().expect("one cost per loop");
                self.charge(&mut function, cost);
            }
        }
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
        let mut costs = RegionCosts { entry: 0, loops: Vec::new() };
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
                Operator::Block { .. } | Operator::If { .. } | Operator::TryTable { .. } | Operator::Try { .. } => {
                    open.push(region)
                }
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
mod tests {
    use super::super::test_support::prepare_wat;
    use super::*;
    use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
    use std::sync::Arc;
    use wasmer::{
        imports, Function, FunctionType, Instance, InstantiationError, Module as WasmerModule, RuntimeError, Store, Type,
        Value,
    };

    /// A check that counts its calls, grants `slice` fuel, and traps on call number `limit`.
    fn build(
        wat: &str,
        slice: i64,
        limit: u32,
        extra: impl FnOnce(&mut Store, &mut wasmer::Imports),
    ) -> (Store, Result<Instance, InstantiationError>, Arc<AtomicU32>) {
        let (store, instance, calls, _) = build_with_overdrafts(wat, slice, limit, extra);
        (store, instance, calls)
    }

    /// `build`, also summing the (negative) fuel the check was called with.
    fn build_with_overdrafts(
        wat: &str,
        slice: i64,
        limit: u32,
        extra: impl FnOnce(&mut Store, &mut wasmer::Imports),
    ) -> (Store, Result<Instance, InstantiationError>, Arc<AtomicU32>, Arc<AtomicI64>) {
        let engine = crate::engine::engine();
        let module = WasmerModule::new(engine, prepare_wat(wat).wasm).unwrap();
        assert!(module.exports().any(|e| e.name() == FUEL_EXPORT));
        let mut store = Store::new(engine.clone());
        let calls = Arc::new(AtomicU32::new(0));
        let overdrafts = Arc::new(AtomicI64::new(0));
        let (counted, overdrawn) = (Arc::clone(&calls), Arc::clone(&overdrafts));
        let ty = FunctionType::new([Type::I64], [Type::I64]);
        let check = Function::new(&mut store, ty, move |args| {
            overdrawn.fetch_add(args[0].unwrap_i64(), Ordering::SeqCst);
            if counted.fetch_add(1, Ordering::SeqCst) + 1 >= limit {
                return Err(RuntimeError::new("interrupted"));
            }
            Ok(vec![Value::I64(slice)])
        });
        let mut imports = imports! { CHECK_MODULE => { CHECK_NAME => check } };
        extra(&mut store, &mut imports);
        let instance = Instance::new(&mut store, &module, &imports);
        (store, instance, calls, overdrafts)
    }

    fn instantiate_counting(
        wat: &str,
        slice: i64,
        limit: u32,
        extra: impl FnOnce(&mut Store, &mut wasmer::Imports),
    ) -> (Store, Instance, Arc<AtomicU32>) {
        let (store, instance, calls) = build(wat, slice, limit, extra);
        (store, instance.unwrap(), calls)
    }

    fn fuel(store: &mut Store, instance: &Instance) -> i64 {
        match instance.exports.get_global(FUEL_EXPORT).unwrap().get(store) {
            Value::I64(fuel) => fuel,
            other => panic!("fuel is {other:?}"),
        }
    }

    const SPIN: &str = r#"(module
        (func (export "spin") (loop $l (br $l)))
        (func (export "count") (param $n i32) (result i32)
            (local $i i32)
            (block $done (loop $l
                (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br $l)))
            (local.get $i)))"#;

    #[test]
    fn an_endless_loop_reaches_the_check_and_can_be_trapped() {
        let (mut store, instance, calls) = instantiate_counting(SPIN, 1000, 50, |_, _| {});
        let spin = instance.exports.get_function("spin").unwrap();
        let error = spin.call(&mut store, &[]).unwrap_err();
        assert_eq!(error.message(), "interrupted");
        assert_eq!(calls.load(Ordering::SeqCst), 50);
    }

    #[test]
    fn fuel_used_is_exact_and_independent_of_the_slice() {
        // Per call: entry region (`local.get $i` + `end` + the loop operator itself = 3) and
        // per iteration the loop body (14 operators), plus the exit iteration.
        let used = |slice: i64, n: i32| {
            let (mut store, instance, calls, overdrafts) = build_with_overdrafts(SPIN, slice, u32::MAX, |_, _| {});
            let instance = instance.unwrap();
            instance.exports.get_global(FUEL_EXPORT).unwrap().set(&mut store, Value::I64(slice)).unwrap();
            let count = instance.exports.get_function("count").unwrap();
            assert_eq!(count.call(&mut store, &[Value::I32(n)]).unwrap()[0], Value::I32(n));
            let checks = calls.load(Ordering::SeqCst) as i64;
            // Each slice granted, used down to its overdraft (or, the last, to what is left).
            slice * (1 + checks) - overdrafts.load(Ordering::SeqCst) - fuel(&mut store, &instance)
        };
        let reference = used(1 << 40, 1000);
        assert_eq!(used(7, 1000), reference);
        assert_eq!(used(100, 1000), reference);
        assert_eq!(used(1 << 40, 2000) - reference, 1000 * (used(1 << 40, 1) - used(1 << 40, 0)));
        assert!(reference > 1000 * 5, "each iteration costs its operators: {reference}");
    }

    #[test]
    fn renumbers_functions_after_imports_everywhere() {
        let wat = r#"(module
            (import "env" "twice" (func $twice (param i32) (result i32)))
            (table 2 funcref)
            (elem (i32.const 0) $seven $via_table)
            (global $started (mut i32) (i32.const 0))
            (global $ref funcref (ref.func $seven))
            (start $init)
            (func $init (global.set $started (i32.const 1)))
            (func $seven (result i32) (i32.const 7))
            (func $via_table (result i32) (call_indirect (result i32) (i32.const 0)))
            (func (export "run") (result i32)
                (i32.add (call $twice (call $seven))
                         (i32.add (call_indirect (result i32) (i32.const 1)) (global.get $started))))
            (func (export "ref_is_seven") (result i32)
                (ref.is_null (ref.func $seven))))"#;
        let (mut store, instance, _) = instantiate_counting(wat, 1 << 30, u32::MAX, |store, imports| {
            let ty = FunctionType::new([Type::I32], [Type::I32]);
            let twice = Function::new(store, ty, |args| Ok(vec![Value::I32(args[0].unwrap_i32() * 2)]));
            imports.define("env", "twice", twice);
        });
        let run = instance.exports.get_function("run").unwrap();
        assert_eq!(run.call(&mut store, &[]).unwrap()[0], Value::I32(14 + 7 + 1));
        let is_null = instance.exports.get_function("ref_is_seven").unwrap();
        assert_eq!(is_null.call(&mut store, &[]).unwrap()[0], Value::I32(0));
    }

    #[test]
    fn adds_missing_sections_in_order() {
        // No imports, globals or exports to append to: the pass creates those sections.
        // The start function spins until the third check traps it.
        let wat = r#"(module (func $f (loop $l (br $l))) (start $f))"#;
        let (_store, instance, calls) = build(wat, 10, 3, |_, _| {});
        assert!(instance.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_module_without_functions_is_left_alone() {
        let wasm = wat::parse_str("(module (memory 1))").unwrap();
        assert!(instrument(&wasm).unwrap().is_none());
    }
}
