//! Module preparation: the rewrites that make a module runnable on wasmer.
//!
//! wasmer (Cranelift) has neither 64-bit memories nor the legacy exception-handling
//! instructions that AO's modules use, and hb_beamr needs a few hidden exports for
//! snapshots plus WAMR's page layout for compatibility. [`prepare`] validates the input,
//! runs only the passes a module needs, and validates the result against exactly what
//! wasmer accepts, so nothing unprepared (which could make wasmer panic) gets through:
//!
//! 1. [`memory64`]: 64-bit memories and tables become 32-bit ones.
//! 2. [`exceptions`]: legacy `try`/`catch`/`rethrow`/`delegate` become `try_table`/`throw_ref`.
//! 3. [`host_exports`] and 4. [`wamr_layout`]: applied together by [`finish`], which only
//!    rewrites the memory, table and export sections (also fitting every memory's and
//!    table's maximum to the `memory_limit` budget) and copies everything else byte for byte.
//! 5. [`interrupt`]: the fuel countdown through which running wasm is stopped, timed out
//!    and metered.

mod exceptions;
mod finish;
mod host_exports;
pub mod interrupt;
mod memory64;
mod summary;
mod wamr_layout;

// Generated-module tests (README, Tests): wasm-smith robustness, memory64 twins, legacy exceptions.
#[cfg(test)]
mod generated_legacy_exceptions;
#[cfg(test)]
mod generated_memory64;
#[cfg(test)]
mod generated_smith;

use std::fmt;

use wasmparser::{Validator, WasmFeatures};

/// Export names starting with this prefix are added by preparation and hidden from users.
pub const RESERVED_EXPORT_PREFIX: &str = "__hb_beamr_";

/// Memory 0, exported for the host whatever the module calls it (or if it does not export it).
pub const MEMORY_EXPORT: &str = "__hb_beamr_memory";

/// Table 0, exported for the host (Emscripten `invoke_*` calls go through it).
pub const TABLE_EXPORT: &str = "__hb_beamr_table";

/// The reserved export name of mutable global `global_index` (index space including imports),
/// through which snapshots read and restore it.
pub fn global_export_name(global_index: u32) -> String {
    format!("{RESERVED_EXPORT_PREFIX}global_{global_index}")
}

/// The import module of hb_beamr's own host functions (the interruption check). A module
/// that imported from it itself could call them with arguments of its choosing.
pub const RESERVED_IMPORT_MODULE: &str = interrupt::CHECK_MODULE;

/// What one table entry costs the host: wasmer keeps a table as a vector of 8-byte
/// references, allocated in full for the table's current size.
pub const TABLE_ENTRY_BYTES: u64 = 8;

/// What one entry of a funcref table of fixed size (its maximum equals its minimum) costs
/// the host besides [`TABLE_ENTRY_BYTES`]: wasmer also lays such a table out inside the
/// instance's context, 32 bytes per entry.
pub const FIXED_FUNCREF_ENTRY_BYTES: u64 = 32;

/// The most entries all funcref tables of fixed size may hold together (128 MiB of the
/// instance's context). wasmer addresses the context with 32-bit offsets, so it panics
/// compiling more than 2^27 such entries, and it allocates the context infallibly.
pub const MAX_FIXED_FUNCREF_ENTRIES: u64 = 1 << 22;

/// The budget when the caller gives none: one full 32-bit memory (65,536 pages) and 8 Mi
/// table entries. AO's processes (memory 0 grown to 32,769 pages, a table of ~200
/// entries) fit with room to spare, while a module declaring many memories or tables still
/// shares this one budget among them.
pub const DEFAULT_MEMORY_LIMIT: u64 = (4 << 30) + (64 << 20);

/// The most imports, and separately exports, a module may declare. Each costs every
/// instance a name, a type and a wasmer function, and each start a list entry for the
/// caller (100,000 exports took ~70 MB and 240-430 ms per start); real modules have
/// dozens (HyperBEAM's fixtures at most 52 imports and 32 exports).
pub const MAX_IMPORTS: usize = 10_000;
pub const MAX_EXPORTS: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PrepareOptions {
    /// Add WAMR's extra 64 KiB page (see DESIGN.md, item 4).
    pub wamr_compat: bool,
    /// The instance's byte budget for everything its memories and tables make the host
    /// allocate: the bytes of all memories plus [`TABLE_ENTRY_BYTES`] per entry of all
    /// tables ([`FIXED_FUNCREF_ENTRY_BYTES`] more for fixed-size funcref tables). Each
    /// memory's and table's maximum is lowered to what fits the budget alone (so
    /// `memory.grow`/`table.grow` past it return -1), and the module's initial footprint is
    /// reported in [`PreparedModule::initial_footprint`] for the caller to refuse.
    pub memory_limit: u64,
    /// Deterministic mode: refuse what could make two runs differ (shared memory and
    /// atomics), and compile with the NaN-canonicalising engine (`engine::EngineKind`).
    pub deterministic: bool,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            wamr_compat: true,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            deterministic: false,
        }
    }
}

