use super::super::test_support::{call, prepare_wat};
use super::costs::PAGE_BYTES;
use super::*;
use crate::prepare::TABLE_ENTRY_BYTES;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;
use wasmer::sys::vm::TrapCode;
use wasmer::{
    imports, Function, FunctionType, Instance, InstantiationError, Module as WasmerModule,
    RuntimeError, Store, Type, Value,
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
) -> (
    Store,
    Result<Instance, InstantiationError>,
    Arc<AtomicU32>,
    Arc<AtomicI64>,
) {
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
    let instance = crate::prepare::instantiate_with_start(&mut store, &module, &imports);
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

#[test]
fn every_throw_first_calls_the_check_with_the_throw_signal() {
    let wat = r#"(module
        (tag $e (param i32))
        (func (export "throw_caught") (param $n i32) (result i32)
            (local $caught i32)
            (block $done (loop $l
                (br_if $done (i32.eqz (local.get $n)))
                (block $handler (result i32)
                    (try_table (catch $e $handler) (throw $e (local.get $n)))
                    (i32.const 0))
                (local.set $caught (i32.add (local.get $caught)))
                (local.set $n (i32.sub (local.get $n) (i32.const 1)))
                (br $l)))
            (local.get $caught)))"#;
    // A slice large enough that no charge runs out: every check call is a throw's.
    let (mut store, instance, calls, overdrafts) =
        build_with_overdrafts(wat, 1 << 40, u32::MAX, |_, _| {});
    let instance = instance.unwrap();
    let set = instance.exports.get_global(FUEL_EXPORT).unwrap();
    set.set(&mut store, Value::I64(1 << 40)).unwrap();
    let throw_caught = instance.exports.get_function("throw_caught").unwrap();
    assert_eq!(
        throw_caught.call(&mut store, &[Value::I32(5)]).unwrap()[0],
        Value::I32(15)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(
        overdrafts.load(Ordering::SeqCst),
        THROW_SIGNAL.wrapping_mul(5)
    );
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

/// The fuel one call of `name` uses, granted `slice` at a time.
fn used(wat: &str, slice: i64, name: &str, args: &[Value]) -> (i64, Box<[Value]>) {
    let (mut store, instance, calls, overdrafts) =
        build_with_overdrafts(wat, slice, u32::MAX, |_, _| {});
    let instance = instance.unwrap();
    instance
        .exports
        .get_global(FUEL_EXPORT)
        .unwrap()
        .set(&mut store, Value::I64(slice))
        .unwrap();
    let results = instance
        .exports
        .get_function(name)
        .unwrap()
        .call(&mut store, args)
        .unwrap();
    let checks = calls.load(Ordering::SeqCst) as i64;
    // Each slice granted, used down to its overdraft (or, the last, to what is left).
    let used =
        slice * (1 + checks) - overdrafts.load(Ordering::SeqCst) - fuel(&mut store, &instance);
    (used, results)
}

#[test]
fn fuel_used_is_exact_and_independent_of_the_slice() {
    // Per call: entry region (`local.get $i` + `end` + the loop operator itself = 3) and
    // per iteration the loop body (14 operators), plus the exit iteration.
    let used = |slice: i64, n: i32| {
        let (used, results) = used(SPIN, slice, "count", &[Value::I32(n)]);
        assert_eq!(results[0], Value::I32(n));
        used
    };
    let reference = used(1 << 40, 1000);
    assert_eq!(used(7, 1000), reference);
    assert_eq!(used(100, 1000), reference);
    assert_eq!(
        used(1 << 40, 2000) - reference,
        1000 * (used(1 << 40, 1) - used(1 << 40, 0))
    );
    assert!(
        reference > 1000 * 5,
        "each iteration costs its operators: {reference}"
    );
}

const BULK: &str = r#"(module
    (memory 1)
    (table $t 100 funcref)
    (data $d "0123456789")
    (elem $e func $f $f $f $f)
    (func $f)
    (func (export "memory.fill") (param $n i32) (memory.fill (i32.const 0) (i32.const 1)
      (local.get $n)))
    (func (export "memory.copy") (param $n i32) (memory.copy (i32.const 100) (i32.const 0)
      (local.get $n)))
    (func (export "memory.init") (param $n i32) (memory.init $d (i32.const 0) (i32.const 0)
      (local.get $n)))
    (func (export "table.fill") (param $n i32) (table.fill $t (i32.const 0) (ref.func $f)
      (local.get $n)))
    (func (export "table.copy") (param $n i32) (table.copy $t $t (i32.const 50)
      (i32.const 0) (local.get $n)))
    (func (export "table.init") (param $n i32) (table.init $t $e (i32.const 0) (i32.const 0)
      (local.get $n)))
    (func (export "read") (result i32) (i32.load8_u (i32.const 0))))"#;

#[test]
fn bulk_operations_cost_their_length_exactly() {
    for (name, length, per_item) in [
        ("memory.fill", 60_000, MEMORY_UNITS_PER_BYTE),
        ("memory.copy", 60_000, MEMORY_UNITS_PER_BYTE),
        ("memory.init", 10, MEMORY_UNITS_PER_BYTE),
        ("table.fill", 50, TABLE_UNITS_PER_ELEMENT),
        ("table.copy", 50, TABLE_UNITS_PER_ELEMENT),
        ("table.init", 4, TABLE_UNITS_PER_ELEMENT),
    ] {
        let used = |slice: i64, n: i32| used(BULK, slice, name, &[Value::I32(n)]).0;
        let empty = used(1 << 40, 0);
        assert!(empty > BULK_COST as i64, "{name}: {empty}");
        for n in [1, length] {
            let expected = empty + i64::from(n) * per_item as i64;
            assert_eq!(used(1 << 40, n), expected, "{name} of {n}");
            assert_eq!(used(7, n), expected, "{name} of {n}, in slices of 7");
        }
    }
}

/// The length is charged before the operation: one the fuel (and so the gas budget)
/// cannot pay for never runs, and a stop or deadline is noticed before it does.
#[test]
fn a_bulk_operation_is_paid_for_before_it_runs() {
    let (mut store, instance, calls) = instantiate_counting(BULK, 1000, 1, |_, _| {});
    let fuel = instance.exports.get_global(FUEL_EXPORT).unwrap();
    fuel.set(&mut store, Value::I64(1000)).unwrap();
    let fill = instance.exports.get_function("memory.fill").unwrap();
    assert_eq!(
        fill.call(&mut store, &[Value::I32(60_000)])
            .unwrap_err()
            .message(),
        "interrupted"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    fuel.set(&mut store, Value::I64(1000)).unwrap();
    let read = instance.exports.get_function("read").unwrap();
    assert_eq!(read.call(&mut store, &[]).unwrap()[0], Value::I32(0));
}

/// `instrument` alone, with the growth budget given, and a check that never interrupts.
fn instantiate_instrumented(wat: &str, budget: u64) -> (Store, Instance) {
    let wasm = instrument(&wat::parse_str(wat).unwrap(), budget)
        .unwrap()
        .unwrap();
    let engine = crate::engine::engine();
    let module = WasmerModule::new(engine, wasm).unwrap();
    let mut store = Store::new(engine.clone());
    let imports = super::super::test_support::with_check(&mut store, imports! {});
    let instance = crate::prepare::instantiate_with_start(&mut store, &module, &imports).unwrap();
    (store, instance)
}

const WAITS: &str = r#"(module
    (memory $shared 1 1 shared)
    (memory $own 1)
    (func (export "wait32") (param i32 i32 i64) (result i32)
        (memory.atomic.wait32 $shared (local.get 0) (local.get 1) (local.get 2)))
    (func (export "wait32_offset") (param i32 i32 i64) (result i32)
        (memory.atomic.wait32 $shared offset=8 (local.get 0) (local.get 1) (local.get 2)))
    (func (export "wait64") (param i32 i64 i64) (result i32)
        (memory.atomic.wait64 $shared (local.get 0) (local.get 1) (local.get 2)))
    (func (export "wait32_unshared") (param i32 i32 i64) (result i32)
        (memory.atomic.wait32 $own (local.get 0) (local.get 1) (local.get 2)))
    (func (export "notify") (param i32 i32) (result i32)
        (memory.atomic.notify $shared (local.get 0) (local.get 1)))
    (func (export "store") (param i32 i64) (i64.store $shared (local.get 0) (local.get 1))))"#;

/// A call's answer, or its trap (the two codes of a misaligned access as one).
fn outcome(result: Result<Box<[Value]>, RuntimeError>) -> Result<Value, Option<TrapCode>> {
    match result {
        Ok(results) => Ok(results[0].clone()),
        Err(error) => Err(error.to_trap().map(|code| match code {
            TrapCode::HeapMisaligned => TrapCode::UnalignedAtomic,
            code => code,
        })),
    }
}

#[test]
fn atomic_waits_answer_at_once_and_trap_instead_of_blocking_for_ever() {
    let (mut store, instance) = instantiate_instrumented(WAITS, u64::MAX);
    call(
        &mut store,
        &instance,
        "store",
        &[Value::I32(8), Value::I64(5)],
    )
    .unwrap();
    let mut run = |name: &str, args: &[Value]| outcome(call(&mut store, &instance, name, args));
    let wait32 = |address: i32, expected: i32, timeout: i64| {
        [
            Value::I32(address),
            Value::I32(expected),
            Value::I64(timeout),
        ]
    };
    let wait64 = |address: i32, expected: i64, timeout: i64| {
        [
            Value::I32(address),
            Value::I64(expected),
            Value::I64(timeout),
        ]
    };
    // Not equal: 1. Equal with a timeout, however long: 2 at once. Equal for ever: a trap.
    assert_eq!(run("wait32", &wait32(8, 4, -1)), Ok(Value::I32(1)));
    assert_eq!(run("wait32", &wait32(8, 5, 0)), Ok(Value::I32(2)));
    assert_eq!(run("wait32", &wait32(8, 5, i64::MAX)), Ok(Value::I32(2)));
    assert_eq!(
        run("wait32", &wait32(8, 5, -1)),
        Err(Some(TrapCode::UnreachableCodeReached))
    );
    assert_eq!(
        run("wait32_offset", &wait32(0, 5, i64::MAX)),
        Ok(Value::I32(2))
    );
    assert_eq!(run("wait64", &wait64(8, 6, -1)), Ok(Value::I32(1)));
    assert_eq!(run("wait64", &wait64(8, 5, i64::MAX)), Ok(Value::I32(2)));
    assert_eq!(
        run("wait64", &wait64(8, 5, i64::MIN)),
        Err(Some(TrapCode::UnreachableCodeReached))
    );
    // An unshared memory: wasmer traps whenever the value is equal.
    assert_eq!(run("wait32_unshared", &wait32(0, 1, -1)), Ok(Value::I32(1)));
    assert!(run("wait32_unshared", &wait32(0, 0, 0)).is_err());
}

/// Where no thread could block, the rewritten waits do what wasmer's own do: the same
/// answers and the same traps out of bounds and misaligned; notify wakes no one. (An
/// address both misaligned and out of bounds traps too, but the atomic load reports the
/// misalignment where wasmer's wait reported the bounds.)
#[test]
fn atomic_waits_keep_wasmer_traps_and_answers() {
    let raw = WasmerModule::new(crate::engine::engine(), wat::parse_str(WAITS).unwrap()).unwrap();
    let mut raw_store = Store::new(crate::engine::engine().clone());
    let raw_instance =
        crate::prepare::instantiate_with_start(&mut raw_store, &raw, &imports! {}).unwrap();
    let (mut store, instance) = instantiate_instrumented(WAITS, u64::MAX);
    let beyond = 65536;
    for (name, args) in [
        ("wait32", [Value::I32(8), Value::I32(1), Value::I64(-1)]),
        ("wait32", [Value::I32(2), Value::I32(0), Value::I64(-1)]),
        (
            "wait32",
            [Value::I32(beyond), Value::I32(0), Value::I64(-1)],
        ),
        (
            "wait32_offset",
            [Value::I32(beyond - 8), Value::I32(0), Value::I64(-1)],
        ),
        (
            "wait32_offset",
            [Value::I32(-8), Value::I32(0), Value::I64(-1)],
        ),
        ("wait64", [Value::I32(4), Value::I64(0), Value::I64(-1)]),
        (
            "wait64",
            [Value::I32(beyond - 8), Value::I64(1), Value::I64(-1)],
        ),
        (
            "wait64",
            [Value::I32(beyond), Value::I64(0), Value::I64(-1)],
        ),
        ("wait64", [Value::I32(0), Value::I64(1), Value::I64(-1)]),
        (
            "wait32_unshared",
            [Value::I32(3), Value::I32(0), Value::I64(-1)],
        ),
        (
            "wait32_unshared",
            [Value::I32(beyond), Value::I32(0), Value::I64(-1)],
        ),
    ] {
        let expected = outcome(call(&mut raw_store, &raw_instance, name, &args));
        assert_eq!(
            outcome(call(&mut store, &instance, name, &args)),
            expected,
            "{name} {args:?}"
        );
    }
    let notify = [Value::I32(8), Value::I32(1)];
    assert_eq!(
        outcome(call(&mut store, &instance, "notify", &notify)),
        Ok(Value::I32(0))
    );
    assert_eq!(
        outcome(call(&mut raw_store, &raw_instance, "notify", &notify)),
        Ok(Value::I32(0))
    );
}

const GROWS: &str = r#"(module
    (memory $a 1)
    (memory $b 0)
    (table $f 0 funcref)
    (table $x 0 externref)
    (func $g)
    (elem declare func $g)
    (func (export "grow_a") (param i32) (result i32) (memory.grow $a (local.get 0)))
    (func (export "grow_b") (param i32) (result i32) (memory.grow $b (local.get 0)))
    (func (export "grow_f") (param i32) (result i32) (table.grow $f (ref.func $g)
      (local.get 0)))
    (func (export "grow_x") (param i32) (result i32) (table.grow $x (ref.null extern)
      (local.get 0)))
    (func (export "f_is_null") (param i32) (result i32) (ref.is_null (table.get $f
      (local.get 0)))))"#;

