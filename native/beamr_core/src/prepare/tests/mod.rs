//! The pipeline's unit tests, and the generated-module tests (docs/testing.md, "Rust
//! suites"): wasm-smith robustness, memory64 twins, legacy exceptions.

mod generated_legacy_exceptions;
mod generated_memory64;
mod generated_smith;
mod smith_config;

use super::test_support::*;
use super::*;
use std::time::Instant;
use wasmer::{imports, Function, FunctionType, Module, Store, Type, Value};

#[test]
fn rejects_garbage_and_invalid_modules() {
    let opts = PrepareOptions::default();
    assert!(prepare(b"not wasm at all", &opts).is_err());
    assert!(prepare(&[], &opts).is_err());
    let wasm = wat::parse_str("(module (func (export \"f\") (result i32) i32.const 1))").unwrap();
    assert!(prepare(&wasm[..wasm.len() - 2], &opts).is_err());
    // Well-formed but ill-typed.
    let wasm = wat::parse_str("(module (func (result i32) i64.const 1))").unwrap();
    assert!(prepare(&wasm, &opts).is_err());
}

#[test]
fn leaves_a_plain_module_behaving_the_same() {
    let wat = r#"(module
        (memory (export "mem") 1)
        (data (i32.const 8) "\2a")
        (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0))))"#;
    let prepared = prepare_wat(wat);
    assert!(!prepared.memory64_lowered && !prepared.exceptions_translated);
    let (mut store, instance) = instantiate(wat);
    let loaded = call(&mut store, &instance, "load", &[Value::I32(8)]).unwrap();
    assert_eq!(loaded[0], Value::I32(42));
    assert!(instance.exports.get_memory("mem").is_ok());
    assert!(instance.exports.get_memory(MEMORY_EXPORT).is_ok());
}

/// Found by the wasm-smith harness (seed 1077): reading an exnref global or table into a
/// local made wasmer's Cranelift translator panic ("declared type of variable var0
/// doesn't match type of value v2"), which also poisoned the engine's lock.
#[test]
fn refuses_exnref_globals_and_tables_wasmer_cannot_compile() {
    let opts = PrepareOptions::default();
    for wat in [
        "(module (global exnref (ref.null exn)) (func (local exnref) (local.set 0 \
            (global.get 0))))",
        "(module (import \"m\" \"g\" (global exnref)) (func (local exnref) (local.set 0 \
            (global.get 0))))",
        "(module (table 1 exnref) (func (local exnref) (local.set 0 (table.get 0 (i32.const 0)))))",
        "(module (table i64 1 exnref))",
    ] {
        let error = prepare(&wat::parse_str(wat).unwrap(), &opts).unwrap_err();
        assert!(
            error.0.contains("exnref, which wasmer cannot compile"),
            "{wat}: {error}"
        );
    }
    // Exceptions caught into exnref locals are fine.
    let (mut store, instance) = instantiate(
        r#"(module (tag $t)
            (func (export "f") (local exnref)
                (local.set 0 (block (result exnref) (try_table (catch_all_ref 0)
                  (throw $t)) unreachable))))"#,
    );
    call(&mut store, &instance, "f", &[]).unwrap();
}

#[test]
fn deterministic_mode_refuses_threads_and_relaxed_simd() {
    let deterministic = PrepareOptions {
        deterministic: true,
        ..Default::default()
    };
    let shared = wat::parse_str("(module (memory 1 1 shared))").unwrap();
    let atomic =
        wat::parse_str("(module (memory 1) (func (result i32) (i32.atomic.load (i32.const 0))))")
            .unwrap();
    let relaxed = wat::parse_str(
        "(module (func (param v128 v128) (result v128) (f32x4.relaxed_min (local.get 0) \
            (local.get 1))))",
    )
    .unwrap();
    for wasm in [&shared, &atomic] {
        assert!(prepare(wasm, &PrepareOptions::default()).is_ok());
        let err = prepare(wasm, &deterministic).unwrap_err();
        assert!(err.0.contains("deterministic mode"), "{err}");
    }
    assert!(prepare(&relaxed, &deterministic).is_err());
    assert!(prepare(&relaxed, &PrepareOptions::default()).is_err());
    let plain =
        wat::parse_str("(module (func (result f32) (f32.div (f32.const 0) (f32.const 0))))")
            .unwrap();
    assert!(prepare(&plain, &deterministic).is_ok());
}

