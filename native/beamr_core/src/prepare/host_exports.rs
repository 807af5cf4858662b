//! Host exports: the exports hb_beamr itself needs, under reserved names hidden from users.
//!
//! The host reads and writes memory 0 and calls through table 0 (Emscripten's `invoke_*`)
//! whatever the module exports them as, if at all, and a snapshot must capture every
//! mutable global and every table, which a module rarely exports. So memory 0 becomes
//! [`MEMORY_EXPORT`], table 0 [`TABLE_EXPORT`](super::reserved::TABLE_EXPORT) and every
//! other table [`table_export_name`] of its index (also when they are imported), and each
//! mutable global, defined or imported, [`global_export_name`] of its index.
//!
//! A snapshot writes a function reference (a table entry, a funcref global) as the index of
//! the function, which the host can only find for the functions it can see: exported ones,
//! and those the active segments put into the tables (read back from them after
//! instantiation). So every other function a segment or a global initializer references, which wasm can
//! place in a table or global with `table.set`, `table.init` or `global.set`, becomes
//! [`function_export_name`] of its index (with a start function, the active segments' too:
//! it may have changed the table before the host could read it; and those of active
//! segments at offsets other than a plain constant, which the host does not evaluate).
//!
//! The start function becomes [`START_EXPORT`] and its start section goes (see `finish`):
//! the executor calls it after instantiating, once, and an instance instantiated again to
//! be revived from hibernation does not run it.

use wasm_encoder::ExportKind;

use super::reserved::{
    function_export_name, global_export_name, table_export_name, MEMORY_EXPORT, START_EXPORT,
};
use super::summary::ModuleSummary;

pub(super) struct HostExport {
    pub name: String,
    pub kind: ExportKind,
    pub index: u32,
}

