use super::super::test_support::fixture;
use super::super::wasmer_features;
use super::*;
use std::time::Instant;
use wasmer::{imports, Instance, Module, RuntimeError, Store, Value};
use wasmparser::{Validator, WasmFeatures};

/// Translates WAT that uses legacy exceptions and checks the result is valid for wasmer.
fn translate(wat: &str) -> Vec<u8> {
    let wasm = wat::parse_str(wat).unwrap();
    let translated = translate_legacy_exceptions(&wasm)
        .unwrap()
        .expect("nothing translated");
    if let Err(e) = Validator::new_with_features(wasmer_features()).validate_all(&translated) {
        panic!("translation is invalid: {e}");
    }
    translated
}

struct Running {
    store: Store,
    instance: Instance,
}

impl Running {
    fn new(wat: &str) -> Running {
        let engine = crate::engine::engine();
        let module = Module::new(engine, translate(wat)).unwrap();
        let mut store = Store::new(engine.clone());
        let imports = crate::prepare::test_support::with_check(&mut store, imports! {});
        let instance =
            crate::prepare::instantiate_with_start(&mut store, &module, &imports).unwrap();
        Running { store, instance }
    }

    fn call(&mut self, name: &str, args: &[Value]) -> Result<Box<[Value]>, RuntimeError> {
        self.instance
            .exports
            .get_function(name)
            .unwrap()
            .call(&mut self.store, args)
    }

    fn i32s(&mut self, name: &str, args: &[i32]) -> Vec<i32> {
        let args: Vec<Value> = args.iter().map(|&a| Value::I32(a)).collect();
        let results = self
            .call(name, &args)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        results.iter().map(|v| v.unwrap_i32()).collect()
    }

    fn i32(&mut self, name: &str, args: &[i32]) -> i32 {
        self.i32s(name, args)[0]
    }

    fn exception(&mut self, name: &str, args: &[i32]) -> RuntimeError {
        let args: Vec<Value> = args.iter().map(|&a| Value::I32(a)).collect();
        let error = self.call(name, &args).expect_err("expected an exception");
        assert!(
            error.is_exception(),
            "{name}: expected an exception, got {error}"
        );
        error
    }
}

#[test]
fn wat_parses_the_flat_legacy_form() {
    let wasm = wat::parse_str(
        "(module (tag $e) (func try throw $e catch $e catch_all end try delegate 0))",
    )
    .unwrap();
    let legacy = wasmer_features() | WasmFeatures::LEGACY_EXCEPTIONS;
    Validator::new_with_features(legacy)
        .validate_all(&wasm)
        .unwrap();
    assert!(Validator::new_with_features(wasmer_features())
        .validate_all(&wasm)
        .is_err());
}

#[test]
fn module_without_legacy_exceptions_is_left_alone() {
    let plain = wat::parse_str("(module (func (export \"f\") (result i32) i32.const 1))").unwrap();
    assert_eq!(translate_legacy_exceptions(&plain).unwrap(), None);
    let exnref =
        wat::parse_str("(module (tag $e) (func (block $h (try_table (catch_all $h) (throw $e)))))")
            .unwrap();
    assert_eq!(translate_legacy_exceptions(&exnref).unwrap(), None);
}

#[test]
fn catch_receives_the_payload_of_its_tag() {
    let mut m = Running::new(
        r#"(module
          (tag $a (param i32))
          (tag $b (param i32 i64))
          (func $throw (param i32)
            local.get 0
            i32.const 10
            i32.lt_u
            if
              local.get 0
              throw $a
            end
            local.get 0
            i64.const 1000
            throw $b)
          (func (export "f") (param i32) (result i32)
            try (result i32)
              local.get 0
              call $throw
              i32.const -1
            catch $a
              i32.const 100
              i32.add
            catch $b
              i32.wrap_i64
              i32.add
            end))"#,
    );
    assert_eq!(m.i32("f", &[3]), 103);
    assert_eq!(m.i32("f", &[20]), 1020);
}

