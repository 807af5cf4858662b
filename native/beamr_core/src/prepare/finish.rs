//! The last pass: adds the host exports and WAMR's extra page (see [`super::host_exports`]
//! and [`super::wamr_layout`]) and fits every memory and table to the `memory_limit`
//! budget, in one sweep that rewrites only the memory, table and export sections and
//! copies every other section byte for byte, so it costs next to nothing even on large
//! modules.
//!
//! The budget covers all memories and tables together; that is enforced when they grow
//! (the interruption pass guards `memory.grow` and `table.grow`). Here each one's declared
//! maximum is lowered to what fits the budget alone, so that wasmer never holds a maximum it
//! would try to honour beyond it, and every table gets a maximum: wasmer grows a table
//! without one as far as asked, and a failed allocation aborts the process.

use std::convert::Infallible;

use wasm_encoder::reencode::{utils, Error as ReencodeError, Reencode, RoundtripReencoder};
use wasm_encoder::{
    AbstractHeapType, ExportSection, HeapType, MemorySection, Module, RawSection, TableSection,
};
use wasmparser::{ExportSectionReader, Parser, Payload};

use super::error::{invalid, PrepareError};
use super::options::{PrepareOptions, FIXED_FUNCREF_ENTRY_BYTES, TABLE_ENTRY_BYTES};
use super::reserved::RESERVED_EXPORT_PREFIX;
use super::summary::ModuleSummary;
use super::{host_exports, wamr_layout};

pub(super) struct Finished {
    pub wasm: Vec<u8>,
    pub wamr_extra_page: bool,
    /// See [`super::PreparedModule::initial_footprint`].
    pub initial_footprint: u64,
    pub fixed_funcref_entries: u64,
}

const PAGE_BYTES: u64 = 65536;

/// The most entries wasmer 7.4 lets a table have (`wasmer_vm::table::TABLE_MAX_SIZE`):
/// it refuses to instantiate a table whose minimum or maximum is larger.
pub(super) const WASMER_MAX_TABLE_ENTRIES: u64 = 1 << 27;

/// `memory0_lowered`: memory 0 was a 64-bit memory (see [`wamr_layout::add_page`]).
pub(super) fn finish(
    wasm: &[u8],
    opts: &PrepareOptions,
    memory0_lowered: bool,
) -> Result<Finished, PrepareError> {
    let summary = ModuleSummary::read(wasm).map_err(invalid)?;
    let added_exports = host_exports::host_exports(&summary);
    let wamr_extra_page = opts.wamr_compat && wamr_layout::needs_extra_page(wasm, &summary)?;

    let mut module = Module::new();
    let mut initial_footprint = 0u64;
    let mut fixed_funcref_entries = 0;
    // A module without exports gets an export section only if there is something to add.
    let mut exports_written = added_exports.is_empty();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(invalid)?;
        match &payload {
            Payload::MemorySection(reader) => {
                let mut memories = MemorySection::new();
                for (index, memory) in reader.clone().into_iter().enumerate() {
                    let mut memory =
                        utils::memory_type(&mut RoundtripReencoder, memory.map_err(invalid)?);
                    // Only a defined memory 0 gets the page, so index 0 here is memory 0.
                    if index == 0 && wamr_extra_page {
                        wamr_layout::add_page(&mut memory, memory0_lowered);
                    }
                    fit_memory(&mut memory, opts.memory_limit);
                    initial_footprint =
                        initial_footprint.saturating_add(memory.minimum.saturating_mul(PAGE_BYTES));
                    memories.memory(memory);
                }
                module.section(&memories);
                continue;
            }
            Payload::TableSection(reader) => {
                let mut fit = FitTables {
                    memory_limit: opts.memory_limit,
                    initial_entries: 0,
                    fixed_funcref_entries: 0,
                };
                let mut tables = TableSection::new();
                fit.parse_table_section(&mut tables, reader.clone())
                    .map_err(|e| PrepareError(format!("tables: {e}")))?;
                let bytes = fit
                    .initial_entries
                    .saturating_mul(TABLE_ENTRY_BYTES)
                    .saturating_add(
                        fit.fixed_funcref_entries
                            .saturating_mul(FIXED_FUNCREF_ENTRY_BYTES),
                    );
                initial_footprint = initial_footprint.saturating_add(bytes);
                fixed_funcref_entries = fit.fixed_funcref_entries;
                module.section(&tables);
                continue;
            }
            Payload::ExportSection(reader) => {
                module.section(&export_section(Some(reader.clone()), &added_exports)?);
                exports_written = true;
                continue;
            }
            // Exported instead (see `host_exports`); the section after it still finds the
            // export section written.
            Payload::StartSection { .. } => {
                if !exports_written {
                    module.section(&export_section(None, &added_exports)?);
                    exports_written = true;
                }
                continue;
            }
            _ => {}
        }
        let Some((id, range)) = payload.as_section() else {
            continue;
        };
        if !exports_written && follows_exports(id) {
            module.section(&export_section(None, &added_exports)?);
            exports_written = true;
        }
        module.section(&RawSection {
            id,
            data: &wasm[range.start as usize..range.end as usize],
        });
    }
    if !exports_written {
        module.section(&export_section(None, &added_exports)?);
    }
    Ok(Finished {
        wasm: module.finish(),
        wamr_extra_page,
        initial_footprint,
        fixed_funcref_entries,
    })
}

