//! From bytes to a compiled module: parse WAT if needed, prepare, compile with Cranelift,
//! or reuse the module compiled earlier from the same bytes and options.

use std::panic::{catch_unwind, AssertUnwindSafe};

use once_cell::sync::Lazy;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use wasmer::Module;

use crate::cache::LruCache;
use crate::engine::{engine, panic_message};
use crate::prepare::{prepare, PrepareOptions};

/// A module ready to instantiate.
#[derive(Clone)]
pub struct CompiledModule {
    pub module: Module,
    /// True when this reused a module compiled earlier in this process.
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

/// Compiled modules stay cached this many at a time.
const CACHE_CAPACITY: usize = 64;

type CacheKey = ([u8; 32], PrepareOptions);

static CACHE: Lazy<Mutex<LruCache<CacheKey, Module>>> = Lazy::new(|| Mutex::new(LruCache::new(CACHE_CAPACITY)));

/// Compiles wasm bytes or WAT text, keyed in the cache by their SHA-256 and the options.
pub fn compile(source: &[u8], opts: &PrepareOptions) -> Result<CompiledModule, CompileError> {
    let key: CacheKey = (Sha256::digest(source).into(), opts.clone());
    if let Some(module) = CACHE.lock().get(&key) {
        return Ok(CompiledModule { module, cached: true });
    }
    if let Some(message) = crate::wamr_aot::rejection(source) {
        return Err(CompileError::InvalidModule(message));
    }
    let wasm = wat::parse_bytes(source).map_err(|e| CompileError::InvalidModule(e.to_string()))?;
    let prepared = prepare(&wasm, opts).map_err(|e| CompileError::InvalidModule(e.to_string()))?;
    // wasmer panics on some inputs (e.g. 64-bit memories); a panic is just a bad module here.
    let module = catch_unwind(AssertUnwindSafe(|| Module::new(engine(), &prepared.wasm)))
        .map_err(|panic| CompileError::InvalidModule(panic_message(&panic)))?
        .map_err(|e| CompileError::InvalidModule(e.to_string()))?;
    CACHE.lock().insert(key, module.clone());
    Ok(CompiledModule { module, cached: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADD: &str = r#"(module (func (export "add") (param i32 i32) (result i32)
        local.get 0 local.get 1 i32.add))"#;

    #[test]
    fn compiles_wat_and_caches_by_content_and_options() {
        let opts = PrepareOptions::default();
        assert!(!compile(ADD.as_bytes(), &opts).unwrap().cached);
        assert!(compile(ADD.as_bytes(), &opts).unwrap().cached);
        let other_opts = PrepareOptions { wamr_compat: false, ..Default::default() };
        assert!(!compile(ADD.as_bytes(), &other_opts).unwrap().cached);
    }

    #[test]
    fn rejects_garbage_and_truncated_modules() {
        let opts = PrepareOptions::default();
        assert!(matches!(compile(b"not wasm at all", &opts), Err(CompileError::InvalidModule(_))));
        let wasm = wat::parse_str(ADD).unwrap();
        assert!(matches!(compile(&wasm[..wasm.len() - 3], &opts), Err(CompileError::InvalidModule(_))));
    }

    #[test]
    fn a_wamr_aot_image_says_to_start_the_wasm_instead() {
        let Err(CompileError::InvalidModule(message)) = compile(b"\0aot\x03\0\0\0image", &PrepareOptions::default())
        else {
            panic!("an AOT image compiled");
        };
        assert!(message.contains("WAMR AOT image") && message.contains(".wasm"), "{message}");
    }
}