#[test]
fn catch_all_takes_what_the_tag_clauses_do_not() {
    let mut m = Running::new(
        r#"(module
          (tag $a) (tag $b (param f64))
          (func (export "f") (param i32) (result i32)
            try (result i32)
              local.get 0
              if
                f64.const 1.5
                throw $b
              end
              throw $a
            catch $a
              i32.const 1
            catch_all
              i32.const 2
            end)
          (func (export "unreachable") (result i32)
            try (result i32)
              unreachable
            catch_all
              i32.const 2
            end))"#,
    );
    assert_eq!(m.i32("f", &[0]), 1);
    assert_eq!(m.i32("f", &[1]), 2);
    // Traps are not exceptions: catch_all does not see them.
    let error = m.call("unreachable", &[]).unwrap_err();
    assert!(!error.is_exception(), "{error}");
}

#[test]
fn rethrow_rethrows_the_caught_exception() {
    let mut m = Running::new(
        r#"(module
          (tag $e (param i32))
          (tag $other)
          ;; Rethrows from a catch body, from a block nested in it, and from a try nested
          ;; in it (to the outer exception, not the inner one).
          (func $rethrower (param i32)
            try
              local.get 0
              throw $e
            catch $e
              drop
              local.get 0
              i32.const 1
              i32.eq
              if
                rethrow 1
              end
              block $b
                local.get 0
                i32.const 2
                i32.eq
                br_if $b
                try
                  throw $other
                catch_all
                  local.get 0
                  i32.const 3
                  i32.eq
                  if
                    rethrow 3
                  end
                  rethrow 0
                end
              end
              rethrow 0
            end)
          (func (export "f") (param i32) (result i32)
            try (result i32)
              local.get 0
              call $rethrower
              i32.const -1
            catch $e
              i32.const 100
              i32.add
            catch $other
              i32.const -2
            end)
          (func (export "uncaught") (param i32)
            try
              local.get 0
              throw $e
            catch_all
              rethrow 0
            end))"#,
    );
    assert_eq!(m.i32("f", &[1]), 101);
    assert_eq!(m.i32("f", &[2]), 102);
    assert_eq!(m.i32("f", &[3]), 103);
    assert_eq!(m.i32("f", &[4]), -2);
    m.exception("uncaught", &[5]);
}

#[test]
fn delegate_goes_to_the_target_try_or_the_caller() {
    let mut m = Running::new(
        r#"(module
          (tag $e)
          (func (export "to-outer-try") (result i32)
            try (result i32)
              try (result i32)
                try (result i32)
                  throw $e
                delegate 1
              catch $e
                i32.const 2   ;; skipped by the delegate
              end
            catch $e
              i32.const 3
            end)
          (func (export "to-block") (result i32)
            try (result i32)
              block
                try
                  throw $e
                delegate 0
              end
              i32.const 0
            catch_all
              i32.const 1
            end)
          ;; A try in its catch clause no longer handles: the exception goes further out.
          (func (export "to-catching-try") (result i32)
            try (result i32)
              try
                throw $e
              catch $e
                try
                  rethrow 1
                delegate 0
              end
              i32.const 0
            catch_all
              i32.const 4
            end)
          (func $to-caller (param i32) (result i32)
            try (result i32)
              try (result i32)
                local.get 0
                if
                  throw $e
                end
                i32.const 7
              delegate 1
            catch_all
              i32.const 8   ;; skipped: delegate 1 is the function's label
            end)
          (func (export "caller") (param i32) (result i32)
            try (result i32)
              local.get 0
              call $to-caller
            catch $e
              i32.const 5
            end)
          (func (export "uncaught") (param i32) (result i32)
            local.get 0
            call $to-caller)
          (func (export "no-throw") (result i32)
            try (result i32)
              try (result i32)
                i32.const 6
              delegate 0
            catch_all
              i32.const 0
            end))"#,
    );
    assert_eq!(m.i32("to-outer-try", &[]), 3);
    assert_eq!(m.i32("to-block", &[]), 1);
    assert_eq!(m.i32("to-catching-try", &[]), 4);
    assert_eq!(m.i32("caller", &[0]), 7);
    assert_eq!(m.i32("caller", &[1]), 5);
    assert_eq!(m.i32("uncaught", &[0]), 7);
    m.exception("uncaught", &[1]);
    assert_eq!(m.i32("no-throw", &[]), 6);
}