#[test]
fn reserved_names() {
    assert!(MEMORY_EXPORT.starts_with(RESERVED_EXPORT_PREFIX));
    assert!(TABLE_EXPORT.starts_with(RESERVED_EXPORT_PREFIX));
    assert_eq!(global_export_name(7), "__hb_beamr_global_7");
}

/// Issue 19, defect 18: a module that imported the check itself could call it with
/// any fuel (i64::MIN made `gas_used` report 9223372036854775810).
#[test]
fn refuses_imports_of_hb_beamrs_own_functions() {
    for wat in [
        r#"(module (import "__hb_beamr" "check" (func (param i64) (result i64))))"#,
        r#"(module (import "__hb_beamr" "anything" (global i32)))"#,
    ] {
        let error = prepare(&wat::parse_str(wat).unwrap(), &PrepareOptions::default()).unwrap_err();
        assert!(error.0.contains("__hb_beamr is reserved"), "{wat}: {error}");
    }
    // Names that only look alike are the module's own business.
    let wat =
        r#"(module (import "__hb_beamr_x" "check" (func)) (import "env" "__hb_beamr" (func)))"#;
    assert!(prepare(&wat::parse_str(wat).unwrap(), &PrepareOptions::default()).is_ok());
}

/// A module's own export under a reserved name is dropped, so it cannot stand in for
/// what the host looks up under that name.
#[test]
fn a_modules_reserved_export_names_do_not_reach_the_host() {
    let wat = r#"(module (memory 1) (memory $other 3)
        (global $g (mut i32) (i32.const 5))
        (export "__hb_beamr_memory" (memory $other))
        (export "__hb_beamr_fuel" (global $g))
        (func (export "__hb_beamr_table")))"#;
    let (store, instance) = instantiate(wat);
    assert_eq!(
        instance
            .exports
            .get_memory(MEMORY_EXPORT)
            .unwrap()
            .view(&store)
            .size()
            .0,
        1
    );
    assert!(instance.exports.get_function(TABLE_EXPORT).is_err());
    let fuel = instance.exports.get_global(interrupt::FUEL_EXPORT).unwrap();
    assert_eq!(fuel.ty(&store).ty, Type::I64);
}

