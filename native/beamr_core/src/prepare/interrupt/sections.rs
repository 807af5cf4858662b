//! The sections of the instrumented module: the added import, global, function and export,
//! and every function body.

use wasm_encoder::reencode::{utils, Error as ReencodeError, Reencode};
use wasm_encoder::{
    CodeSection, ExportSection, Function, FunctionSection, GlobalSection, ImportSection, Module,
    SectionId, TypeSection,
};
use wasmparser::{FunctionBody, Operator};

use super::costs::RegionCosts;
use super::instrument::{position, Instrument, Scratch};

impl Reencode for Instrument {
    type Error = std::convert::Infallible;

    fn function_index(&mut self, func: u32) -> Result<u32, ReencodeError> {
        Ok(if func >= self.layout.check_function() {
            func + 1
        } else {
            func
        })
    }

    fn parse_type_section(
        &mut self,
        types: &mut TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), ReencodeError> {
        utils::parse_type_section(self, types, section)?;
        self.add_types(types);
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), ReencodeError> {
        utils::parse_import_section(self, imports, section)?;
        self.add_check_import(imports);
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), ReencodeError> {
        utils::parse_global_section(self, globals, section)?;
        self.add_fuel_global(globals);
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), ReencodeError> {
        utils::parse_export_section(self, exports, section)?;
        self.add_fuel_export(exports);
        Ok(())
    }

    /// Creates the sections the pass adds to when the module has none of them.
    fn intersperse_section_hook(
        &mut self,
        module: &mut Module,
        after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), ReencodeError> {
        let after = after.map_or(0, position);
        let before = before.map_or(u8::MAX, position);
        for id in [
            SectionId::Type,
            SectionId::Import,
            SectionId::Global,
            SectionId::Export,
        ] {
            let place = position(id);
            if self.layout.present.contains(&id)
                || self.written.contains(&id)
                || place <= after
                || place >= before
            {
                continue;
            }
            match id {
                SectionId::Type => module.section(&{
                    let mut types = TypeSection::new();
                    self.add_types(&mut types);
                    types
                }),
                SectionId::Import => module.section(&{
                    let mut imports = ImportSection::new();
                    self.add_check_import(&mut imports);
                    imports
                }),
                SectionId::Global => module.section(&{
                    let mut globals = GlobalSection::new();
                    self.add_fuel_global(&mut globals);
                    globals
                }),
                _ => module.section(&{
                    let mut exports = ExportSection::new();
                    self.add_fuel_export(&mut exports);
                    exports
                }),
            };
            self.written.push(id);
        }
        Ok(())
    }

    /// Names are debug information: a name section that does not parse is dropped
    /// rather than failing a module that is valid without it.
    fn parse_custom_section(
        &mut self,
        module: &mut Module,
        section: wasmparser::CustomSectionReader<'_>,
    ) -> Result<(), ReencodeError> {
        match section.as_known() {
            wasmparser::KnownCustom::Name(names) => {
                if let Ok(names) = self.custom_name_section(names) {
                    module.section(&names);
                }
            }
            _ => {
                module.section(&self.custom_section(section)?);
            }
        }
        Ok(())
    }

    /// The footprint function comes after the module's own functions.
    fn parse_function_section(
        &mut self,
        functions: &mut FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), ReencodeError> {
        utils::parse_function_section(self, functions, section)?;
        functions.function(self.layout.footprint_type());
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), ReencodeError> {
        utils::parse_code_section(self, code, section)?;
        code.function(&self.footprint());
        Ok(())
    }

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        body: FunctionBody<'_>,
    ) -> Result<(), ReencodeError> {
        let costs = RegionCosts::of(&body)?;
        let mut locals = Vec::new();
        let mut first_scratch = self.layout.params(self.next_function);
        self.next_function += 1;
        for pair in body.get_locals_reader()? {
            let (count, ty) = pair?;
            first_scratch += count;
            locals.push((count, self.val_type(ty)?));
        }
        let mut scratch = Scratch {
            first: first_scratch,
            added: Vec::new(),
        };
        let mut instrumented = Vec::new();
        self.charge_fixed(&mut instrumented, costs.entry);
        let mut loops = costs.loops.iter();
        let mut reader = body.get_operators_reader()?;
        while !reader.eof() {
            let operator = reader.read()?;
            let is_loop = matches!(operator, Operator::Loop { .. });
            self.rewrite(&mut instrumented, &mut scratch, operator)?;
            if is_loop {
                let cost = loops.next().copied().expect("one cost per loop");
                self.charge_fixed(&mut instrumented, cost);
            }
        }
        locals.extend(scratch.added.iter().map(|&(ty, _)| (1, ty)));
        let mut function = Function::new(locals);
        function.raw(instrumented);
        code.function(&function);
        Ok(())
    }
}
