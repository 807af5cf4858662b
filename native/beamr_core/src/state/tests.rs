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

/// The module's freshly instantiated state, as a base for images.
fn fresh_base() -> std::sync::Arc<super::Base> {
    let (mut store, _instance, state) = start();
    let base = capture(&mut store, &state, false);
    std::sync::Arc::new(super::Base::new(Box::new(base)).unwrap())
}

/// Hibernation: the state goes into an image against a base (here the module's fresh
/// state) and comes back in a fresh instantiation; a delta taken after the revival still
/// holds what changed before it, since the user's last snapshot.
#[test]
fn an_image_revives_the_whole_state_and_keeps_the_incremental_base() {
    for policy in [Policy::Digests, Policy::Auto] {
        let base = fresh_base();
        let (mut store, instance, state) = start();
        run(&mut store, &instance, "poke", &[100, 42]);
        let user_full = state
            .capture(&mut store, true, |len| Some(vec![0; len]))
            .unwrap();
        run(&mut store, &instance, "poke", &[200, 7]);
        run(&mut store, &instance, "set_g", &[9]);
        run(&mut store, &instance, "set_entry", &[]);
        run(&mut store, &instance, "grow", &[]);
        run(&mut store, &instance, "poke", &[70_000, 5]);
        let image = state.hibernate(&mut store, base.clone()).unwrap();
        assert!(image.bytes() < 4096, "{} bytes", image.bytes());
        let encoded = image.encode();
        let image = super::Image::decode(&encoded, base.clone()).unwrap();
        drop((store, instance, state));

        // A fresh instantiation, without the start function, as a revival makes it.
        let engine = crate::engine::engine();
        let module = Module::new(engine, prepare_wat(WAT).wasm).unwrap();
        let mut store = Store::new(engine.clone());
        let imports = with_check(&mut store, wasmer::imports! {});
        let instance = Instance::new(&mut store, &module, &imports).unwrap();
        let state = StateAccess::new(&mut store, &module, &instance, IDENTITY, policy);
        state.revive(&mut store, &image).unwrap();
        assert_eq!(run(&mut store, &instance, "peek", &[100]), 42);
        assert_eq!(run(&mut store, &instance, "peek", &[200]), 7);
        assert_eq!(run(&mut store, &instance, "peek", &[70_000]), 5);
        assert_eq!(run(&mut store, &instance, "get_g", &[]), 9);
        assert_eq!(run(&mut store, &instance, "call_entry", &[]), 2);

        run(&mut store, &instance, "poke", &[300, 3]);
        let delta = capture(&mut store, &state, true);
        let decoded = snapshot::decode(&delta).unwrap();
        let user_id = snapshot::decode(&user_full).unwrap().id;
        assert_eq!(decoded.lineage, Lineage::Delta { parent: user_id });
        // The chain the user holds restores everything, in yet another instance.
        let (mut store, instance, state) = start();
        state.apply(&mut store, &[&user_full, &delta]).unwrap();
        for (at, value) in [(100, 42), (200, 7), (300, 3), (70_000, 5)] {
            assert_eq!(run(&mut store, &instance, "peek", &[at]), value, "at {at}");
        }
    }
}

/// A damaged image is refused, never half-applied.
#[test]
fn a_damaged_image_is_invalid() {
    let base = fresh_base();
    let (mut store, instance, state) = start();
    run(&mut store, &instance, "poke", &[100, 42]);
    let mut encoded = state.hibernate(&mut store, base.clone()).unwrap().encode();
    let middle = encoded.len() / 2;
    encoded[middle] ^= 1;
    assert!(matches!(
        super::Image::decode(&encoded, base.clone()),
        Err(StateError::Snapshot(_))
    ));
    assert!(matches!(
        super::Image::decode(&encoded[..10], base),
        Err(StateError::Snapshot(_))
    ));
}
