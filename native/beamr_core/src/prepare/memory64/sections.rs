//! The sections of the lowered module: memory and table types, the imports replacing
//! unfittable definitions, segment offsets and function bodies.

use wasm_encoder::reencode::{utils, Error as ReencodeError, Reencode};
use wasm_encoder::{
    CodeSection, DataSection, ElementSection, ImportSection, MemArg, MemorySection, SectionId,
    TableSection,
};
use wasmparser::{
    CodeSectionReader, DataKind, ElementKind, ImportSectionReader, MemorySectionReader,
    TableSectionReader, TypeRef,
};

use crate::prepare::error::PrepareError;

use super::entities::{clamp_maximum, MAX_LOWERED_PAGES, MAX_LOWERED_TABLE_ELEMENTS};
use super::lowering::Lowering;
use super::narrow::{lowered_offset, SENTINEL};

impl Reencode for Lowering<'_> {
    type Error = PrepareError;

    fn memory_index(&mut self, memory: u32) -> Result<u32, ReencodeError<PrepareError>> {
        Ok(self.memories[memory as usize].new_index)
    }

    fn table_index(&mut self, table: u32) -> Result<u32, ReencodeError<PrepareError>> {
        Ok(self.tables[table as usize].new_index)
    }

    /// Only called for memories that fit (the others become unsatisfiable imports).
    fn memory_type(
        &mut self,
        ty: wasmparser::MemoryType,
    ) -> Result<wasm_encoder::MemoryType, ReencodeError<PrepareError>> {
        let mut lowered = utils::memory_type(self, ty);
        if ty.memory64 {
            lowered.memory64 = false;
            lowered.maximum = Some(clamp_maximum(ty.maximum, MAX_LOWERED_PAGES));
        }
        Ok(lowered)
    }

    /// Only called for tables that fit (the others become unsatisfiable imports).
    fn table_type(
        &mut self,
        ty: wasmparser::TableType,
    ) -> Result<wasm_encoder::TableType, ReencodeError<PrepareError>> {
        let mut lowered = utils::table_type(self, ty)?;
        if ty.table64 {
            lowered.table64 = false;
            lowered.maximum = Some(clamp_maximum(ty.maximum, MAX_LOWERED_TABLE_ELEMENTS));
        }
        Ok(lowered)
    }

    /// Renames the unfittable imports and appends the unfittable definitions.
    fn parse_import_section(
        &mut self,
        imports: &mut ImportSection,
        section: ImportSectionReader<'_>,
    ) -> Result<(), ReencodeError<PrepareError>> {
        let (mut memories, mut tables) = (0..self.memories.len(), 0..self.tables.len());
        for import in section.into_imports() {
            let import = import?;
            let entity = match import.ty {
                TypeRef::Memory(_) => memories.next().map(|index| &self.memories[index]),
                TypeRef::Table(_) => tables.next().map(|index| &self.tables[index]),
                _ => None,
            };
            match entity.and_then(|entity| entity.unfittable.clone()) {
                Some(name) => self.import_unsatisfiable(imports, &name, import.ty)?,
                None => self.parse_import(imports, import)?,
            }
        }
        self.import_unfittable_definitions(imports)
    }

    /// A module without imports gets an import section for its unfittable definitions
    /// where the import section belongs: before the first section that must follow it.
    fn intersperse_section_hook(
        &mut self,
        module: &mut wasm_encoder::Module,
        _after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), ReencodeError<PrepareError>> {
        if !self.definitions_imported
            && !matches!(before, Some(SectionId::Type | SectionId::Import))
        {
            let mut imports = ImportSection::new();
            self.import_unfittable_definitions(&mut imports)?;
            if !imports.is_empty() {
                module.section(&imports);
            }
        }
        Ok(())
    }

    /// Leaves out the unfittable memories, imported instead.
    fn parse_memory_section(
        &mut self,
        memories: &mut MemorySection,
        section: MemorySectionReader<'_>,
    ) -> Result<(), ReencodeError<PrepareError>> {
        let first = self.memories.len() - section.count() as usize;
        for (index, memory) in (first..).zip(section) {
            let memory = memory?;
            if self.memories[index].unfittable.is_none() {
                memories.memory(self.memory_type(memory)?);
            }
        }
        Ok(())
    }

    /// Leaves out the unfittable tables, imported instead.
    fn parse_table_section(
        &mut self,
        tables: &mut TableSection,
        section: TableSectionReader<'_>,
    ) -> Result<(), ReencodeError<PrepareError>> {
        let first = self.tables.len() - section.count() as usize;
        for (index, table) in (first..).zip(section) {
            let table = table?;
            if self.tables[index].unfittable.is_none() {
                self.parse_table(tables, table)?;
            }
        }
        Ok(())
    }

    fn mem_arg(&mut self, arg: wasmparser::MemArg) -> Result<MemArg, ReencodeError<PrepareError>> {
        let mut lowered = utils::mem_arg(self, arg)?;
        if self.is_lowered(arg.target) && lowered.offset > u64::from(u32::MAX) {
            // Out of bounds, but aligned as the original (see the `memory64` module docs).
            lowered.offset = u64::from(SENTINEL) | (lowered.offset & 15);
        }
        Ok(lowered)
    }

    fn parse_data(
        &mut self,
        data: &mut DataSection,
        datum: wasmparser::Data<'_>,
    ) -> Result<(), ReencodeError<PrepareError>> {
        match datum.kind {
            DataKind::Active {
                memory_index,
                offset_expr,
            } if self.memories[memory_index as usize].is64 => {
                let offset = lowered_offset(&offset_expr)?;
                data.active(
                    self.memory_index(memory_index)?,
                    &offset,
                    datum.data.iter().copied(),
                );
                Ok(())
            }
            _ => utils::parse_data(self, data, datum),
        }
    }

    fn parse_element(
        &mut self,
        elements: &mut ElementSection,
        element: wasmparser::Element<'_>,
    ) -> Result<(), ReencodeError<PrepareError>> {
        match element.kind {
            ElementKind::Active {
                table_index,
                offset_expr,
            } if self.tables[table_index.unwrap_or(0) as usize].is64 => {
                let offset = lowered_offset(&offset_expr)?;
                let items = self.element_items(element.items)?;
                // An implicit table 0 stays implicit only if it is still table 0.
                let table_index = match (table_index, self.table_index(table_index.unwrap_or(0))?) {
                    (None, 0) => None,
                    (_, new_index) => Some(new_index),
                };
                elements.active(table_index, &offset, items);
                Ok(())
            }
            _ => utils::parse_element(self, elements, element),
        }
    }

    fn parse_code_section(
        &mut self,
        code: &mut CodeSection,
        section: CodeSectionReader<'_>,
    ) -> Result<(), ReencodeError<PrepareError>> {
        let first_defined = self.types.function_count() - section.count();
        for (i, body) in section.into_iter().enumerate() {
            let ty = self.types.core_function_at(first_defined + i as u32);
            let params = self.types[ty].unwrap_func().params().len() as u32;
            code.function(&self.lower_function(body?, params)?);
        }
        Ok(())
    }

    fn parse_custom_section(
        &mut self,
        module: &mut wasm_encoder::Module,
        section: wasmparser::CustomSectionReader<'_>,
    ) -> Result<(), ReencodeError<PrepareError>> {
        // Copied as is: local names stay valid (scratch locals are only appended).
        module.section(&self.custom_section(section)?);
        Ok(())
    }
}
