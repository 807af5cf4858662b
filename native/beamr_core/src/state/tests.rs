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
fn fresh_base() -> std::sync::Arc<super::base::Base> {
    let (mut store, _instance, state) = start();
    let base = capture(&mut store, &state, false);
    std::sync::Arc::new(super::base::Base::new(Box::new(base)).unwrap())
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
        let image = super::hibernate::Image::decode(&encoded, base.clone()).unwrap();
        drop((store, instance, state));

        let (mut store, instance, state, fresh) = instantiate_for_revival(policy);
        state.revive(&mut store, &image, Some(&fresh)).unwrap();
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
        super::hibernate::Image::decode(&encoded, base.clone()),
        Err(StateError::Snapshot(_))
    ));
    assert!(matches!(
        super::hibernate::Image::decode(&encoded[..10], base),
        Err(StateError::Snapshot(_))
    ));
}

/// Funcref tables 0, 1 and 2, changed by `table.set` and `table.grow` with functions that
/// a declarative segment names ($one, $two, $three) or that only an active segment of
/// table 1 holds ($forty), and an externref table 3 left null.
const TABLES_WAT: &str = r#"
(module
  (type $i (func (result i32)))
  (table $t0 2 funcref)
  (table $t1 2 4 funcref)
  (table $t2 1 funcref)
  (table $x 1 externref)
  (elem (table $t1) (i32.const 0) func $forty)
  (elem declare func $one $two $three)
  (func $one (type $i) (i32.const 1))
  (func $two (type $i) (i32.const 2))
  (func $three (type $i) (i32.const 3))
  (func $forty (type $i) (i32.const 40))
  (func (export "fill")
    (table.set $t0 (i32.const 0) (ref.func $one))
    (table.set $t1 (i32.const 1) (ref.func $two))
    (table.set $t2 (i32.const 0) (table.get $t1 (i32.const 0))))
  (func (export "scramble")
    (table.set $t0 (i32.const 0) (ref.func $three))
    (table.set $t0 (i32.const 1) (ref.func $two))
    (table.set $t1 (i32.const 0) (ref.null func))
    (drop (table.grow $t1 (ref.func $one) (i32.const 2)))
    (table.set $t2 (i32.const 0) (ref.null func))
    (drop (table.grow $x (ref.null extern) (i32.const 1))))
  (func (export "call0") (param i32) (result i32) (call_indirect $t0 (type $i) (local.get 0)))
  (func (export "call1") (param i32) (result i32) (call_indirect $t1 (type $i) (local.get 0)))
  (func (export "call2") (param i32) (result i32) (call_indirect $t2 (type $i) (local.get 0)))
  (func (export "size1") (result i32) (table.size $t1))
  (func (export "size_x") (result i32) (table.size $x))
  (func (export "x_nulls") (result i32)
    (i32.add (ref.is_null (table.get $x (i32.const 0)))
             (ref.is_null (table.get $x (i32.const 1))))))
"#;

/// What calls through every entry of tables 0, 1 (the first four) and 2 give: the
/// function's number, or None for a trap (a null entry, or past the table's end).
fn entries(store: &mut Store, instance: &Instance) -> Vec<Vec<Option<i32>>> {
    [("call0", 2), ("call1", 4), ("call2", 1)]
        .iter()
        .map(|(name, size)| {
            (0..*size)
                .map(
                    |slot| match call(store, instance, name, &[Value::I32(slot)]) {
                        Ok(results) => match results.first() {
                            Some(Value::I32(n)) => Some(*n),
                            _ => None,
                        },
                        Err(_) => None,
                    },
                )
                .collect()
        })
        .collect()
}

/// The state after "fill".
fn filled() -> Vec<Vec<Option<i32>>> {
    vec![
        vec![Some(1), None],
        vec![Some(40), Some(2), None, None],
        vec![Some(40)],
    ]
}

