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

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
