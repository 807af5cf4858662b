//! WAMR-compatible memory layout.
//!
//! WAMR reserves its app heap inside the module's memory: a module that defines memory 0,
//! does not export both `malloc` and `free`, and can grow or query its memory gets one more
//! 64 KiB page than it declares. HyperBEAM's tests and existing snapshots depend on that
//! size (aos-2-pure-xs reports 193 pages, not 192), so with `wamr_compat` memory 0 gets the
//! same extra page here, its maximum raised to make room if needed.
//!
//! A memory already at [`MAX_LOWERED_PAGES`] gets no extra page: a lowered 64-bit memory
//! must stay below 4 GiB for its out-of-bounds guarantee (see `memory64`).

use wasmparser::{BinaryReaderError, ExternalKind, Operator, Parser, Payload};

use super::summary::ModuleSummary;
use super::memory64::MAX_LOWERED_PAGES;
use super::{invalid, PrepareError};

pub(super) fn needs_extra_page(wasm: &[u8], summary: &ModuleSummary) -> Result<bool, PrepareError> {
    let Some(memory) = summary.defined_memory0 else { return Ok(false) };
    let exports_function = |name: &str| summary.exports.iter().any(|e| e.name == name && e.kind == ExternalKind::Func);
    if memory.initial >= MAX_LOWERED_PAGES || (exports_function("malloc") && exports_function("free")) {
        return Ok(false);
    }
    uses_memory_size_or_grow(wasm).map_err(invalid)
}

pub(super) fn add_page(memory: &mut wasm_encoder::MemoryType) {
    memory.minimum += 1;
    if let Some(maximum) = &mut memory.maximum {
        *maximum = (*maximum).max(memory.minimum);
    }
}

fn uses_memory_size_or_grow(wasm: &[u8]) -> Result<bool, BinaryReaderError> {
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::CodeSectionEntry(body) = payload? {
            let mut reader = body.get_operators_reader()?;
            while !reader.eof() {
                if matches!(reader.read()?, Operator::MemorySize { .. } | Operator::MemoryGrow { .. }) {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::fixture;
    use super::super::{prepare, PrepareOptions};

    /// Memory 0's (initial, maximum) pages after preparation.
    fn pages(wasm: &[u8], wamr_compat: bool) -> (u64, Option<u64>) {
        let prepared = prepare(wasm, &PrepareOptions { wamr_compat, ..Default::default() }).unwrap();
        let types = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&prepared.wasm)
            .unwrap();
        let memory = types.as_ref().memory_at(0);
        (memory.initial, memory.maximum)
    }

    fn wat_pages(wat: &str) -> u64 {
        pages(&wat::parse_str(wat).unwrap(), true).0
    }

    #[test]
    fn adds_a_page_only_when_wamr_would() {
        assert_eq!(wat_pages("(module (memory 1 1) (func (drop (memory.grow (i32.const 0)))))"), 2);
        assert_eq!(wat_pages("(module (memory 1) (func (drop (memory.size))))"), 2);
        assert_eq!(wat_pages("(module (memory 1) (func))"), 1);
        let with_allocator = r#"(module (memory 1) (func (drop (memory.size)))
            (func (export "malloc") (param i32) (result i32) (i32.const 0))
            (func (export "free") (param i32)))"#;
        assert_eq!(wat_pages(with_allocator), 1);
        let malloc_only = r#"(module (memory 1) (func (drop (memory.size)))
            (func (export "malloc") (param i32) (result i32) (i32.const 0)))"#;
        assert_eq!(wat_pages(malloc_only), 2);
        let wasm = wat::parse_str("(module (memory 1 1) (func (drop (memory.size))))").unwrap();
        assert_eq!(pages(&wasm, true), (2, Some(2)));
        assert_eq!(pages(&wasm, false), (1, Some(1)));
    }

    #[test]
    fn leaves_imported_memory_alone() {
        let wat = r#"(module (import "env" "memory" (memory 1)) (func (drop (memory.size))))"#;
        assert_eq!(wat_pages(wat), 1);
    }

    #[test]
    fn real_fixtures_get_the_pages_wamr_reports() {
        for (name, plain, wamr) in [
            ("pow_calculator.wasm", 17, 18),
            ("test-print.wasm", 1, 1),
            ("test-calling.wasm", 258, 259),
            ("aos-2-pure-xs.wasm", 192, 193),
        ] {
            let wasm = fixture(name);
            assert_eq!(pages(&wasm, true).0, wamr, "{name}");
            assert_eq!(pages(&wasm, false).0, plain, "{name}");
        }
    }
}