#[test]
fn every_table_is_captured_and_restored() {
    let (mut store, instance, state) = start_module(TABLES_WAT, IDENTITY);
    run(&mut store, &instance, "fill", &[]);
    assert_eq!(entries(&mut store, &instance), filled());
    let full = capture(&mut store, &state, false);
    let decoded = snapshot::decode(&full).unwrap();
    assert!(decoded.every_table);
    let shapes: Vec<(u32, usize, usize)> = decoded
        .tables
        .iter()
        .map(|(i, e)| (*i, e.len(), e.iter().flatten().count()))
        .collect();
    assert_eq!(shapes, [(0, 2, 1), (1, 2, 2), (2, 1, 1), (3, 1, 0)]);

    run(&mut store, &instance, "scramble", &[]);
    let scrambled = vec![
        vec![Some(3), Some(2)],
        vec![None, Some(2), Some(1), Some(1)],
        vec![None],
    ];
    assert_eq!(entries(&mut store, &instance), scrambled);
    assert_eq!(run(&mut store, &instance, "size_x", &[]), 2);
    state.apply(&mut store, &[&full]).unwrap();
    // Tables cannot shrink: table 1 keeps its 4 entries, those past the snapshot's null;
    // the externref table its 2, null.
    assert_eq!(entries(&mut store, &instance), filled());
    assert_eq!(run(&mut store, &instance, "size1", &[]), 4);
    assert_eq!(run(&mut store, &instance, "x_nulls", &[]), 2);

    // Into a fresh instance, whose table 1 must grow to a snapshot's size.
    let (mut store, instance, state) = start_module(TABLES_WAT, IDENTITY);
    run(&mut store, &instance, "scramble", &[]);
    let grown = capture(&mut store, &state, false);
    let (mut fresh_store, fresh, fresh_state) = start_module(TABLES_WAT, IDENTITY);
    fresh_state.apply(&mut fresh_store, &[&grown]).unwrap();
    assert_eq!(
        entries(&mut fresh_store, &fresh),
        vec![
            vec![Some(3), Some(2)],
            vec![None, None, Some(1), Some(1)],
            vec![None]
        ]
    );
    assert_eq!(run(&mut fresh_store, &fresh, "size_x", &[]), 2);
    assert_eq!(capture(&mut fresh_store, &fresh_state, false), grown);
}

#[test]
fn deltas_carry_every_table_whole() {
    let (mut store, instance, state) = start_module(TABLES_WAT, IDENTITY);
    let full = capture(&mut store, &state, true);
    run(&mut store, &instance, "fill", &[]);
    let delta = capture(&mut store, &state, true);
    assert_eq!(snapshot::decode(&delta).unwrap().tables.len(), 4);
    let (mut fresh_store, fresh, fresh_state) = start_module(TABLES_WAT, IDENTITY);
    fresh_state
        .apply(&mut fresh_store, &[&full, &delta])
        .unwrap();
    assert_eq!(entries(&mut fresh_store, &fresh), filled());
}

/// A version-2 snapshot holds table 0 only: restoring it sets table 0 and leaves the other
/// tables as they are; a version-3 delta taken after it restores every table.
#[test]
fn version_2_snapshots_restore_table_0_and_leave_the_others() {
    let (mut store, instance, state) = start_module(TABLES_WAT, IDENTITY);
    run(&mut store, &instance, "fill", &[]);
    let v2 = snapshot::test_support::as_version_2(&capture(&mut store, &state, false), None);
    assert!(!snapshot::decode(&v2).unwrap().every_table);
    run(&mut store, &instance, "scramble", &[]);
    state.apply(&mut store, &[&v2]).unwrap();
    assert_eq!(
        entries(&mut store, &instance),
        vec![
            vec![Some(1), None],
            vec![None, Some(2), Some(1), Some(1)],
            vec![None],
        ]
    );
    // The restore is the base: the next delta (version 3) follows the version-2 snapshot.
    let delta = capture(&mut store, &state, true);
    let v2_id = snapshot::decode(&v2).unwrap().id;
    assert_eq!(
        snapshot::decode(&delta).unwrap().lineage,
        Lineage::Delta { parent: v2_id }
    );
    let (mut fresh_store, fresh, fresh_state) = start_module(TABLES_WAT, IDENTITY);
    run(&mut fresh_store, &fresh, "fill", &[]);
    fresh_state.apply(&mut fresh_store, &[&v2, &delta]).unwrap();
    assert_eq!(
        entries(&mut fresh_store, &fresh),
        entries(&mut store, &instance)
    );
    // And a chain of version-2 snapshots: tables other than 0 are left alone.
    run(&mut store, &instance, "fill", &[]);
    let v2_delta = snapshot::test_support::as_version_2(&delta, Some(v2_id));
    let (mut other_store, other, other_state) = start_module(TABLES_WAT, IDENTITY);
    other_state
        .apply(&mut other_store, &[&v2, &v2_delta])
        .unwrap();
    assert_eq!(
        entries(&mut other_store, &other),
        vec![
            vec![Some(1), None],
            vec![Some(40), None, None, None],
            vec![None],
        ]
    );
}

