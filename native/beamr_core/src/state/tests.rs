use wasmer::{Instance, Module, Store, Value};

use super::{StateAccess, StateError};
use crate::dirty_pages::Policy;
use crate::prepare::test_support::{call, prepare_wat, with_check};
use crate::snapshot::{self, Lineage};

/// Memory, a mutable global and a table whose entry 1 `set_entry` can fill with a
/// function neither exported nor placed by an active segment.
const WAT: &str = r#"
(module
  (memory 1 4)
  (global $g (mut i32) (i32.const 7))
  (table 3 funcref)
  (elem (i32.const 0) $f)
  (elem declare func $hidden)
  (func $f (result i32) (i32.const 1))
  (func $hidden (result i32) (i32.const 2))
  (func (export "poke") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))
  (func (export "peek") (param i32) (result i32) (i32.load8_u (local.get 0)))
  (func (export "set_g") (param i32) (global.set $g (local.get 0)))
  (func (export "get_g") (result i32) (global.get $g))
  (func (export "grow") (result i32) (memory.grow (i32.const 1)))
  (func (export "set_entry") (table.set (i32.const 1) (ref.func $hidden)))
  (func (export "clear_entry") (table.set (i32.const 1) (ref.null func)))
  (func (export "call_entry") (result i32) (call_indirect (result i32) (i32.const 1))))
"#;

const IDENTITY: [u8; 32] = [7; 32];

fn start() -> (Store, Instance, StateAccess) {
    start_module(WAT, IDENTITY)
}

/// An instance of prepared `wat` and its state access, its snapshots bound to `identity`.
fn start_module(wat: &str, identity: [u8; 32]) -> (Store, Instance, StateAccess) {
    let engine = crate::engine::engine();
    let module = Module::new(engine, prepare_wat(wat).wasm).unwrap();
    let mut store = Store::new(engine.clone());
    let imports = with_check(&mut store, wasmer::imports! {});
    let instance = crate::prepare::instantiate_with_start(&mut store, &module, &imports).unwrap();
    let state = StateAccess::new(&mut store, &module, &instance, identity, Policy::Digests);
    (store, instance, state)
}

fn run(store: &mut Store, instance: &Instance, name: &str, args: &[i32]) -> i32 {
    let args: Vec<Value> = args.iter().map(|a| Value::I32(*a)).collect();
    match call(store, instance, name, &args).unwrap().first() {
        Some(Value::I32(n)) => *n,
        _ => 0,
    }
}

fn capture(store: &mut Store, state: &StateAccess, incremental: bool) -> Vec<u8> {
    state
        .capture(store, incremental, |len| Some(vec![0; len]))
        .unwrap_or_else(|e| panic!("capture: {e:?}"))
}

#[test]
fn a_full_snapshot_restores_memory_globals_and_size() {
    let (mut store, instance, state) = start();
    run(&mut store, &instance, "poke", &[100, 42]);
    run(&mut store, &instance, "set_g", &[9]);
    let full = capture(&mut store, &state, false);
    assert_eq!(snapshot::decode(&full).unwrap().lineage, Lineage::Full);

    run(&mut store, &instance, "poke", &[100, 1]);
    run(&mut store, &instance, "set_g", &[1]);
    run(&mut store, &instance, "grow", &[]);
    run(&mut store, &instance, "poke", &[70_000, 5]);
    state.apply(&mut store, &[&full]).unwrap();

    assert_eq!(run(&mut store, &instance, "peek", &[100]), 42);
    assert_eq!(run(&mut store, &instance, "get_g", &[]), 9);
    // Memory cannot shrink: what lies past the snapshot's size is zeroed.
    assert_eq!(run(&mut store, &instance, "peek", &[70_000]), 0);
}

#[test]
fn a_delta_holds_what_changed_since_its_base() {
    let (mut store, instance, state) = start();
    let full = capture(&mut store, &state, true);
    run(&mut store, &instance, "poke", &[5, 55]);
    let delta = capture(&mut store, &state, true);
    let decoded = snapshot::decode(&delta).unwrap();
    assert!(matches!(decoded.lineage, Lineage::Delta { .. }));
    assert!(delta.len() < full.len());

    run(&mut store, &instance, "poke", &[5, 0]);
    state.apply(&mut store, &[&full, &delta]).unwrap();
    assert_eq!(run(&mut store, &instance, "peek", &[5]), 55);
    // A delta alone is not a chain.
    assert!(matches!(
        state.apply(&mut store, &[&delta]),
        Err(StateError::Snapshot(_))
    ));
}

#[test]
fn snapshots_of_another_module_are_refused() {
    let (mut store, _instance, state) = start();
    let full = capture(&mut store, &state, false);
    let (mut other_store, _other, other_state) = start_module(WAT, [8; 32]);
    assert!(matches!(
        other_state.apply(&mut other_store, &[&full]),
        Err(StateError::Snapshot(snapshot::SnapshotError::Mismatch(_)))
    ));
}

#[test]
fn a_function_placed_by_table_set_is_captured_and_restored() {
    let (mut store, instance, state) = start();
    run(&mut store, &instance, "set_entry", &[]);
    let full = capture(&mut store, &state, false);
    run(&mut store, &instance, "clear_entry", &[]);
    assert!(call(&mut store, &instance, "call_entry", &[]).is_err());
    state.apply(&mut store, &[&full]).unwrap();
    assert_eq!(run(&mut store, &instance, "call_entry", &[]), 2);
}

/// A start function may change table 0 before the host can read what the active segments
/// put there: their functions are found all the same.
#[test]
fn tables_changed_by_a_start_function_are_captured() {
    let wat = r#"
(module
  (table 2 funcref)
  (elem (i32.const 0) $a $b)
  (func $a (result i32) (i32.const 10))
  (func $b (result i32) (i32.const 20))
  (func $swap (table.set (i32.const 0) (ref.func $b)) (table.set (i32.const 1) (ref.func $a)))
  (start $swap)
  (func (export "entry") (param i32) (result i32) (call_indirect (result i32) (local.get 0))))
"#;
    let (mut store, instance, state) = start_module(wat, IDENTITY);
    let full = capture(&mut store, &state, false);
    state.apply(&mut store, &[&full]).unwrap();
    assert_eq!(run(&mut store, &instance, "entry", &[0]), 20);
    assert_eq!(run(&mut store, &instance, "entry", &[1]), 10);
}

#[test]
fn a_refused_allocation_is_an_error() {
    let (mut store, _instance, state) = start();
    assert!(matches!(
        state.capture(&mut store, false, |_| None::<Vec<u8>>),
        Err(StateError::Grow("memory"))
    ));
    // The next incremental snapshot is a full one: no base was recorded.
    let next = capture(&mut store, &state, true);
    assert_eq!(snapshot::decode(&next).unwrap().lineage, Lineage::Full);
}
