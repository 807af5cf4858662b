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
//! 3. [`host_exports`] (including the start function, which is exported rather than run
//!    at instantiation) and 4. [`wamr_layout`]: applied together by [`finish`], which only
//!    rewrites the memory, table and export sections (also fitting every memory's and
//!    table's maximum to the `memory_limit` budget) and copies everything else byte for byte.
//! 5. [`interrupt`]: the fuel countdown through which running wasm is stopped, timed out
//!    and metered.

mod error;
mod exceptions;
mod finish;
mod host_exports;
pub mod interrupt;
mod memory64;
mod options;
mod reserved;
mod summary;
mod wamr_layout;

use wasmparser::{Validator, WasmFeatures};

use error::invalid;
pub use error::PrepareError;
pub use options::{
    PrepareOptions, PreparedModule, DEFAULT_MEMORY_LIMIT, FIXED_FUNCREF_ENTRY_BYTES, MAX_EXPORTS,
    MAX_FIXED_FUNCREF_ENTRIES, MAX_IMPORTS, TABLE_ENTRY_BYTES,
};
pub use reserved::{
    global_export_name, table_export_name, MEMORY_EXPORT, RESERVED_EXPORT_PREFIX,
    RESERVED_IMPORT_MODULE, START_EXPORT, TABLE_EXPORT,
};

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
                "imports {module}.{name}: the import module name {RESERVED_IMPORT_MODULE} is \
                    reserved for hb_beamr"
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

/// Instantiates a prepared module as wasm does: `Instance::new`, then its start function
/// (which preparation turned into [`START_EXPORT`]). The executor instantiates without it
/// when reviving an instance, and calls it itself, within a call's limits, when starting
/// one.
#[allow(clippy::result_large_err)] // wasmer's own error
pub fn instantiate_with_start(
    store: &mut impl wasmer::AsStoreMut,
    module: &wasmer::Module,
    imports: &wasmer::Imports,
) -> Result<wasmer::Instance, wasmer::InstantiationError> {
    let instance = wasmer::Instance::new(store, module, imports)?;
    if let Ok(start) = instance.exports.get_function(START_EXPORT) {
        start
            .call(store, &[])
            .map_err(wasmer::InstantiationError::Start)?;
    }
    Ok(instance)
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