impl PrepareOptions {
    /// The engine that compiles modules prepared with these options.
    pub fn engine_kind(&self) -> crate::engine::EngineKind {
        crate::engine::EngineKind::new(self.deterministic)
    }
}

#[derive(Debug)]
pub struct PreparedModule {
    /// A module wasmer can compile (32-bit memories, exnref exceptions only).
    pub wasm: Vec<u8>,
    /// 64-bit memories or tables were lowered to 32-bit ones.
    pub memory64_lowered: bool,
    /// Legacy exception handling was translated to exnref exception handling.
    pub exceptions_translated: bool,
    /// Memory 0 got WAMR's extra page.
    pub wamr_extra_page: bool,
    /// What instantiating it makes the host allocate, counted as `memory_limit` counts:
    /// the initial bytes of the memories it defines (with WAMR's page) plus
    /// [`TABLE_ENTRY_BYTES`] per initial entry of the tables it defines, and
    /// [`FIXED_FUNCREF_ENTRY_BYTES`] more per entry of its fixed-size funcref tables.
    /// Imported memories and tables do not count: hb_beamr provides none, so such a module
    /// never links.
    pub initial_footprint: u64,
    /// The entries of the fixed-size funcref tables it defines (see
    /// [`MAX_FIXED_FUNCREF_ENTRIES`]).
    pub fixed_funcref_entries: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareError(pub String);

impl fmt::Display for PrepareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PrepareError {}

/// A parse or validation error of a module being prepared.
fn invalid(e: wasmparser::BinaryReaderError) -> PrepareError {
    PrepareError(e.to_string())
}

/// What wasmer 7.4 with Cranelift (and exceptions enabled, as `engine` configures it)
/// compiles; a prepared module must validate with exactly these.
fn wasmer_features() -> WasmFeatures {
    WasmFeatures::MUTABLE_GLOBAL
        | WasmFeatures::SATURATING_FLOAT_TO_INT
        | WasmFeatures::SIGN_EXTENSION
        | WasmFeatures::FLOATS
        | WasmFeatures::GC_TYPES
        | WasmFeatures::BULK_MEMORY
        | WasmFeatures::REFERENCE_TYPES
        | WasmFeatures::MULTI_VALUE
        | WasmFeatures::SIMD
        | WasmFeatures::MULTI_MEMORY
        | WasmFeatures::EXTENDED_CONST
        | WasmFeatures::THREADS
        | WasmFeatures::EXCEPTIONS
}

/// What preparation accepts: wasmer's features plus the two that the passes remove.
fn input_features() -> WasmFeatures {
    wasmer_features() | WasmFeatures::MEMORY64 | WasmFeatures::LEGACY_EXCEPTIONS
}

/// wasmer 7.4's Cranelift translator gives an exnref read from a global or a table another
/// IR type than an exnref local, and panics (poisoning the engine for every later compile)
/// as soon as one flows into a local; it also refuses exnref element segments. So a module
/// that declares or imports an exnref global or table is refused here, with an error.
/// (Exceptions themselves, caught with `catch_ref` into locals, are unaffected.)
fn refuse_exnref_storage(types: wasmparser::types::TypesRef<'_>) -> Result<(), PrepareError> {
    let is_exn = |ty: wasmparser::RefType| {
        matches!(
            ty.heap_type(),
            wasmparser::HeapType::Abstract {
                ty: wasmparser::AbstractHeapType::Exn,
                ..
            }
        )
    };
    let global = (0..types.global_count()).find(|&i| match types.global_at(i).content_type {
        wasmparser::ValType::Ref(ty) => is_exn(ty),
        _ => false,
    });
    let table = (0..types.table_count()).find(|&i| is_exn(types.table_at(i).element_type));
    match (global, table) {
        (Some(i), _) => Err(PrepareError(format!(
            "unsupported: global {i} holds exnref, which wasmer cannot compile"
        ))),
        (_, Some(i)) => Err(PrepareError(format!(
            "unsupported: table {i} holds exnref, which wasmer cannot compile"
        ))),
        _ => Ok(()),
    }
}

/// Refuses imports from [`RESERVED_IMPORT_MODULE`] and more than [`MAX_IMPORTS`] imports or
/// [`MAX_EXPORTS`] exports.
fn check_imports_and_exports(types: wasmparser::types::TypesRef<'_>) -> Result<(), PrepareError> {
    let mut imports = 0;
    for (module, name, _) in types.core_imports().into_iter().flatten() {
        if module == RESERVED_IMPORT_MODULE {
            return Err(PrepareError(format!(
                "imports {module}.{name}: the import module name {RESERVED_IMPORT_MODULE} is reserved for hb_beamr"
            )));
        }
        imports += 1;
    }
    let exports = types.core_exports().into_iter().flatten().count();
    if imports > MAX_IMPORTS {
        return Err(PrepareError(format!(
            "{imports} imports, more than the {MAX_IMPORTS} hb_beamr allows"
        )));
    }
    if exports > MAX_EXPORTS {
        return Err(PrepareError(format!(
            "{exports} exports, more than the {MAX_EXPORTS} hb_beamr allows"
        )));
    }
    Ok(())
}

/// Rewrites `wasm` (a binary module) into a module wasmer can compile and run as WAMR would.
pub fn prepare(wasm: &[u8], opts: &PrepareOptions) -> Result<PreparedModule, PrepareError> {
    let types = if opts.deterministic {
        // Threads make the order of memory accesses depend on scheduling; without the
        // proposal, shared memories and atomic instructions fail validation. Relaxed SIMD
        // (results differ between CPUs) is refused in every mode: wasmer does not enable it.
        Validator::new_with_features(input_features() - WasmFeatures::THREADS)
            .validate_all(wasm)
            .map_err(|e| PrepareError(format!("deterministic mode refuses this module: {e}")))?
    } else {
        Validator::new_with_features(input_features())
            .validate_all(wasm)
            .map_err(invalid)?
    };
    refuse_exnref_storage(types.as_ref())?;
    check_imports_and_exports(types.as_ref())?;

    let memory0_is_64 = types.as_ref().memory_count() > 0 && types.as_ref().memory_at(0).memory64;
    let lowered = memory64::lower(wasm, types.as_ref())?;
    let wasm = lowered.as_deref().unwrap_or(wasm);
    let translated = exceptions::translate_legacy_exceptions(wasm)?;
    let wasm = translated.as_deref().unwrap_or(wasm);
    let finished = finish::finish(wasm, opts, memory0_is_64)?;
    let instrumented = interrupt::instrument(&finished.wasm, opts.memory_limit)?;
    let wasm = instrumented.unwrap_or(finished.wasm);

    Validator::new_with_features(wasmer_features())
        .validate_all(&wasm)
        .map_err(|e| PrepareError(format!("preparation produced an invalid module: {e}")))?;
    Ok(PreparedModule {
        wasm,
        memory64_lowered: lowered.is_some(),
        exceptions_translated: translated.is_some(),
        wamr_extra_page: finished.wamr_extra_page,
        initial_footprint: finished.initial_footprint,
        fixed_funcref_entries: finished.fixed_funcref_entries,
    })
}

/// Shared by the passes' unit tests: compiling and running prepared modules on the real engine.
#[cfg(test)]
pub(crate) mod test_support {
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
        let instance = Instance::new(&mut store, &module, &imports).unwrap();
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
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use std::time::Instant;
    use wasmer::{imports, Function, FunctionType, Instance, Module, Store, Type, Value};

