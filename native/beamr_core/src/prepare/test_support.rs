//! Shared by the passes' unit tests: compiling and running prepared modules on the real engine.

use super::*;
use wasmer::sys::vm::TrapCode;
use wasmer::{imports, Imports, Instance, Module, RuntimeError, Store, Value};

/// A HyperBEAM fixture's bytes, from `$HB_BEAMR_SHARED` (set by the Makefile when the
/// directory is there) or the ../shared beside the clone; with the directory, a missing
/// fixture fails the test. `None` when there is neither: the calling test skips, and
/// this says so on stderr, past the harness's capture, so that `make test` shows it.
pub fn fixture(name: &str) -> Option<Vec<u8>> {
    use std::io::Write as _;
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared");
    let shared = match std::env::var("HB_BEAMR_SHARED") {
        Ok(dir) => dir,
        Err(_) if std::path::Path::new(default).is_dir() => default.to_string(),
        Err(_) => {
            let test = std::thread::current().name().unwrap_or("?").to_string();
            let _ = writeln!(
                std::io::stderr(),
                "skipped {test}: needs fixtures/hyperbeam/{name} of ../shared"
            );
            return None;
        }
    };
    let path = format!("{shared}/fixtures/hyperbeam/{name}");
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("HyperBEAM fixture {path}: {e}")))
}

pub fn prepare_wat(wat: &str) -> PreparedModule {
    prepare(&wat::parse_str(wat).unwrap(), &PrepareOptions::default()).unwrap()
}

/// Instantiates prepared WAT (no imports) and returns its store and instance.
pub fn instantiate(wat: &str) -> (Store, Instance) {
    let engine = crate::engine::engine();
    let module = Module::new(engine, prepare_wat(wat).wasm).unwrap();
    let mut store = Store::new(engine.clone());
    let imports = with_check(&mut store, imports! {});
    let instance = crate::prepare::instantiate_with_start(&mut store, &module, &imports).unwrap();
    (store, instance)
}

/// `imports` plus the interruption check, never interrupting.
pub fn with_check(store: &mut Store, mut imports: Imports) -> Imports {
    imports.define(
        interrupt::CHECK_MODULE,
        interrupt::CHECK_NAME,
        interrupt::unlimited_check(store),
    );
    imports
}

pub fn call(
    store: &mut Store,
    instance: &Instance,
    name: &str,
    args: &[Value],
) -> Result<Box<[Value]>, RuntimeError> {
    instance
        .exports
        .get_function(name)
        .unwrap()
        .call(store, args)
}

pub fn trap_code(result: Result<Box<[Value]>, RuntimeError>) -> Option<TrapCode> {
    result.expect_err("expected a trap").to_trap()
}

/// A deterministic PRNG (SplitMix64) for the generated-module tests: a seed is a test case.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5EED_0FBE_A320_2400)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