/// A non-null externref cannot be represented: refused, never lost.
#[test]
fn a_non_null_externref_entry_is_unsnapshottable() {
    let (mut store, instance, state) = start_module(TABLES_WAT, IDENTITY);
    let table = instance
        .exports
        .get_table(&crate::prepare::table_export_name(3))
        .unwrap()
        .clone();
    let extern_ref = wasmer::ExternRef::new(&mut store, 5u32);
    table
        .set(&mut store, 0, Value::ExternRef(Some(extern_ref)))
        .unwrap();
    assert!(matches!(
        state.capture(&mut store, false, |len| Some(vec![0; len])),
        Err(StateError::Unsnapshottable("table", 0))
    ));
    table.set(&mut store, 0, Value::ExternRef(None)).unwrap();
    capture(&mut store, &state, false);
}

/// A snapshot whose tables are not the instance's is another module's.
#[test]
fn a_snapshot_of_other_tables_is_a_mismatch() {
    let (mut store, _instance, state) = start_module(TABLES_WAT, IDENTITY);
    let full = capture(&mut store, &state, false);
    let (mut other_store, _other, other_state) =
        start_module("(module (table 2 funcref))", IDENTITY);
    assert!(matches!(
        other_state.apply(&mut other_store, &[&full]),
        Err(StateError::Snapshot(snapshot::SnapshotError::Mismatch(_)))
    ));
    let theirs = capture(&mut other_store, &other_state, false);
    assert!(matches!(
        state.apply(&mut store, &[&theirs]),
        Err(StateError::Snapshot(snapshot::SnapshotError::Mismatch(_)))
    ));
}

/// An active segment at an offset the host does not evaluate (an extended constant): its
/// functions are found all the same (preparation exports them), in any table.
#[test]
fn active_segments_at_computed_offsets_are_captured() {
    let wat = r#"
(module
  (table 2 funcref)
  (table $t1 3 funcref)
  (elem (table $t1) (offset (i32.add (i32.const 1) (i32.const 1))) func $a)
  (func $a (result i32) (i32.const 10))
  (func (export "entry") (param i32) (result i32)
    (call_indirect $t1 (result i32) (local.get 0))))
"#;
    let (mut store, instance, state) = start_module(wat, IDENTITY);
    let full = capture(&mut store, &state, false);
    let (mut fresh_store, fresh, fresh_state) = start_module(wat, IDENTITY);
    fresh_state.apply(&mut fresh_store, &[&full]).unwrap();
    assert_eq!(run(&mut fresh_store, &fresh, "entry", &[2]), 10);
    assert_eq!(run(&mut store, &instance, "entry", &[2]), 10);
}

/// Without a shared base (no room for a fresh instance), the image is made against a bare
/// one: every page that is not zeros, and the state still comes back whole.
#[test]
fn an_image_against_a_bare_base_revives_too() {
    let (mut store, instance, state) = start();
    run(&mut store, &instance, "poke", &[100, 42]);
    run(&mut store, &instance, "set_g", &[9]);
    run(&mut store, &instance, "set_entry", &[]);
    let base = state.bare_base(&mut store).unwrap();
    let image = state.hibernate(&mut store, base).unwrap();
    let engine = crate::engine::engine();
    let module = Module::new(engine, prepare_wat(WAT).wasm).unwrap();
    let mut store = Store::new(engine.clone());
    let imports = with_check(&mut store, wasmer::imports! {});
    let instance = Instance::new(&mut store, &module, &imports).unwrap();
    let state = StateAccess::new(&mut store, &module, &instance, IDENTITY, Policy::Digests);
    state.revive(&mut store, &image, None).unwrap();
    assert_eq!(run(&mut store, &instance, "peek", &[100]), 42);
    assert_eq!(run(&mut store, &instance, "get_g", &[]), 9);
    assert_eq!(run(&mut store, &instance, "call_entry", &[]), 2);
}

/// A fresh instantiation, without the start function (as a revival makes it), and the
/// zero pages of its memory.
fn instantiate_for_revival(
    policy: Policy,
) -> (Store, Instance, StateAccess, super::zero_pages::ZeroPages) {
    let engine = crate::engine::engine();
    let module = Module::new(engine, prepare_wat(WAT).wasm).unwrap();
    let mut store = Store::new(engine.clone());
    let imports = with_check(&mut store, wasmer::imports! {});
    let instance = Instance::new(&mut store, &module, &imports).unwrap();
    let state = StateAccess::new(&mut store, &module, &instance, IDENTITY, policy);
    let memory = instance.exports.get_memory("__hb_beamr_memory").unwrap();
    let fresh = super::zero_pages::ZeroPages::of(&memory.view(&store).copy_to_vec().unwrap());
    (store, instance, state, fresh)
}

