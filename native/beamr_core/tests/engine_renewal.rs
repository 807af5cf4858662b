//! A panic inside wasmer's compiler poisons the engine's internal lock, after which every
//! compilation with it would panic: `compile` must replace the engine so one odd module
//! cannot disable compilation for the rest of the process. (Its own test binary: it breaks
//! the shared engine on purpose.)

use std::panic::{catch_unwind, AssertUnwindSafe};

use beamr_core::compile::{compile, CompileError};
use beamr_core::engine::{engine_for, EngineKind};
use beamr_core::prepare::{interrupt, PrepareOptions};
use wasmer::{imports, Instance, Module, Store, Value};

/// wasmer 7.4.2's Cranelift panics on an exnref read from a global (preparation refuses
/// such modules, so this goes to wasmer directly).
const CRANELIFT_PANIC: &str =
    "(module (global exnref (ref.null exn)) (func (local exnref) (local.set 0 (global.get 0))))";

fn answer(n: i32) -> String {
    format!(r#"(module (func (export "answer") (result i32) (i32.const {n})))"#)
}

fn run_answer(wat: &str) -> Result<Value, CompileError> {
    let compiled = compile(wat.as_bytes(), &PrepareOptions::default())?;
    let mut store = Store::new(compiled.engine().clone());
    let check = interrupt::unlimited_check(&mut store);
    let imports = imports! { interrupt::CHECK_MODULE => { interrupt::CHECK_NAME => check } };
    let instance = Instance::new(&mut store, &compiled.module, &imports).expect("instantiates");
    Ok(instance
        .exports
        .get_function("answer")
        .unwrap()
        .call(&mut store, &[])
        .unwrap()[0]
        .clone())
}

#[test]
fn a_compiler_panic_does_not_disable_compilation() {
    assert_eq!(run_answer(&answer(1)).unwrap(), Value::I32(1));
    let wasm = wat::parse_str(CRANELIFT_PANIC).unwrap();
    let poisoned = engine_for(EngineKind::Default);
    assert!(
        catch_unwind(AssertUnwindSafe(|| Module::new(poisoned, &wasm))).is_err(),
        "wasmer no longer panics"
    );
    // The engine is poisoned now: any compilation with it panics inside wasmer.
    assert!(catch_unwind(AssertUnwindSafe(|| Module::new(
        poisoned,
        wat::parse_str(answer(9)).unwrap()
    )))
    .is_err());
    // `compile` replaces it and tries again; modules cached before are recompiled.
    assert_eq!(run_answer(&answer(2)).unwrap(), Value::I32(2));
    assert!(!std::ptr::eq(poisoned, engine_for(EngineKind::Default)));
    assert_eq!(run_answer(&answer(1)).unwrap(), Value::I32(1));
}
