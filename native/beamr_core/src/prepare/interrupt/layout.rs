//! What the rewrites need to know of a module before rewriting it.

use wasm_encoder::SectionId;
use wasmparser::{CompositeInnerType, Parser, Payload, RefType, TypeRef};

/// The index spaces the added items go into, and what the rewrites need to know of the
/// module's functions, memories and tables.
pub(super) struct Layout {
    /// Per type, its parameter count (0 for a type that is not a function's).
    pub(super) type_params: Vec<u32>,
    pub(super) imported_functions: u32,
    /// Per defined function, its type.
    pub(super) function_types: Vec<u32>,
    pub(super) globals: u32,
    /// Per memory (imported ones first), whether it is shared.
    pub(super) shared_memories: Vec<bool>,
    /// Per table (imported ones first), its element type.
    pub(super) table_elements: Vec<RefType>,
    /// Which of the sections the pass adds to exist already.
    pub(super) present: Vec<SectionId>,
}

impl Layout {
    pub(super) fn read(wasm: &[u8]) -> Result<Layout, wasmparser::BinaryReaderError> {
        let mut layout = Layout {
            type_params: Vec::new(),
            imported_functions: 0,
            function_types: Vec::new(),
            globals: 0,
            shared_memories: Vec::new(),
            table_elements: Vec::new(),
            present: Vec::new(),
        };
        for payload in Parser::new(0).parse_all(wasm) {
            match payload? {
                Payload::TypeSection(reader) => {
                    layout.present.push(SectionId::Type);
                    for group in reader {
                        for ty in group?.types() {
                            layout.type_params.push(match &ty.composite_type.inner {
                                CompositeInnerType::Func(func) => func.params().len() as u32,
                                _ => 0,
                            });
                        }
                    }
                }
                Payload::ImportSection(reader) => {
                    layout.present.push(SectionId::Import);
                    for import in reader.into_imports() {
                        match import?.ty {
                            TypeRef::Func(_) | TypeRef::FuncExact(_) => {
                                layout.imported_functions += 1
                            }
                            TypeRef::Global(_) => layout.globals += 1,
                            TypeRef::Memory(memory) => layout.shared_memories.push(memory.shared),
                            TypeRef::Table(table) => layout.table_elements.push(table.element_type),
                            TypeRef::Tag(_) => {}
                        }
                    }
                }
                Payload::FunctionSection(reader) => {
                    for ty in reader {
                        layout.function_types.push(ty?);
                    }
                }
                Payload::TableSection(reader) => {
                    for table in reader {
                        layout.table_elements.push(table?.ty.element_type);
                    }
                }
                Payload::MemorySection(reader) => {
                    for memory in reader {
                        layout.shared_memories.push(memory?.shared);
                    }
                }
                Payload::GlobalSection(reader) => {
                    layout.present.push(SectionId::Global);
                    layout.globals += reader.count();
                }
                Payload::ExportSection(_) => layout.present.push(SectionId::Export),
                _ => {}
            }
        }
        Ok(layout)
    }

    /// The index of the check function's type, appended to the type section.
    pub(super) fn check_type(&self) -> u32 {
        self.type_params.len() as u32
    }

    /// The index of the footprint function's type, after the check's.
    pub(super) fn footprint_type(&self) -> u32 {
        self.check_type() + 1
    }

    /// The check import comes right after the module's own function imports.
    pub(super) fn check_function(&self) -> u32 {
        self.imported_functions
    }

    /// The footprint function comes after all the module's own functions.
    pub(super) fn footprint_function(&self) -> u32 {
        self.imported_functions + 1 + self.function_types.len() as u32
    }

    pub(super) fn fuel_global(&self) -> u32 {
        self.globals
    }

    /// The parameter count of defined function `index`.
    pub(super) fn params(&self, index: usize) -> u32 {
        self.type_params[self.function_types[index] as usize]
    }
}
