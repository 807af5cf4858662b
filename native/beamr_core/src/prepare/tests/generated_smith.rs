//! Robustness on generated modules: [`prepare`] on modules from `wasm-smith`.
//!
//! The modules use every feature preparation accepts (memory64 memories and tables,
//! exceptions, multi-memory, bulk memory, reference types, SIMD, threads, extended
//! constants), but no gc, tail calls or components. wasm-smith has no legacy exceptions;
//! `generated_legacy_exceptions` generates those. For a fixed list of seeds:
//!
//! * `prepare` never panics, and whatever it returns validates with exactly wasmer's
//!   features (checked here again, independently of `prepare`'s own final validation);
//! * a sample of the prepared modules compiles with wasmer (or is refused with an error for
//!   a construct wasmer does not support), instantiates with every import stubbed (functions
//!   return zeros) and a check that traps after [`CHECK_LIMIT`] calls (so endless loops end),
//!   and every exported function, called with zero arguments, returns or traps: no panic, no
//!   crash.
//!
//! A seed that fails is written to the temp directory as `hb_beamr_smith_<seed>.wasm`.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use arbitrary::Unstructured;
use wasm_smith::Config;
use wasmer::{
    Extern, ExternType, Function, Global, Imports, Memory, Module, Mutability, RuntimeError, Store,
    Table, Tag, Type, Value,
};
use wasmparser::Validator;

use super::smith_config;
use crate::prepare::interrupt::{CHECK_MODULE, CHECK_NAME};
use crate::prepare::test_support::Rng;
use crate::prepare::*;

/// Seeds `0..MODULES` are prepared; every [`RUN_EVERY`]th of them also runs.
const MODULES: u64 = 6000;
const RUN_EVERY: u64 = 3;

/// The check grants [`CHECK_SLICE`] fuel per call and traps on call number [`CHECK_LIMIT`].
const CHECK_SLICE: i64 = 10_000;
const CHECK_LIMIT: u32 = 50;

fn config(seed: u64) -> Config {
    let mut config = Config {
        exceptions_enabled: true,
        max_memories: 3,
        max_tables: 3,
        min_funcs: 4,
        max_funcs: 20,
        max_instructions: 150,
        generate_custom_sections: seed.is_multiple_of(8),
        ..smith_config::wasmer_features()
    };
    // Every other seed keeps memories and tables small enough to lower and run; the others
    // keep wasm-smith's limits.
    if seed.is_multiple_of(2) {
        smith_config::keep_runnable(&mut config, 1_000);
    }
    config
}

/// The module of `seed`, or None when wasm-smith gives up on its input.
fn generate(seed: u64) -> Option<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let len = 1024 + rng.below(32 * 1024) as usize;
    let data = rng.bytes(len);
    let module = wasm_smith::Module::new(config(seed), &mut Unstructured::new(&data)).ok()?;
    Some(module.to_bytes())
}

fn fail(seed: u64, wasm: &[u8], what: &str) -> ! {
    let path = std::env::temp_dir().join(format!("hb_beamr_smith_{seed}.wasm"));
    let _ = std::fs::write(&path, wasm);
    panic!("wasm-smith seed {seed} ({}): {what}", path.display());
}

/// `prepare` of `wasm` with a panic turned into a test failure naming the seed.
fn prepare_seed(seed: u64, wasm: &[u8]) -> Result<PreparedModule, PrepareError> {
    match catch_unwind(|| prepare(wasm, &PrepareOptions::default())) {
        Ok(result) => result,
        Err(panic) => fail(
            seed,
            wasm,
            &format!("prepare panicked: {}", crate::engine::panic_message(&panic)),
        ),
    }
}

