//! Baselines for `make bench`: the benchmark module's calls made directly through wasmer
//! from Rust, with no Erlang in between. Prints `name nanoseconds` lines.

use std::time::Instant;

use wasmer::{imports, Function, Instance, Module, Store, TypedFunction};

const ITERATIONS: u32 = 200_000;

fn main() {
    let path = std::env::args().nth(1).expect("usage: direct_call bench/bench.wat");
    let source = std::fs::read(&path).expect("benchmark module");
    let compiled = beamr_core::engine::compile(&source, &Default::default()).expect("compiles");
    let module: Module = compiled.module;
    let mut store = Store::new(beamr_core::engine::engine().clone());
    let echo = Function::new_typed(&mut store, |x: i32| x);
    let instance = Instance::new(&mut store, &module, &imports! { "env" => { "echo" => echo } })
        .expect("instantiates");

    let add = instance.exports.get_function("add").unwrap().clone();
    let started = Instant::now();
    for i in 0..ITERATIONS {
        add.call(&mut store, &[wasmer::Value::I32(i as i32), wasmer::Value::I32(1)]).unwrap();
    }
    println!("direct_call {}", started.elapsed().as_nanos() / ITERATIONS as u128);

    let echo_loop: TypedFunction<i32, i32> =
        instance.exports.get_typed_function(&store, "echo_loop").unwrap();
    let started = Instant::now();
    echo_loop.call(&mut store, ITERATIONS as i32).unwrap();
    println!("direct_import {}", started.elapsed().as_nanos() / ITERATIONS as u128);
}
