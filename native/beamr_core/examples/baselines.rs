//! Baselines for `make bench`, printed as `name value` lines:
//! the benchmark module's calls made directly through wasmer from Rust (no Erlang in
//! between), and the time preparation and compilation take on a given module.
//!
//! usage: baselines bench/bench.wat [module-to-prepare.wasm]

use std::time::Instant;

use beamr_core::prepare::{prepare, PrepareOptions};
use wasmer::{imports, Function, Instance, Module, Store, TypedFunction};

const ITERATIONS: u32 = 200_000;
const COMPUTE_ROUNDS: i32 = 50_000_000;
const PREPARE_RUNS: u32 = 10;

fn main() {
    let mut args = std::env::args().skip(1);
    let bench = std::fs::read(args.next().expect("usage: baselines bench.wat [module.wasm]")).unwrap();
    direct_calls(&bench);
    if let Some(path) = args.next() {
        preparation(&std::fs::read(path).unwrap());
    }
}

fn direct_calls(source: &[u8]) {
    // Plain wasmer: no preparation, so no interruption checks (bench.wat needs no lowering).
    let module = Module::new(beamr_core::engine::engine(), wat::parse_bytes(source).unwrap()).unwrap();
    let mut store = Store::new(beamr_core::engine::engine().clone());
    let echo = Function::new_typed(&mut store, |x: i32| x);
    let instance = Instance::new(&mut store, &module, &imports! { "env" => { "echo" => echo } }).unwrap();

    // Dynamic `Function::call`, as the executor makes it.
    let add = instance.exports.get_function("add").unwrap().clone();
    let started = Instant::now();
    for i in 0..ITERATIONS {
        add.call(&mut store, &[wasmer::Value::I32(i as i32), wasmer::Value::I32(1)]).unwrap();
    }
    println!("direct_call_ns {}", started.elapsed().as_nanos() / ITERATIONS as u128);

    let echo_loop: TypedFunction<i32, i32> = instance.exports.get_typed_function(&store, "echo_loop").unwrap();
    let started = Instant::now();
    echo_loop.call(&mut store, ITERATIONS as i32).unwrap();
    println!("direct_import_ns {}", started.elapsed().as_nanos() / ITERATIONS as u128);

    let compute: TypedFunction<i32, i32> = instance.exports.get_typed_function(&store, "compute").unwrap();
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