/// Memory's pages the process holds privately (written since the base file was mapped).
#[cfg(target_os = "linux")]
fn own_pages(store: &Store, instance: &Instance, state: &StateAccess) -> Vec<usize> {
    let memory = instance.exports.get_memory("__hb_beamr_memory").unwrap();
    let view = memory.view(store);
    // SAFETY: no wasm runs; the slice is only read here.
    let bytes = unsafe { view.data_unchecked() };
    let file_len = state.mapped_file(bytes).map_or(0, |m| m.len);
    let touched = super::resident::touched_pages(bytes, file_len).unwrap();
    (0..touched.len()).filter(|&p| touched[p]).collect()
}

/// Instances restored from a base share its memory file: only the pages each writes
/// become its own, hibernation finds exactly those, and revival maps the file again.
#[cfg(target_os = "linux")]
#[test]
fn a_restore_from_a_base_shares_its_pages_until_they_are_written() {
    let (mut store, instance, state) = start();
    for page in [0, 3, 9, 15] {
        run(&mut store, &instance, "poke", &[page * 4096 + 10, page + 1]);
    }
    let full = capture(&mut store, &state, false);
    let base = std::sync::Arc::new(super::base::Base::new(Box::new(full.clone())).unwrap());
    drop((store, instance, state));

    let (mut first, first_instance, first_state) = start();
    let (mut second, second_instance, second_state) = start();
    for (store, state) in [(&mut first, &first_state), (&mut second, &second_state)] {
        state
            .apply_known(store, &[&full], None, Some(&base))
            .unwrap();
        assert!(state.mapped.get().is_some(), "the base's file is mapped");
    }
    assert_eq!(
        own_pages(&first, &first_instance, &first_state),
        Vec::<usize>::new()
    );
    run(&mut first, &first_instance, "poke", &[3 * 4096 + 11, 77]);
    assert_eq!(own_pages(&first, &first_instance, &first_state), [3]);
    for page in [0, 3, 9, 15] {
        let at = page * 4096 + 10;
        assert_eq!(run(&mut second, &second_instance, "peek", &[at]), page + 1);
        assert_eq!(run(&mut first, &first_instance, "peek", &[at]), page + 1);
    }
    assert_eq!(
        run(&mut second, &second_instance, "peek", &[3 * 4096 + 11]),
        0
    );

    // The image holds the one page written (as few bytes as an unchanged state's).
    let untouched = second_state.hibernate(&mut second, base.clone()).unwrap();
    let image = first_state.hibernate(&mut first, base.clone()).unwrap();
    assert!(
        image.bytes() < untouched.bytes() + 200,
        "{} bytes",
        image.bytes()
    );
    drop((first, first_instance, first_state));
    let (mut store, instance, state, fresh) = instantiate_for_revival(Policy::Digests);
    state.revive(&mut store, &image, Some(&fresh)).unwrap();
    assert_eq!(own_pages(&store, &instance, &state), [3]);
    assert_eq!(run(&mut store, &instance, "peek", &[3 * 4096 + 11]), 77);
    assert_eq!(run(&mut store, &instance, "peek", &[15 * 4096 + 10]), 16);
}

/// An instance whose memory maps one base's file hibernates against another base (the
/// module's fresh state): the pages it never wrote hold the first base's data, which the
/// image must hold.
#[cfg(target_os = "linux")]
#[test]
fn an_image_against_another_base_holds_the_mapped_pages() {
    let module_base = fresh_base();
    let (mut store, instance, state) = start();
    run(&mut store, &instance, "poke", &[5 * 4096, 55]);
    let full = capture(&mut store, &state, false);
    let restored = std::sync::Arc::new(super::base::Base::new(Box::new(full.clone())).unwrap());
    let (mut store, instance, state) = start();
    state
        .apply_known(&mut store, &[&full], None, Some(&restored))
        .unwrap();
    assert!(state.mapped.get().is_some());
    run(&mut store, &instance, "poke", &[6 * 4096, 66]);
    let image = state.hibernate(&mut store, module_base).unwrap();
    drop((store, instance, state));
    let (mut store, instance, state, fresh) = instantiate_for_revival(Policy::Auto);
    state.revive(&mut store, &image, Some(&fresh)).unwrap();
    assert_eq!(run(&mut store, &instance, "peek", &[5 * 4096]), 55);
    assert_eq!(run(&mut store, &instance, "peek", &[6 * 4096]), 66);
}
