//! Baselines for `make bench`, printed as `name value` lines:
//! the benchmark module's calls made directly through wasmer from Rust (no Erlang in
//! between), the time preparation takes on a given module, and for an AOS module one Eval
//! message run directly on the prepared module (what hb_beamr adds around wasm is the rest
//! of the same message through Erlang).
//!
//! usage: baselines bench/bench.wat [module-to-prepare.wasm]

use std::time::Instant;

use beamr_core::prepare::interrupt::{unlimited_check, CHECK_MODULE, CHECK_NAME};
use beamr_core::prepare::{prepare, PrepareOptions};
use wasmer::{
    imports, Extern, Function, Imports, Instance, Memory, Module, Store, TypedFunction, Value,
};

const ITERATIONS: u32 = 200_000;
const COMPUTE_ROUNDS: i32 = 50_000_000;
const PREPARE_RUNS: u32 = 10;

fn main() {
    let mut args = std::env::args().skip(1);
    let bench = std::fs::read(
        args.next()
            .expect("usage: baselines bench.wat [module.wasm]"),
    )
    .unwrap();
    direct_calls(&bench);
    if let Some(path) = args.next() {
        let wasm = std::fs::read(path).unwrap();
        preparation(&wasm);
        aos_eval(&wasm);
    }
}

fn direct_calls(source: &[u8]) {
    // Plain wasmer: no preparation, so no interruption checks (bench.wat needs no lowering).
    let module = Module::new(
        beamr_core::engine::engine(),
        wat::parse_bytes(source).unwrap(),
    )
    .unwrap();
    let mut store = Store::new(beamr_core::engine::engine().clone());
    let echo = Function::new_typed(&mut store, |x: i32| x);
    // The invoke_* loops of bench.wat are not among the baselines: no-op stand-ins.
    let invoke_vi = Function::new_typed(&mut store, |_: i32, _: i32| {});
    let throw_longjmp = Function::new_typed(&mut store, || {});
    let instance = Instance::new(
        &mut store,
        &module,
        &imports! { "env" => {
            "echo" => echo,
            "invoke_vi" => invoke_vi,
            "_emscripten_throw_longjmp" => throw_longjmp,
        } },
    )
    .unwrap();

    // Dynamic `Function::call`, as the executor makes it.
    let add = instance.exports.get_function("add").unwrap().clone();
    let started = Instant::now();
    for i in 0..ITERATIONS {
        add.call(
            &mut store,
            &[wasmer::Value::I32(i as i32), wasmer::Value::I32(1)],
        )
        .unwrap();
    }
    println!(
        "direct_call_ns {}",
        started.elapsed().as_nanos() / ITERATIONS as u128
    );

    let echo_loop: TypedFunction<i32, i32> = instance
        .exports
        .get_typed_function(&store, "echo_loop")
        .unwrap();
    let started = Instant::now();
    echo_loop.call(&mut store, ITERATIONS as i32).unwrap();
    println!(
        "direct_import_ns {}",
        started.elapsed().as_nanos() / ITERATIONS as u128
    );

    let compute: TypedFunction<i32, i32> = instance
        .exports
        .get_typed_function(&store, "compute")
        .unwrap();
    compute.call(&mut store, COMPUTE_ROUNDS / 10).unwrap();
    let started = Instant::now();
    compute.call(&mut store, COMPUTE_ROUNDS).unwrap();
    println!("direct_compute_us {}", started.elapsed().as_micros());
}

fn preparation(wasm: &[u8]) {
    let opts = PrepareOptions::default();
    let mut best = u128::MAX;
    for _ in 0..PREPARE_RUNS {
        let started = Instant::now();
        let prepared = prepare(wasm, &opts).unwrap();
        best = best.min(started.elapsed().as_micros());
        std::hint::black_box(prepared);
    }
    println!("prepare_us {best}");
}

const AOS_RUNS: usize = 50;
const AOS_ENV: &str = concat!(
    r#"{"Process":{"Id":"AOS","Owner":"FOOBAR","#,
    r#""Tags":[{"name":"Name","value":"Thomas"},{"name":"Authority","value":"FOOBAR"}]}}"#
);
const AOS_MSG: &str = concat!(
    r#"{"From":"FOOBAR","Block-Height":"1","Target":"AOS","Owner":"FOOBAR","Id":"1","Module":"W","#,
    r#""Tags":[{"name":"Action","value":"Eval"}],"Data":"1 + 1"}"#
);

/// The median of `AOS_RUNS` Eval "1 + 1" messages (write the message and environment
/// through `malloc`, `handle`, read the result string), as `lib/hb_beamr_aos.erl` does,
/// on the module as hb_beamr prepares it (interruption checks included); imports answer
/// zeros (this message makes none).
fn aos_eval(wasm: &[u8]) {
    let prepared = prepare(wasm, &PrepareOptions::default()).unwrap();
    let module = Module::new(beamr_core::engine::engine(), &prepared.wasm).unwrap();
    let mut store = Store::new(beamr_core::engine::engine().clone());
    let mut imports = Imports::new();
    for import in module.imports() {
        let Some(ty) = import.ty().func().cloned() else {
            continue;
        };
        let function = if (import.module(), import.name()) == (CHECK_MODULE, CHECK_NAME) {
            unlimited_check(&mut store)
        } else {
            let results: Vec<Value> = ty.results().iter().map(|t| zero(*t)).collect();
            Function::new(&mut store, ty, move |_| Ok(results.clone()))
        };
        imports.define(import.module(), import.name(), Extern::Function(function));
    }
    let instance = Instance::new(&mut store, &module, &imports).unwrap();
    let memory = instance.exports.get_memory("memory").unwrap().clone();
    let malloc = instance.exports.get_function("malloc").unwrap().clone();
    let handle = instance.exports.get_function("handle").unwrap().clone();
    let write = |store: &mut Store, text: &str| -> Value {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        let ptr = malloc
            .call(store, &[Value::I64(bytes.len() as i64)])
            .unwrap()[0]
            .clone();
        memory
            .view(store)
            .write(ptr.unwrap_i64() as u64, &bytes)
            .unwrap();
        ptr
    };
    let eval = |store: &mut Store| -> usize {
        let (msg, env) = (write(store, AOS_MSG), write(store, AOS_ENV));
        let out = handle.call(store, &[msg, env]).unwrap()[0].unwrap_i64() as u64;
        read_string(store, &memory, out).len()
    };
    eval(&mut store);
    let mut times: Vec<u128> = (0..AOS_RUNS)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(eval(&mut store));
            started.elapsed().as_micros()
        })
        .collect();
    times.sort_unstable();
    println!("direct_aos_eval_us {}", times[AOS_RUNS / 2]);
}

fn zero(ty: wasmer::Type) -> Value {
    match ty {
        wasmer::Type::I64 => Value::I64(0),
        wasmer::Type::F32 => Value::F32(0.0),
        wasmer::Type::F64 => Value::F64(0.0),
        _ => Value::I32(0),
    }
}

fn read_string(store: &Store, memory: &Memory, ptr: u64) -> Vec<u8> {
    let view = memory.view(store);
    let mut bytes = Vec::new();
    let mut byte = [0u8];
    for at in ptr.. {
        view.read(at, &mut byte).unwrap();
        if byte[0] == 0 {
            break;
        }
        bytes.push(byte[0]);
    }
    bytes
}
