//! The `spectest` host module every script may import from, as the reference interpreter
//! defines it: no-op `print*` functions, constant globals, a table, a 64-bit table and a
//! memory.
//!
//! `table64` is a 32-bit wasmer table, as preparation would make it, recorded as 64-bit
//! so that the index-type check treats it as the spec's `(table i64 10 20 funcref)`.

use std::collections::HashMap;

use beamr_core::prepare::interrupt;
use wasmer::{
    Extern, Function, FunctionType, Global, Memory, MemoryType, Store, Table, TableType, Type,
    Value,
};

use super::linking::Exported;

/// What preparation's interruption checks import: a check that never interrupts.
pub fn interruption(store: &mut Store) -> Exported {
    let check = interrupt::unlimited_check(store);
    let externs = HashMap::from([(interrupt::CHECK_NAME.to_string(), Extern::from(check))]);
    Exported {
        externs,
        index64: HashMap::new(),
    }
}

pub fn spectest(store: &mut Store) -> Exported {
    let mut externs: HashMap<String, Extern> = HashMap::new();
    let prints: [(&str, &[Type]); 7] = [
        ("print", &[]),
        ("print_i32", &[Type::I32]),
        ("print_i64", &[Type::I64]),
        ("print_f32", &[Type::F32]),
        ("print_f64", &[Type::F64]),
        ("print_i32_f32", &[Type::I32, Type::F32]),
        ("print_f64_f64", &[Type::F64, Type::F64]),
    ];
    for (name, params) in prints {
        let print = Function::new(store, FunctionType::new(params, []), |_| Ok(vec![]));
        externs.insert(name.into(), print.into());
    }
    let globals = [
        ("global_i32", Value::I32(666)),
        ("global_i64", Value::I64(666)),
        ("global_f32", Value::F32(666.6)),
        ("global_f64", Value::F64(666.6)),
    ];
    for (name, value) in globals {
        externs.insert(name.into(), Global::new(store, value).into());
    }
    let index64 = HashMap::from([
        ("table".to_string(), false),
        ("table64".to_string(), true),
        ("memory".to_string(), false),
    ]);
    for name in ["table", "table64"] {
        let table_type = TableType::new(Type::FuncRef, 10, Some(20));
        let table = Table::new(store, table_type, Value::FuncRef(None)).expect("spectest table");
        externs.insert(name.into(), table.into());
    }
    let memory = Memory::new(store, MemoryType::new(1, Some(2), false)).expect("spectest memory");
    externs.insert("memory".into(), memory.into());
    Exported { externs, index64 }
}