#[test]
fn prepare_never_panics_and_its_output_validates_for_wasmer() {
    let (mut prepared, mut lowered, mut exceptions, mut unsupported) = (0u64, 0u64, 0u64, 0u64);
    let mut rejections: BTreeMap<String, u32> = BTreeMap::new();
    for seed in 0..MODULES {
        let wasm = generate(seed).unwrap_or_else(|| panic!("wasm-smith gave up on seed {seed}"));
        if let Err(e) = Validator::new_with_features(input_features()).validate_all(&wasm) {
            fail(
                seed,
                &wasm,
                &format!("the generator made a module preparation need not accept: {e}"),
            );
        }
        match prepare_seed(seed, &wasm) {
            Ok(module) => {
                if let Err(e) =
                    Validator::new_with_features(wasmer_features()).validate_all(&module.wasm)
                {
                    fail(
                        seed,
                        &wasm,
                        &format!("prepared module is invalid for wasmer: {e}"),
                    );
                }
                prepared += 1;
                lowered += u64::from(module.memory64_lowered);
                exceptions += u64::from(uses_exceptions(&module.wasm));
            }
            Err(PrepareError(message)) => {
                // The valid inputs preparation refuses: a lowered segment offset that reads
                // an (imported) global, which cannot be folded to 32 bits, and exnref
                // globals and tables, which wasmer cannot compile.
                if !message.contains("reads an imported global")
                    && !message.contains("wasmer cannot compile")
                {
                    fail(
                        seed,
                        &wasm,
                        &format!("prepare rejected a valid module: {message}"),
                    );
                }
                unsupported += 1;
                // Summarised without the index ("global 3 holds exnref" → "global holds exnref").
                let kind: String = message
                    .split(' ')
                    .filter(|word| word.parse::<u32>().is_err())
                    .collect::<Vec<_>>()
                    .join(" ");
                *rejections.entry(kind).or_default() += 1;
            }
        }
    }
    eprintln!(
        "wasm-smith: {MODULES} modules, {prepared} prepared \
            ({lowered} memory64-lowered, {exceptions} with \
         exceptions), {unsupported} refused as unsupported: {rejections:?}"
    );
    // wasm-smith often gives tables and globals exnref, which preparation refuses.
    assert!(prepared > MODULES / 2 && lowered > MODULES / 4 && exceptions > MODULES / 10);
}

/// The module throws or catches (it has a tag, or a `throw_ref`/`try_table` somewhere).
fn uses_exceptions(wasm: &[u8]) -> bool {
    wasmparser::Parser::new(0)
        .parse_all(wasm)
        .any(|payload| matches!(payload, Ok(wasmparser::Payload::TagSection(_))))
}

#[test]
fn prepared_modules_compile_instantiate_and_run_without_crashing() {
    let engine = crate::engine::engine();
    let (mut compiled, mut skipped, mut instantiated, mut calls, mut returned) = (0, 0, 0, 0, 0);
    let mut unsupported: BTreeMap<String, u32> = BTreeMap::new();
    for seed in (0..MODULES).step_by(RUN_EVERY as usize) {
        let wasm = generate(seed).unwrap_or_else(|| panic!("wasm-smith gave up on seed {seed}"));
        let Ok(prepared) = prepare_seed(seed, &wasm) else {
            continue;
        };
        let module = match catch_unwind(AssertUnwindSafe(|| Module::new(engine, &prepared.wasm))) {
            Ok(Ok(module)) => module,
            // wasmer's translator refuses a few valid constructs with an error (not a panic),
            // such as exnref element segments (without an exnref table).
            Ok(Err(e)) if e.to_string().contains("Unsupported feature") => {
                *unsupported.entry(e.to_string()).or_default() += 1;
                continue;
            }
            Ok(Err(e)) => fail(
                seed,
                &wasm,
                &format!("wasmer refused the prepared module: {e}"),
            ),
            Err(panic) => fail(
                seed,
                &wasm,
                &format!(
                    "wasmer panicked compiling: {}",
                    crate::engine::panic_message(&panic)
                ),
            ),
        };
        compiled += 1;
        let mut store = Store::new(engine.clone());
        let check_calls = Arc::new(AtomicU32::new(0));
        let Some(imports) = stub_imports(&mut store, &module, &check_calls) else {
            skipped += 1;
            continue;
        };
        let instantiation = catch_unwind(AssertUnwindSafe(|| {
            crate::prepare::instantiate_with_start(&mut store, &module, &imports).map_err(Box::new)
        }));
        let instance = match instantiation {
            Ok(Ok(instance)) => instance,
            Ok(Err(_)) => continue, // a trap in the start function or a segment out of bounds
            Err(panic) => fail(
                seed,
                &wasm,
                &format!(
                    "wasmer panicked instantiating: {}",
                    crate::engine::panic_message(&panic)
                ),
            ),
        };
        instantiated += 1;
        for (name, function) in instance.exports.iter().functions() {
            let args: Vec<Value> = function.ty(&store).params().iter().map(zero).collect();
            check_calls.store(0, Ordering::SeqCst);
            match catch_unwind(AssertUnwindSafe(|| function.call(&mut store, &args))) {
                Ok(result) => returned += u32::from(result.is_ok()),
                Err(panic) => fail(
                    seed,
                    &wasm,
                    &format!(
                        "calling {name:?} panicked: {}",
                        crate::engine::panic_message(&panic)
                    ),
                ),
            }
            calls += 1;
        }
    }
    eprintln!(
        "wasm-smith: {compiled} prepared modules compiled, {unsupported:?} refused by wasmer, \
         {skipped} skipped (an import wasmer cannot create), {instantiated} instantiated, \
         {calls} exports called ({returned} returned, the rest trapped)"
    );
    assert!(instantiated > compiled / 4 && calls > instantiated);
}