#[test]
fn growth_stays_within_the_budget_of_all_memories_and_tables() {
    let (mut store, instance) =
        instantiate_instrumented(GROWS, 3 * PAGE_BYTES + 10 * TABLE_ENTRY_BYTES);
    let mut grow =
        |name: &str, delta: i32| match call(&mut store, &instance, name, &[Value::I32(delta)]) {
            Ok(results) => results[0].unwrap_i32(),
            Err(error) => panic!("{name}({delta}): {error}"),
        };
    assert_eq!(grow("grow_b", 3), -1);
    assert_eq!(grow("grow_b", 2), 0);
    assert_eq!(grow("grow_f", 11), -1);
    assert_eq!(grow("grow_f", 6), 0);
    assert_eq!(grow("grow_x", 5), -1);
    assert_eq!(grow("grow_x", 4), 0);
    // Exactly at the budget: nothing more of any kind, but growing by 0 still answers.
    for name in ["grow_a", "grow_b", "grow_f", "grow_x"] {
        assert_eq!(grow(name, 1), -1, "{name}");
    }
    assert_eq!(grow("grow_a", 0), 1);
    assert_eq!(grow("grow_f", 0), 6);
    // A table grown with an initial element holds it.
    let is_null = call(&mut store, &instance, "f_is_null", &[Value::I32(5)]).unwrap();
    assert_eq!(is_null[0], Value::I32(0));
}

