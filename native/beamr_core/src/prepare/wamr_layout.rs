//! WAMR-compatible memory layout.
//!
//! WAMR reserves its app heap inside the module's memory: a module that defines memory 0,
//! does not export both `malloc` and `free`, and can grow or query its memory gets one more
//! 64 KiB page than it declares. HyperBEAM's tests and existing snapshots depend on that
//! size (aos-2-pure-xs reports 193 pages, not 192), so with `wamr_compat` memory 0 gets the
//! same extra page here. Like WAMR, the page is added to the maximum too (aos-2-pure-xs may
//! grow to 32,769 pages, not 32,768), which WAMR caps at 65,536 pages.
//!
//! A lowered 64-bit memory must stay below 4 GiB for its out-of-bounds guarantee (see
//! `memory64`), so its maximum is capped at [`MAX_LOWERED_PAGES`] instead: at that cap the
//! last page WAMR would allow cannot be grown (`memory.grow` returns -1). A memory (of either
//! kind) that starts at 65,535 pages or more gets no extra page at all.

use wasmparser::{BinaryReaderError, ExternalKind, Operator, Parser, Payload};

use super::error::{invalid, PrepareError};
use super::memory64::MAX_LOWERED_PAGES;
use super::summary::ModuleSummary;

pub(super) fn needs_extra_page(wasm: &[u8], summary: &ModuleSummary) -> Result<bool, PrepareError> {
    let Some(memory) = summary.defined_memory0 else {
        return Ok(false);
    };
    let exports_function = |name: &str| {
        summary
            .exports
            .iter()
            .any(|e| e.name == name && e.kind == ExternalKind::Func)
    };
    if memory.initial >= MAX_LOWERED_PAGES
        || (exports_function("malloc") && exports_function("free"))
    {
        return Ok(false);
    }
    uses_memory_size_or_grow(wasm).map_err(invalid)
}

/// The most pages WAMR (and wasm) lets a 32-bit memory have.
pub(super) const WASM32_MAX_PAGES: u64 = 65536;

/// Adds WAMR's page to the initial and maximum sizes of memory 0 (`lowered`: it was a 64-bit
/// memory). Without a maximum it may already grow as far as WAMR's memory could.
pub(super) fn add_page(memory: &mut wasm_encoder::MemoryType, lowered: bool) {
    let cap = if lowered {
        MAX_LOWERED_PAGES
    } else {
        WASM32_MAX_PAGES
    };
    memory.minimum += 1;
    if let Some(maximum) = &mut memory.maximum {
        *maximum = (*maximum + 1).min(cap);
    }
}

fn uses_memory_size_or_grow(wasm: &[u8]) -> Result<bool, BinaryReaderError> {
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::CodeSectionEntry(body) = payload? {
            let mut reader = body.get_operators_reader()?;
            while !reader.eof() {
                if matches!(
                    reader.read()?,
                    Operator::MemorySize { .. } | Operator::MemoryGrow { .. }
                ) {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{call, fixture, instantiate};
    use super::super::{prepare, PrepareOptions};
    use wasmer::Value;

    /// Memory 0's (initial, maximum) pages after preparation.
    fn pages(wasm: &[u8], wamr_compat: bool) -> (u64, Option<u64>) {
        pages_with(
            wasm,
            &PrepareOptions {
                wamr_compat,
                ..Default::default()
            },
        )
    }

    fn pages_with(wasm: &[u8], opts: &PrepareOptions) -> (u64, Option<u64>) {
        let prepared = prepare(wasm, opts).unwrap();
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
        assert_eq!(
            wat_pages("(module (memory 1 1) (func (drop (memory.grow (i32.const 0)))))"),
            2
        );
        assert_eq!(
            wat_pages("(module (memory 1) (func (drop (memory.size))))"),
            2
        );
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
    fn the_maximum_gets_the_page_too_up_to_the_cap() {
        let limits = |wat: &str| pages(&wat::parse_str(wat).unwrap(), true);
        let sized =
            |memory: &str| format!("(module (memory {memory}) (func (drop (memory.size))))");
        assert_eq!(limits(&sized("i64 1 2")), (2, Some(3)));
        assert_eq!(limits(&sized("1 2")), (2, Some(3)));
        assert_eq!(limits(&sized("1")), (2, None));
        // WAMR caps the maximum at 65,536 pages; a lowered memory64 memory at 65,535 (its
        // out-of-bounds guarantee), where WAMR's last page cannot be grown.
        assert_eq!(limits(&sized("1 65535")), (2, Some(65536)));
        assert_eq!(limits(&sized("1 65536")), (2, Some(65536)));
        assert_eq!(limits(&sized("i64 1 65534")), (2, Some(65535)));
        assert_eq!(limits(&sized("i64 1 65535")), (2, Some(65535)));
        assert_eq!(limits(&sized("i64 1")), (2, Some(65535)));
        assert_eq!(limits(&sized("i64 65534 65534")), (65535, Some(65535)));
        assert_eq!(limits(&sized("i64 65535")), (65535, Some(65535)));
        // memory_limit still caps the maximum, after the extra page.
        let limited = PrepareOptions {
            memory_limit: 2 * 65536,
            ..Default::default()
        };
        assert_eq!(
            pages_with(&wat::parse_str(sized("i64 1 2")).unwrap(), &limited),
            (2, Some(2))
        );
        let limited = PrepareOptions {
            memory_limit: 5 * 65536,
            ..Default::default()
        };
        assert_eq!(
            pages_with(&wat::parse_str(sized("i64 1 2")).unwrap(), &limited),
            (2, Some(3))
        );
    }

    #[test]
    fn a_module_can_grow_into_the_extra_page_of_its_maximum() {
        // WAMR: 2 pages, growing by one gives 3 (the declared maximum 2 plus WAMR's page).
        let (mut store, instance) = instantiate(
            r#"(module (memory i64 1 2)
                (func (export "grow") (param i64) (result i64) (memory.grow (local.get 0))))"#,
        );
        assert_eq!(
            call(&mut store, &instance, "grow", &[Value::I64(1)]).unwrap()[0],
            Value::I64(2)
        );
        assert_eq!(
            call(&mut store, &instance, "grow", &[Value::I64(1)]).unwrap()[0],
            Value::I64(-1)
        );
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
            let Some(wasm) = fixture(name) else {
                return;
            };
            assert_eq!(pages(&wasm, true).0, wamr, "{name}");
            assert_eq!(pages(&wasm, false).0, plain, "{name}");
        }
        let Some(aos) = fixture("aos-2-pure-xs.wasm") else {
            return;
        };
        assert_eq!(pages(&aos, true), (193, Some(32769)));
        assert_eq!(pages(&aos, false), (192, Some(32768)));
    }
}
