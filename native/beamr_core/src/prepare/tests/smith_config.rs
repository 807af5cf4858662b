//! The wasm-smith configuration of the generated-module tests ([`super::generated_smith`]) and
//! of `make fuzz`'s module generator (examples/fuzz_modules.rs, which includes this file).

use wasm_smith::Config;

/// Every feature preparation accepts on (but exceptions: each generator decides), every
/// proposal wasmer does not implement off, every function exported, and a few imports,
/// exports and segments.
pub fn wasmer_features() -> Config {
    Config {
        memory64_enabled: true,
        bulk_memory_enabled: true,
        reference_types_enabled: true,
        simd_enabled: true,
        threads_enabled: true,
        multi_value_enabled: true,
        extended_const_enabled: true,
        saturating_float_to_int_enabled: true,
        sign_extension_ops_enabled: true,
        relaxed_simd_enabled: false,
        gc_enabled: false,
        tail_call_enabled: false,
        compact_imports_enabled: false,
        wide_arithmetic_enabled: false,
        custom_page_sizes_enabled: false,
        shared_everything_threads_enabled: false,
        custom_descriptors_enabled: false,
        export_everything: true,
        max_imports: 6,
        max_exports: 30,
        max_data_segments: 8,
        max_element_segments: 8,
        ..Config::default()
    }
}

/// Memories of at most 16 MiB and tables of at most `table_elements` entries, which
/// preparation lowers and wasmer runs; without this, wasm-smith's limits go up to what the
/// index type allows (unfittable memories, clamped maximums).
pub fn keep_runnable(config: &mut Config, table_elements: u32) {
    config.max_memory32_bytes = 1 << 24;
    config.max_memory64_bytes = 1 << 24;
    config.max_table_elements = table_elements.into();
}