pub(super) fn host_exports(summary: &ModuleSummary) -> Vec<HostExport> {
    let memory = (summary.memory_count > 0).then(|| HostExport {
        name: MEMORY_EXPORT.into(),
        kind: ExportKind::Memory,
        index: 0,
    });
    let tables = (0..summary.table_count).map(|index| HostExport {
        name: table_export_name(index),
        kind: ExportKind::Table,
        index,
    });
    let globals = summary
        .global_mutability
        .iter()
        .enumerate()
        .filter(|(_, &mutable)| mutable)
        .map(|(index, _)| {
            let index = index as u32;
            HostExport {
                name: global_export_name(index),
                kind: ExportKind::Global,
                index,
            }
        });
    let functions = summary.placeable_functions.iter().map(|&index| HostExport {
        name: function_export_name(index),
        kind: ExportKind::Func,
        index,
    });
    let start = summary.start.map(|index| HostExport {
        name: START_EXPORT.into(),
        kind: ExportKind::Func,
        index,
    });
    memory
        .into_iter()
        .chain(tables)
        .chain(globals)
        .chain(functions)
        .chain(start)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{global_export_name, table_export_name, MEMORY_EXPORT, TABLE_EXPORT};
    use wasmer::{
        imports, Global, Memory, MemoryType, Module, Store, Table, TableType, Type, Value,
    };

    #[test]
    fn exports_memory_table_and_mutable_globals_under_reserved_names() {
        let wat = r#"(module
            (memory (export "mem") 2)
            (table 3 funcref)
            (global $c i32 (i32.const 1))
            (global $m (mut i64) (i64.const 5))
            (global $n (mut i32) (i32.const 6))
            (func (export "get") (result i64) (global.get $m)))"#;
        let (mut store, instance) = instantiate(wat);
        let exports = &instance.exports;
        let memory = exports.get_memory(MEMORY_EXPORT).unwrap();
        assert_eq!(memory, exports.get_memory("mem").unwrap());
        assert_eq!(exports.get_table(TABLE_EXPORT).unwrap().size(&store), 3);
        assert!(exports.get_global(&global_export_name(0)).is_err());
        let m = exports.get_global(&global_export_name(1)).unwrap();
        assert_eq!(m.get(&mut store), Value::I64(5));
        m.set(&mut store, Value::I64(9)).unwrap();
        let f = exports.get_function("get").unwrap();
        assert_eq!(f.call(&mut store, &[]).unwrap()[0], Value::I64(9));
        assert_eq!(
            exports
                .get_global(&global_export_name(2))
                .unwrap()
                .get(&mut store),
            Value::I32(6)
        );
        // Besides: `get`, `mem` and the interruption pass's fuel global.
        assert_eq!(exports.iter().count(), 7);
    }

    #[test]
    fn exports_imported_memory_table_and_globals() {
        let wat = r#"(module
            (import "env" "g" (global (mut i32)))
            (import "env" "k" (global i32))
            (import "env" "memory" (memory 1))
            (import "env" "table" (table 1 funcref))
            (global (mut i32) (i32.const 0)))"#;
        let engine = crate::engine::engine();
        let module = Module::new(engine, prepare_wat(wat).wasm).unwrap();
        let mut store = Store::new(engine.clone());
        let memory = Memory::new(&mut store, MemoryType::new(1, None, false)).unwrap();
        let table = Table::new(
            &mut store,
            TableType::new(Type::FuncRef, 1, None),
            Value::FuncRef(None),
        )
        .unwrap();
        let g = Global::new_mut(&mut store, Value::I32(4));
        let k = Global::new(&mut store, Value::I32(0));
        let imports = imports! {
            "env" => { "g" => g, "k" => k, "memory" => memory.clone(), "table" => table }
        };
        let imports = super::super::test_support::with_check(&mut store, imports);
        let instance =
            crate::prepare::instantiate_with_start(&mut store, &module, &imports).unwrap();
        let exports = &instance.exports;
        assert_eq!(exports.get_memory(MEMORY_EXPORT).unwrap(), &memory);
        assert!(exports.get_table(TABLE_EXPORT).is_ok());
        assert_eq!(
            exports
                .get_global(&global_export_name(0))
                .unwrap()
                .get(&mut store),
            Value::I32(4)
        );
        assert!(exports.get_global(&global_export_name(1)).is_err());
        assert!(exports.get_global(&global_export_name(2)).is_ok());
    }

    /// The start function is exported instead of run by instantiation: `instantiate_with_start`
    /// runs it once, a bare instantiation (a revival's) not at all.
    #[test]
    fn the_start_function_is_exported_not_run_at_instantiation() {
        let wat = r#"(module (global $n (mut i32) (i32.const 0))
            (func $start (global.set $n (i32.add (global.get $n) (i32.const 1))))
            (start $start)
            (func (export "n") (result i32) (global.get $n)))"#;
        let wasm = prepare_wat(wat).wasm;
        let engine = crate::engine::engine();
        let module = Module::new(engine, &wasm).unwrap();
        assert!(module.info().start_function.is_none());
        for (with_start, expected) in [(true, 1), (false, 0)] {
            let mut store = Store::new(engine.clone());
            let imports = super::super::test_support::with_check(&mut store, imports! {});
            let instance = if with_start {
                crate::prepare::instantiate_with_start(&mut store, &module, &imports).unwrap()
            } else {
                wasmer::Instance::new(&mut store, &module, &imports).unwrap()
            };
            let n = instance.exports.get_function("n").unwrap();
            assert_eq!(n.call(&mut store, &[]).unwrap()[0], Value::I32(expected));
        }
    }

    /// Every table, also an imported one, is exported for snapshots; table 0 under its
    /// old name.
    #[test]
    fn exports_every_table_under_reserved_names() {
        let wat = r#"(module
            (import "env" "table" (table 1 funcref))
            (table 2 funcref)
            (table 3 externref)
            (table (export "mine") 4 funcref))"#;
        let engine = crate::engine::engine();
        let module = Module::new(engine, prepare_wat(wat).wasm).unwrap();
        let mut store = Store::new(engine.clone());
        let table = Table::new(
            &mut store,
            TableType::new(Type::FuncRef, 1, None),
            Value::FuncRef(None),
        )
        .unwrap();
        let imports = imports! { "env" => { "table" => table } };
        let imports = super::super::test_support::with_check(&mut store, imports);
        let instance = wasmer::Instance::new(&mut store, &module, &imports).unwrap();
        let exports = &instance.exports;
        assert_eq!(table_export_name(0), TABLE_EXPORT);
        let sizes: Vec<u32> = (0..4)
            .map(|i| {
                exports
                    .get_table(&table_export_name(i))
                    .unwrap()
                    .size(&store)
            })
            .collect();
        assert_eq!(sizes, [1, 2, 3, 4]);
        assert!(exports.get_table(&table_export_name(4)).is_err());
        assert_eq!(
            exports.get_table(&table_export_name(3)).unwrap(),
            exports.get_table("mine").unwrap()
        );
    }

    #[test]
    fn preparing_twice_does_not_duplicate_exports() {
        let wat = "(module (memory 1) (global (mut i32) (i32.const 0)))";
        let once = prepare_wat(wat).wasm;
        let opts = super::super::PrepareOptions {
            wamr_compat: false,
            ..Default::default()
        };
        let twice = super::super::prepare(&once, &opts).unwrap().wasm;
        let module = Module::new(crate::engine::engine(), twice).unwrap();
        assert_eq!(module.exports().count(), 2);
    }
}