/// Imports for `module`: every function import returns zeros, the check grants
/// [`CHECK_SLICE`] fuel until its [`CHECK_LIMIT`]th call, which traps, and every global,
/// memory, table and tag is a fresh one of the imported type (globals and tables zeroed).
/// The memories and tables preparation could not fit (imports from "hb_beamr") are left
/// out: instantiating such a module must fail. None when wasmer cannot create an import.
fn stub_imports(
    store: &mut Store,
    module: &Module,
    check_calls: &Arc<AtomicU32>,
) -> Option<Imports> {
    let mut imports = Imports::new();
    for import in module.imports() {
        let stub: Extern = match import.ty() {
            _ if import.module() == "hb_beamr" => continue,
            ExternType::Function(ty)
                if (import.module(), import.name()) == (CHECK_MODULE, CHECK_NAME) =>
            {
                let calls = Arc::clone(check_calls);
                Function::new(store, ty, move |_| {
                    if calls.fetch_add(1, Ordering::SeqCst) + 1 >= CHECK_LIMIT {
                        return Err(RuntimeError::new("out of fuel"));
                    }
                    Ok(vec![Value::I64(CHECK_SLICE)])
                })
                .into()
            }
            ExternType::Function(ty) => {
                let results: Vec<Value> = ty.results().iter().map(zero).collect();
                Function::new(store, ty, move |_| Ok(results.clone())).into()
            }
            ExternType::Global(ty) => match ty.mutability {
                Mutability::Var => Global::new_mut(store, zero(&ty.ty)).into(),
                Mutability::Const => Global::new(store, zero(&ty.ty)).into(),
            },
            ExternType::Memory(ty) => Memory::new(store, *ty).ok()?.into(),
            ExternType::Table(ty) => Table::new(store, *ty, zero(&ty.ty)).ok()?.into(),
            ExternType::Tag(ty) => Tag::new(store, ty.params.clone()).into(),
        };
        imports.define(import.module(), import.name(), stub);
    }
    Some(imports)
}

fn zero(ty: &Type) -> Value {
    match ty {
        Type::I32 => Value::I32(0),
        Type::I64 => Value::I64(0),
        Type::F32 => Value::F32(0.0),
        Type::F64 => Value::F64(0.0),
        Type::V128 => Value::V128(0),
        Type::ExternRef => Value::ExternRef(None),
        Type::FuncRef => Value::FuncRef(None),
        Type::ExceptionRef => Value::ExceptionRef(None),
    }
}