#[test]
fn legacy_and_standard_forms_mix() {
    let mut m = Running::new(
        r#"(module
          (tag $e (param i32))
          (func (export "delegate-to-try-table") (result i32)
            block $caught (result i32)
              try_table (catch $e $caught)
                try
                  i32.const 7
                  throw $e
                delegate 0
              end
              i32.const 0
              return
            end)
          (func (export "branch-from-catch") (result i32)
            block $out (result i32)
              block $caught (result i32 exnref)
                try_table (catch_ref $e $caught)
                  try
                    i32.const 8
                    throw $e
                  catch $e
                    br $out
                  end
                end
                unreachable
              end
              throw_ref
            end))"#,
    );
    assert_eq!(m.i32("delegate-to-try-table", &[]), 7);
    assert_eq!(m.i32("branch-from-catch", &[]), 8);
}

#[test]
fn try_with_params_and_multiple_results() {
    let mut m = Running::new(
        r#"(module
          (type $pair (func (param i32 i32) (result i32 i32)))
          (tag $e (param i32 i32))
          (func (export "f") (param i32 i32 i32) (result i32 i32)
            local.get 0
            local.get 1
            try (type $pair)
              local.get 2
              if (param i32 i32) (result i32 i32)
                throw $e
              end
              i32.add
              i32.const 0
            catch $e
              i32.mul
              i32.const 1
            catch_all
              i32.const -1
              i32.const -1
            end)
          (func (export "delegating") (param i32 i32) (result i32 i32)
            local.get 0
            local.get 1
            try (type $pair)
              try (type $pair)
                throw $e
              delegate 0
            catch $e
              i32.sub
              i32.const 2
            end)
          (func (export "catchless") (param i32 i32) (result i32 i32)
            local.get 0
            local.get 1
            try (type $pair)
            end))"#,
    );
    assert_eq!(m.i32s("f", &[6, 7, 0]), [13, 0]);
    assert_eq!(m.i32s("f", &[6, 7, 1]), [42, 1]);
    assert_eq!(m.i32s("delegating", &[9, 4]), [5, 2]);
    assert_eq!(m.i32s("catchless", &[9, 4]), [9, 4]);
}

#[test]
fn branches_out_of_try_bodies_and_catch_clauses() {
    let mut m = Running::new(
        r#"(module
          (tag $e (param i32))
          (func (export "f") (param i32) (result i32)
            (local $i i32)
            block $out (result i32)
              loop $again
                try (result i32)
                  local.get $i
                  i32.const 1
                  i32.add
                  local.set $i
                  ;; 0: leave from the body; otherwise the body throws
                  local.get 0
                  i32.eqz
                  if
                    i32.const 10
                    br $out
                  end
                  local.get $i
                  throw $e
                catch $e
                  i32.const 3
                  i32.lt_u
                  br_if $again
                  local.get $i
                  i32.const 100
                  i32.add
                  ;; 1: to the try's label; otherwise out
                  local.get 0
                  i32.const 1
                  i32.sub
                  br_table 0 $out
                end
                i32.const 1000
                i32.add
                br $out
              end
              unreachable
            end)
          (func (export "to-try-label") (param i32) (result i32)
            try (result i32)
              i32.const 1
              local.get 0
              br_if 0
              drop
              i32.const 2
              local.get 0
              throw $e
            catch $e
              i32.const 3
              i32.add
              br 0
            end
            i32.const 10
            i32.mul))"#,
    );
    assert_eq!(m.i32("f", &[0]), 10);
    assert_eq!(m.i32("f", &[1]), 1103);
    assert_eq!(m.i32("f", &[2]), 103);
    assert_eq!(m.i32("to-try-label", &[0]), 30);
    assert_eq!(m.i32("to-try-label", &[1]), 10);
}

#[test]
fn uncaught_exceptions_reach_the_host() {
    let mut m = Running::new(
        r#"(module
          (tag $a (param i32)) (tag $b)
          (func (export "f") (param i32)
            try
              local.get 0
              throw $a
            catch $b
            end))"#,
    );
    m.exception("f", &[1]);
}

#[test]
fn aos_module_translates_quickly_to_a_valid_module() {
    let Some(wasm) = fixture("aos-2-pure-xs.wasm") else {
        return;
    };
    let started = Instant::now();
    let translated = translate_legacy_exceptions(&wasm)
        .unwrap()
        .expect("aos uses legacy EH");
    eprintln!("translated aos-2-pure-xs.wasm in {:?}", started.elapsed());
    // The memory64 pass runs before this one in the pipeline; here it has not.
    Validator::new_with_features(wasmer_features() | WasmFeatures::MEMORY64)
        .validate_all(&translated)
        .unwrap();
}