fn with_exports(count: usize) -> Vec<u8> {
    let exports: String = (0..count)
        .map(|i| format!(r#"(export "f{i}" (func 0))"#))
        .collect();
    wat::parse_str(format!("(module (func) {exports})")).unwrap()
}

fn with_imports(count: usize) -> Vec<u8> {
    let imports: String = (0..count)
        .map(|i| format!(r#"(import "env" "f{i}" (func))"#))
        .collect();
    wat::parse_str(format!("(module {imports})")).unwrap()
}

/// Issue 19, defect 16: 100,000 exports of one function cost 56-97 MB per instance.
#[test]
fn refuses_more_imports_or_exports_than_the_bounds() {
    let opts = PrepareOptions::default();
    assert!(prepare(&with_exports(MAX_EXPORTS), &opts).is_ok());
    let error = prepare(&with_exports(MAX_EXPORTS + 1), &opts).unwrap_err();
    assert_eq!(
        error.0,
        "10001 exports, more than the 10000 hb_beamr allows"
    );
    assert!(prepare(&with_imports(MAX_IMPORTS), &opts).is_ok());
    let error = prepare(&with_imports(MAX_IMPORTS + 1), &opts).unwrap_err();
    assert_eq!(
        error.0,
        "10001 imports, more than the 10000 hb_beamr allows"
    );
}

fn wasi_stubs(store: &mut Store, module: &Module) -> wasmer::Imports {
    let mut imports = with_check(store, imports! {});
    for import in module
        .imports()
        .filter(|i| i.module() != interrupt::CHECK_MODULE)
    {
        if let wasmer::ExternType::Function(ty) = import.ty() {
            // As AOS.md describes: clock_time_get answers 1, everything else 0.
            let answer = i32::from(import.name() == "clock_time_get");
            let results: Vec<Value> = ty
                .results()
                .iter()
                .map(|t| match t {
                    Type::I64 => Value::I64(answer.into()),
                    _ => Value::I32(answer),
                })
                .collect();
            let ty = FunctionType::new(ty.params().to_vec(), ty.results().to_vec());
            let f = Function::new(store, ty, move |_| Ok(results.clone()));
            imports.define(import.module(), import.name(), f);
        }
    }
    imports
}

#[test]
fn test_calling_fixture_lowers_compiles_and_mallocs() {
    let Some(wasm) = fixture("test-calling.wasm") else {
        return;
    };
    let prepared = prepare(&wasm, &PrepareOptions::default()).unwrap();
    assert!(prepared.memory64_lowered);
    let engine = crate::engine::engine();
    let module = Module::new(engine, &prepared.wasm).unwrap();
    let mut store = Store::new(engine.clone());
    let imports = wasi_stubs(&mut store, &module);
    let instance = crate::prepare::instantiate_with_start(&mut store, &module, &imports).unwrap();
    let ptr = call(&mut store, &instance, "malloc", &[Value::I64(100)]).unwrap();
    assert!(
        matches!(ptr[0], Value::I64(p) if p != 0),
        "malloc(100) gave {ptr:?}"
    );
    let huge = call(&mut store, &instance, "malloc", &[Value::I64(128 << 20)]).unwrap();
    assert_eq!(huge[0], Value::I64(0));
    let memory = instance.exports.get_memory(MEMORY_EXPORT).unwrap();
    assert_eq!(memory.view(&store).size().0, 259);
}

#[test]
fn aos_fixture_prepares_fast_and_evaluates_lua() {
    let Some(wasm) = fixture("aos-2-pure-xs.wasm") else {
        return;
    };
    let started = Instant::now();
    let prepared = prepare(&wasm, &PrepareOptions::default()).unwrap();
    eprintln!("prepare(aos-2-pure-xs.wasm) took {:?}", started.elapsed());
    assert!(
        prepared.memory64_lowered && prepared.exceptions_translated && prepared.wamr_extra_page
    );

    let engine = crate::engine::engine();
    let module = Module::new(engine, &prepared.wasm).unwrap();
    let mut store = Store::new(engine.clone());
    let imports = wasi_stubs(&mut store, &module);
    let instance = crate::prepare::instantiate_with_start(&mut store, &module, &imports).unwrap();
    let memory = instance.exports.get_memory(MEMORY_EXPORT).unwrap().clone();
    assert_eq!(memory.view(&store).size().0, 193);
    // WAMR's page is added to the maximum too: the process runs grown to 32,769 pages.
    assert_eq!(memory.grow(&mut store, 32769 - 193).unwrap().0, 193);
    assert!(memory.grow(&mut store, 1).is_err());
    let write_string = |store: &mut Store, text: &str| {
        let ptr = match call(
            store,
            &instance,
            "malloc",
            &[Value::I64(text.len() as i64 + 1)],
        )
        .unwrap()[0]
        {
            Value::I64(ptr) => ptr as u64,
            ref other => panic!("malloc gave {other:?}"),
        };
        memory
            .view(store)
            .write(ptr, &[text.as_bytes(), &[0]].concat())
            .unwrap();
        Value::I64(ptr as i64)
    };
    let env = concat!(
        r#"{"Process":{"Id":"AOS","Owner":"FOOBAR","#,
        r#""Tags":[{"name":"Name","value":"Thomas"},{"name":"Authority","value":"FOOBAR"}]}}"#
    );
    for (code, expected) in [
        ("1 + 1", "2"),
        (
            "local s=0 for i=1,1000000 do s=s+i end return s",
            "500000500000",
        ),
    ] {
        let msg = format!(
            concat!(
                r#"{{"From":"FOOBAR","Block-Height":"1","Target":"AOS","Owner":"FOOBAR","Id":"1","#,
                r#""Module":"W","Tags":[{{"name":"Action","value":"Eval"}}],"Data":"{code}"}}"#
            ),
            code = code
        );
        let args = [
            write_string(&mut store, &msg),
            write_string(&mut store, env),
        ];
        let Value::I64(out) = call(&mut store, &instance, "handle", &args).unwrap()[0] else {
            panic!()
        };
        let view = memory.view(&store);
        let mut json = Vec::new();
        for address in out as u64.. {
            match view.read_u8(address).unwrap() {
                0 => break,
                byte => json.push(byte),
            }
        }
        let json = String::from_utf8(json).unwrap();
        assert!(json.contains(&format!(r#""data":"{expected}""#)), "{json}");
    }
}
