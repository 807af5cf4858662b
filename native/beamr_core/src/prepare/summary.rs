//! What the finishing pass needs to know of a module, read once from its header sections.

use wasmparser::{BinaryReaderError, Export, MemoryType, Parser, Payload, TypeRef};

/// The module-level facts the last pass decides from (host exports, WAMR layout, limits).
pub(super) struct ModuleSummary<'a> {
    pub memory_count: u32,
    /// Memory 0 when the module defines it rather than importing it.
    pub defined_memory0: Option<MemoryType>,
    pub table_count: u32,
    /// Per global index (imports first): is it mutable?
    pub global_mutability: Vec<bool>,
    pub exports: Vec<Export<'a>>,
}

impl<'a> ModuleSummary<'a> {
    pub fn read(wasm: &'a [u8]) -> Result<Self, BinaryReaderError> {
        let mut summary = ModuleSummary {
            memory_count: 0,
            defined_memory0: None,
            table_count: 0,
            global_mutability: Vec::new(),
            exports: Vec::new(),
        };
        for payload in Parser::new(0).parse_all(wasm) {
            match payload? {
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        match import?.ty {
                            TypeRef::Memory(_) => summary.memory_count += 1,
                            TypeRef::Table(_) => summary.table_count += 1,
                            TypeRef::Global(global) => {
                                summary.global_mutability.push(global.mutable)
                            }
                            _ => {}
                        }
                    }
                }
                Payload::MemorySection(reader) => {
                    for memory in reader {
                        let memory = memory?;
                        if summary.memory_count == 0 {
                            summary.defined_memory0 = Some(memory);
                        }
                        summary.memory_count += 1;
                    }
                }
                Payload::TableSection(reader) => summary.table_count += reader.count(),
                Payload::GlobalSection(reader) => {
                    for global in reader {
                        summary.global_mutability.push(global?.ty.mutable);
                    }
                }
                Payload::ExportSection(reader) => {
                    summary.exports = reader.into_iter().collect::<Result<_, _>>()?
                }
                // Everything this pass needs comes before the code.
                Payload::CodeSectionStart { .. } => break,
                _ => {}
            }
        }
        Ok(summary)
    }
}