    #[test]
    fn rejects_garbage_and_invalid_modules() {
        let opts = PrepareOptions::default();
        assert!(prepare(b"not wasm at all", &opts).is_err());
        assert!(prepare(&[], &opts).is_err());
        let wasm =
            wat::parse_str("(module (func (export \"f\") (result i32) i32.const 1))").unwrap();
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
            "(module (global exnref (ref.null exn)) (func (local exnref) (local.set 0 (global.get 0))))",
            "(module (import \"m\" \"g\" (global exnref)) (func (local exnref) (local.set 0 (global.get 0))))",
            "(module (table 1 exnref) (func (local exnref) (local.set 0 (table.get 0 (i32.const 0)))))",
            "(module (table i64 1 exnref))",
        ] {
            let error = prepare(&wat::parse_str(wat).unwrap(), &opts).unwrap_err();
            assert!(error.0.contains("exnref, which wasmer cannot compile"), "{wat}: {error}");
        }
        // Exceptions caught into exnref locals are fine.
        let (mut store, instance) = instantiate(
            r#"(module (tag $t)
                (func (export "f") (local exnref)
                    (local.set 0 (block (result exnref) (try_table (catch_all_ref 0) (throw $t)) unreachable))))"#,
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
        let atomic = wat::parse_str(
            "(module (memory 1) (func (result i32) (i32.atomic.load (i32.const 0))))",
        )
        .unwrap();
        let relaxed = wat::parse_str(
            "(module (func (param v128 v128) (result v128) (f32x4.relaxed_min (local.get 0) (local.get 1))))",
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
            let error =
                prepare(&wat::parse_str(wat).unwrap(), &PrepareOptions::default()).unwrap_err();
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
        let instance = Instance::new(&mut store, &module, &imports).unwrap();
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
        let instance = Instance::new(&mut store, &module, &imports).unwrap();
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
        let env = r#"{"Process":{"Id":"AOS","Owner":"FOOBAR","Tags":[{"name":"Name","value":"Thomas"},{"name":"Authority","value":"FOOBAR"}]}}"#;
        for (code, expected) in [
            ("1 + 1", "2"),
            (
                "local s=0 for i=1,1000000 do s=s+i end return s",
                "500000500000",
            ),
        ] {
            let msg = format!(
                r#"{{"From":"FOOBAR","Block-Height":"1","Target":"AOS","Owner":"FOOBAR","Id":"1","Module":"W","Tags":[{{"name":"Action","value":"Eval"}}],"Data":"{code}"}}"#
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
}