/// The module's own exports followed by the host exports. An export of the module's own
/// under a reserved name is dropped: it would be hidden from users anyway, and it could
/// collide with ours (as when an already prepared module is prepared again).
fn export_section(
    original: Option<ExportSectionReader<'_>>,
    added: &[host_exports::HostExport],
) -> Result<ExportSection, PrepareError> {
    let mut section = ExportSection::new();
    for export in original.into_iter().flatten() {
        let export = export.map_err(invalid)?;
        if !export.name.starts_with(RESERVED_EXPORT_PREFIX) {
            RoundtripReencoder
                .parse_export(&mut section, export)
                .map_err(|e| PrepareError(format!("host exports: {e}")))?;
        }
    }
    for export in added {
        section.export(&export.name, export.kind, export.index);
    }
    Ok(section)
}

/// Lowers a memory's maximum to the pages that fit `memory_limit` bytes. One that starts
/// beyond them keeps its initial size as its maximum: its initial footprint is over the
/// budget, and the caller refuses it.
fn fit_memory(memory: &mut wasm_encoder::MemoryType, memory_limit: u64) {
    let cap = memory_limit / PAGE_BYTES;
    // All memories are 32-bit by now.
    if memory.maximum.unwrap_or(wamr_layout::WASM32_MAX_PAGES) > cap {
        memory.maximum = Some(cap.max(memory.minimum));
    }
}

/// Rewrites the table section with every table's maximum set to at most the entries that
/// fit `memory_limit` bytes and wasmer's own cap (or its initial size, if larger: the
/// module is then refused, by the caller over the budget, by wasmer over its cap), and
/// counts the tables' initial entries and those of the funcref tables that end up of fixed
/// size.
struct FitTables {
    memory_limit: u64,
    initial_entries: u64,
    fixed_funcref_entries: u64,
}

impl Reencode for FitTables {
    type Error = Infallible;

    fn table_type(
        &mut self,
        table_ty: wasmparser::TableType,
    ) -> Result<wasm_encoder::TableType, ReencodeError<Infallible>> {
        let mut table = utils::table_type(self, table_ty)?;
        let cap = (self.memory_limit / TABLE_ENTRY_BYTES).min(WASMER_MAX_TABLE_ENTRIES);
        table.maximum = Some(
            table
                .maximum
                .map_or(cap, |maximum| maximum.min(cap))
                .max(table.minimum),
        );
        self.initial_entries = self.initial_entries.saturating_add(table.minimum);
        let funcref = matches!(
            table.element_type.heap_type,
            HeapType::Abstract {
                ty: AbstractHeapType::Func,
                ..
            }
        );
        if funcref && table.maximum == Some(table.minimum) {
            self.fixed_funcref_entries = self.fixed_funcref_entries.saturating_add(table.minimum);
        }
        Ok(table)
    }
}

