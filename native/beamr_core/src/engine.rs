//! The process-wide wasmer engine (Cranelift) and module compilation with a cache of
//! compiled modules keyed by a hash of the bytes and the preparation options.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use wasmer::sys::{Cranelift, EngineBuilder, Features};
use wasmer::{Engine, Module};

use crate::prepare::{prepare, PrepareOptions};

static ENGINE: Lazy<Engine> = Lazy::new(|| {
    let mut features = Features::new();
    features.exceptions(true);
    EngineBuilder::new(Cranelift::default())
        .set_features(Some(features))
        .engine()
        .into()
});

/// The engine every module is compiled with and every Store is created from.
pub fn engine() -> &'static Engine {
    &ENGINE
}

/// A module ready to instantiate, with what it cost to get there.
#[derive(Clone)]
pub struct CompiledModule {
    pub module: Module,
    pub prepare_time: Duration,
    pub compile_time: Duration,
    /// True when this start reused a module compiled earlier in this process.
    pub cached: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileError {
    /// Not wasm (neither a binary nor WAT text), invalid, or beyond what preparation handles.
    InvalidModule(String),
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompileError::InvalidModule(msg) => write!(f, "invalid module: {msg}"),
        }
    }
}

/// Compiled modules stay cached this many at a time; the oldest is evicted first.
const CACHE_CAPACITY: usize = 64;

type CacheKey = ([u8; 32], PrepareOptions);

struct ModuleCache {
    entries: HashMap<CacheKey, (u64, CompiledModule)>,
    clock: u64,
}

static CACHE: Lazy<Mutex<ModuleCache>> = Lazy::new(|| {
    Mutex::new(ModuleCache { entries: HashMap::new(), clock: 0 })
});

impl ModuleCache {
    fn get(&mut self, key: &CacheKey) -> Option<CompiledModule> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(used, module)| {
            *used = clock;
            module.clone()
        })
    }

    fn insert(&mut self, key: CacheKey, module: CompiledModule) {
        if self.entries.len() >= CACHE_CAPACITY {
            if let Some(oldest) = self.entries.iter().min_by_key(|(_, (used, _))| *used).map(|(k, _)| k.clone()) {
                self.entries.remove(&oldest);
            }
        }
        self.clock += 1;
        self.entries.insert(key, (self.clock, module));
    }
}

/// Turns wasm bytes or WAT text into a compiled module: parse, prepare, compile, or reuse
/// the module compiled earlier from the same bytes and options.
pub fn compile(source: &[u8], opts: &PrepareOptions) -> Result<CompiledModule, CompileError> {
    let key: CacheKey = (Sha256::digest(source).into(), opts.clone());
    if let Some(mut hit) = CACHE.lock().get(&key) {
        hit.cached = true;
        return Ok(hit);
    }
    let wasm = wat::parse_bytes(source).map_err(|e| CompileError::InvalidModule(e.to_string()))?;
    let started = Instant::now();
    let prepared = prepare(&wasm, opts).map_err(|e| CompileError::InvalidModule(e.to_string()))?;
    let prepare_time = started.elapsed();
    let started = Instant::now();
    // wasmer panics on some inputs (e.g. 64-bit memories); a panic is just a bad module here.
    let module = catch_unwind(AssertUnwindSafe(|| Module::new(engine(), &prepared.wasm)))
        .map_err(|panic| CompileError::InvalidModule(panic_message(&panic)))?
        .map_err(|e| CompileError::InvalidModule(e.to_string()))?;
    let compiled = CompiledModule { module, prepare_time, compile_time: started.elapsed(), cached: false };
    CACHE.lock().insert(key, compiled.clone());
    Ok(compiled)
}

/// The text of a caught panic payload.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "wasmer panicked".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADD: &str = r#"(module (func (export "add") (param i32 i32) (result i32)
        local.get 0 local.get 1 i32.add))"#;

    #[test]
    fn compiles_wat_and_caches_by_content() {
        let opts = PrepareOptions::default();
        let first = compile(ADD.as_bytes(), &opts).unwrap();
        assert!(!first.cached);
        let again = compile(ADD.as_bytes(), &opts).unwrap();
        assert!(again.cached);
        let other_opts = PrepareOptions { wamr_compat: false };
        assert!(!compile(ADD.as_bytes(), &other_opts).unwrap().cached);
    }

    #[test]
    fn rejects_garbage_and_truncated_modules() {
        let opts = PrepareOptions::default();
        assert!(matches!(compile(b"not wasm at all", &opts), Err(CompileError::InvalidModule(_))));
        let wasm = wat::parse_str(ADD).unwrap();
        assert!(matches!(compile(&wasm[..wasm.len() - 3], &opts), Err(CompileError::InvalidModule(_))));
    }
}
