//! The last pass: adds the host exports and WAMR's extra page (see [`super::host_exports`]
//! and [`super::wamr_layout`]) in one sweep that rewrites only the memory and export
//! sections and copies every other section byte for byte, so it costs next to nothing
//! even on large modules.

use wasm_encoder::reencode::{utils, Reencode, RoundtripReencoder};
use wasm_encoder::{ExportSection, MemorySection, Module, RawSection};
use wasmparser::{ExportSectionReader, Parser, Payload};

use super::summary::ModuleSummary;
use super::{host_exports, invalid, wamr_layout, PrepareError, PrepareOptions, RESERVED_EXPORT_PREFIX};

pub(super) struct Finished {
    pub wasm: Vec<u8>,
    pub wamr_extra_page: bool,
}

/// `memory0_lowered`: memory 0 was a 64-bit memory (see [`wamr_layout::add_page`]).
pub(super) fn finish(wasm: &[u8], opts: &PrepareOptions, memory0_lowered: bool) -> Result<Finished, PrepareError> {
    let summary = ModuleSummary::read(wasm).map_err(invalid)?;
    let added_exports = host_exports::host_exports(&summary);
    let wamr_extra_page = opts.wamr_compat && wamr_layout::needs_extra_page(wasm, &summary)?;

    let mut module = Module::new();
    // A module without exports gets an export section only if there is something to add.
    let mut exports_written = added_exports.is_empty();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(invalid)?;
        match &payload {
            Payload::MemorySection(reader) if wamr_extra_page || opts.max_pages.is_some() => {
                let mut memories = MemorySection::new();
                for (index, memory) in reader.clone().into_iter().enumerate() {
                    let mut memory = utils::memory_type(&mut RoundtripReencoder, memory.map_err(invalid)?);
                    if index == 0 && wamr_extra_page {
                        wamr_layout::add_page(&mut memory, memory0_lowered);
                    }
                    if let (0, Some(limit), Some(_)) = (index, opts.max_pages, summary.defined_memory0) {
                        limit_growth(&mut memory, limit);
                    }
                    memories.memory(memory);
                }
                module.section(&memories);
                continue;
            }
            Payload::ExportSection(reader) => {
                module.section(&export_section(Some(reader.clone()), &added_exports)?);
                exports_written = true;
                continue;
            }
            _ => {}
        }
        let Some((id, range)) = payload.as_section() else { continue };
        if !exports_written && follows_exports(id) {
            module.section(&export_section(None, &added_exports)?);
            exports_written = true;
        }
        module.section(&RawSection { id, data: &wasm[range.start as usize..range.end as usize] });
    }
    if !exports_written {
        module.section(&export_section(None, &added_exports)?);
    }
    Ok(Finished { wasm: module.finish(), wamr_extra_page })
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

/// Caps how far a memory may grow. One that starts beyond the cap keeps its initial size
/// as its maximum: whoever set the cap refuses to instantiate it (see `memory_limit`).
fn limit_growth(memory: &mut wasm_encoder::MemoryType, max_pages: u64) {
    let maximum = memory.maximum.map_or(max_pages, |maximum| maximum.min(max_pages));
    memory.maximum = Some(maximum.max(memory.minimum));
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