/// Whether a section with this id must come after the export section.
fn follows_exports(id: u8) -> bool {
    const START: u8 = 8;
    const ELEMENT: u8 = 9;
    const CODE: u8 = 10;
    const DATA: u8 = 11;
    const DATA_COUNT: u8 = 12;
    matches!(id, START | ELEMENT | CODE | DATA | DATA_COUNT)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{call, with_check};
    use super::super::{
        prepare, PrepareOptions, DEFAULT_MEMORY_LIMIT, FIXED_FUNCREF_ENTRY_BYTES, TABLE_ENTRY_BYTES,
    };
    use super::WASMER_MAX_TABLE_ENTRIES;
    use wasmer::{imports, Instance, Module, Store, Value};

    fn prepared(wat: &str, memory_limit: u64) -> super::super::PreparedModule {
        let opts = PrepareOptions {
            wamr_compat: false,
            memory_limit,
            ..Default::default()
        };
        prepare(&wat::parse_str(wat).unwrap(), &opts).unwrap()
    }

    /// A memory's or a table's (initial, maximum).
    type Limits = (u64, Option<u64>);

    /// Every memory's and table's limits after preparation.
    fn limits(wasm: &[u8]) -> (Vec<Limits>, Vec<Limits>) {
        let types = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(wasm)
            .unwrap();
        let types = types.as_ref();
        let memories = (0..types.memory_count())
            .map(|i| types.memory_at(i))
            .map(|m| (m.initial, m.maximum));
        let tables = (0..types.table_count())
            .map(|i| types.table_at(i))
            .map(|t| (t.initial, t.maximum));
        (memories.collect(), tables.collect())
    }

    fn instantiate(wasm: &[u8]) -> (Store, Instance) {
        let engine = crate::engine::engine();
        let module = Module::new(engine, wasm).unwrap();
        let mut store = Store::new(engine.clone());
        let imports = with_check(&mut store, imports! {});
        let instance = Instance::new(&mut store, &module, &imports).unwrap();
        (store, instance)
    }

    const MEMORIES_AND_TABLES: &str = r#"(module
        (memory 1) (memory 1 1000) (memory 1 2)
        (table 1 funcref) (table 2 10 externref) (table 3 4000000000 funcref))"#;

    #[test]
    fn every_memory_and_table_maximum_fits_the_limit_alone() {
        let (memories, tables) = limits(&prepared(MEMORIES_AND_TABLES, 128 << 10).wasm);
        assert_eq!(memories, [(1, Some(2)), (1, Some(2)), (1, Some(2))]);
        assert_eq!(tables, [(1, Some(16384)), (2, Some(10)), (3, Some(16384))]);
        // A memory or table that starts beyond the limit keeps its initial size as maximum
        // (the module is refused for its footprint, see below).
        let (memories, tables) =
            limits(&prepared("(module (memory 3 5) (table 20000 funcref))", 128 << 10).wasm);
        assert_eq!(
            (memories, tables),
            (vec![(3, Some(3))], vec![(20000, Some(20000))])
        );
    }

    #[test]
    fn the_default_limit_leaves_memories_and_gives_tables_wasmers_cap() {
        let (memories, tables) = limits(&prepared(MEMORIES_AND_TABLES, DEFAULT_MEMORY_LIMIT).wasm);
        assert_eq!(memories, [(1, None), (1, Some(1000)), (1, Some(2))]);
        assert_eq!(
            tables,
            [
                (1, Some(WASMER_MAX_TABLE_ENTRIES)),
                (2, Some(10)),
                (3, Some(WASMER_MAX_TABLE_ENTRIES))
            ]
        );
        // wasmer refused the declared 4,000,000,000; the fitted module instantiates.
        instantiate(&prepared(MEMORIES_AND_TABLES, DEFAULT_MEMORY_LIMIT).wasm);
    }

    /// wasmer 7.4 refuses tables beyond its cap, which the clamp relies on; a wasmer that
    /// changes it must change [`WASMER_MAX_TABLE_ENTRIES`] too.
    #[test]
    fn wasmers_table_cap_is_what_the_clamp_assumes() {
        let engine = crate::engine::engine();
        let mut store = Store::new(engine.clone());
        for (maximum, accepted) in [
            (WASMER_MAX_TABLE_ENTRIES, true),
            (WASMER_MAX_TABLE_ENTRIES + 1, false),
        ] {
            let wasm = wat::parse_str(format!("(module (table 0 {maximum} funcref))")).unwrap();
            let module = Module::new(engine, wasm).unwrap();
            let imports = imports! {};
            assert_eq!(
                Instance::new(&mut store, &module, &imports).is_ok(),
                accepted,
                "maximum {maximum}"
            );
        }
    }

    /// Issue 19, defect 1: `table.grow` by 0xFFFFFFFA on a table without a maximum made
    /// wasmer resize a vector to 32 GiB, and the failed allocation aborted the process.
    #[test]
    fn growing_past_the_fitted_maxima_returns_minus_one() {
        let wat = r#"(module (memory 1) (table 1 funcref) (table 1 externref)
            (func (export "grow_funcs") (param i32) (result i32) (table.grow 0 (ref.null func)
              (local.get 0)))
            (func (export "grow_externs") (param i32) (result i32) (table.grow 1
              (ref.null extern) (local.get 0)))
            (func (export "grow_memory") (param i32) (result i32) (memory.grow (local.get 0))))"#;
        for memory_limit in [DEFAULT_MEMORY_LIMIT, 128 << 10] {
            let (mut store, instance) = instantiate(&prepared(wat, memory_limit).wasm);
            for grow in ["grow_funcs", "grow_externs"] {
                let result = call(
                    &mut store,
                    &instance,
                    grow,
                    &[Value::I32(0xFFFF_FFFAu32 as i32)],
                )
                .unwrap();
                assert_eq!(
                    result[0],
                    Value::I32(-1),
                    "{grow} with a limit of {memory_limit}"
                );
            }
        }
        // Two pages and the two tables' entries fit exactly; memory and tables share it.
        let limit = (128 << 10) + 2 * TABLE_ENTRY_BYTES;
        let (mut store, instance) = instantiate(&prepared(wat, limit).wasm);
        assert_eq!(
            call(&mut store, &instance, "grow_memory", &[Value::I32(1)]).unwrap()[0],
            Value::I32(1)
        );
        assert_eq!(
            call(&mut store, &instance, "grow_memory", &[Value::I32(1)]).unwrap()[0],
            Value::I32(-1)
        );
        assert_eq!(
            call(&mut store, &instance, "grow_funcs", &[Value::I32(1)]).unwrap()[0],
            Value::I32(-1)
        );
        let (mut store, instance) = instantiate(&prepared(wat, limit).wasm);
        let entries = (65536 / TABLE_ENTRY_BYTES) as i32;
        assert_eq!(
            call(
                &mut store,
                &instance,
                "grow_funcs",
                &[Value::I32(entries + 1)]
            )
            .unwrap()[0],
            Value::I32(-1)
        );
        assert_eq!(
            call(&mut store, &instance, "grow_funcs", &[Value::I32(entries)]).unwrap()[0],
            Value::I32(1)
        );
        assert_eq!(
            call(&mut store, &instance, "grow_memory", &[Value::I32(1)]).unwrap()[0],
            Value::I32(-1)
        );
    }

    #[test]
    fn the_initial_footprint_counts_defined_memories_and_tables_with_wamrs_page() {
        let wat = r#"(module (import "env" "m" (memory 7)) (import "env" "t" (table 9 funcref))
            (memory 2) (table 3 funcref) (table 4 externref))"#;
        assert_eq!(
            prepared(wat, DEFAULT_MEMORY_LIMIT).initial_footprint,
            2 * 65536 + 7 * TABLE_ENTRY_BYTES
        );
        // wasmer also lays a funcref table of fixed size out in the instance.
        let fixed = prepared(
            "(module (table 2 2 funcref) (table 3 3 externref))",
            DEFAULT_MEMORY_LIMIT,
        );
        assert_eq!(
            fixed.initial_footprint,
            2 * (TABLE_ENTRY_BYTES + FIXED_FUNCREF_ENTRY_BYTES) + 3 * TABLE_ENTRY_BYTES
        );
        assert_eq!(fixed.fixed_funcref_entries, 2);
        let wat = "(module (memory 1) (memory 3) (table 5 funcref) (func (drop (memory.size))))";
        let opts = PrepareOptions::default();
        let with_page = prepare(&wat::parse_str(wat).unwrap(), &opts).unwrap();
        assert!(with_page.wamr_extra_page);
        assert_eq!(
            with_page.initial_footprint,
            (1 + 1 + 3) * 65536 + 5 * TABLE_ENTRY_BYTES
        );
        assert_eq!(
            prepared("(module)", DEFAULT_MEMORY_LIMIT).initial_footprint,
            0
        );
    }
}