/// wasmer aborts the process when it cannot allocate a table (0xFFFFFFFA entries of
/// a table without maximum: 32 GiB); within a budget, such a grow answers -1.
#[test]
fn a_huge_grow_answers_minus_one() {
    let (mut store, instance) = instantiate_instrumented(GROWS, 4 << 30);
    for name in ["grow_f", "grow_x", "grow_a", "grow_b"] {
        let results = call(
            &mut store,
            &instance,
            name,
            &[Value::I32(0xFFFF_FFFAu32 as i32)],
        )
        .unwrap();
        assert_eq!(results[0], Value::I32(-1), "{name}");
    }
    let results = call(&mut store, &instance, "grow_f", &[Value::I32(1000)]).unwrap();
    assert_eq!(results[0], Value::I32(0));
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
                     (i32.add (call_indirect (result i32) (i32.const 1))
                       (global.get $started))))
        (func (export "ref_is_seven") (result i32)
            (ref.is_null (ref.func $seven))))"#;
    let (mut store, instance, _) =
        instantiate_counting(wat, 1 << 30, u32::MAX, |store, imports| {
            let ty = FunctionType::new([Type::I32], [Type::I32]);
            let twice = Function::new(store, ty, |args| {
                Ok(vec![Value::I32(args[0].unwrap_i32() * 2)])
            });
            imports.define("env", "twice", twice);
        });
    let run = instance.exports.get_function("run").unwrap();
    assert_eq!(
        run.call(&mut store, &[]).unwrap()[0],
        Value::I32(14 + 7 + 1)
    );
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
    assert!(instrument(&wasm, u64::MAX).unwrap().is_none());
}
