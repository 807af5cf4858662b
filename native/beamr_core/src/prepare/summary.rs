//! What the finishing pass needs to know of a module, read once from its header sections.

use std::collections::BTreeSet;

use super::reserved::START_EXPORT;
use wasmparser::{
    BinaryReaderError, ConstExpr, ElementItems, ElementKind, Export, ExternalKind, MemoryType,
    Operator, Parser, Payload, TypeRef,
};

/// The module-level facts the last pass decides from (host exports, WAMR layout, limits).
pub(super) struct ModuleSummary<'a> {
    pub memory_count: u32,
    /// Memory 0 when the module defines it rather than importing it.
    pub defined_memory0: Option<MemoryType>,
    pub table_count: u32,
    /// Per global index (imports first): is it mutable?
    pub global_mutability: Vec<bool>,
    pub exports: Vec<Export<'a>>,
    /// The functions a table or a funcref global may come to hold that the instance would
    /// not otherwise show the host (see `host_exports`), ascending.
    pub placeable_functions: Vec<u32>,
    /// The start function: the start section's, or (in a module prepared before) the one
    /// already exported as `START_EXPORT`.
    pub start: Option<u32>,
}

impl<'a> ModuleSummary<'a> {
    pub fn read(wasm: &'a [u8]) -> Result<Self, BinaryReaderError> {
        let mut summary = ModuleSummary {
            memory_count: 0,
            defined_memory0: None,
            table_count: 0,
            global_mutability: Vec::new(),
            exports: Vec::new(),
            placeable_functions: Vec::new(),
            start: None,
        };
        let mut placeable = BTreeSet::new();
        let mut has_start = false;
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
                        let global = global?;
                        summary.global_mutability.push(global.ty.mutable);
                        referenced(&global.init_expr, &mut placeable)?;
                    }
                }
                Payload::StartSection { func, .. } => {
                    has_start = true;
                    summary.start = Some(func);
                }
                Payload::ElementSection(reader) => {
                    for element in reader {
                        let element = element?;
                        // What active segments put into a table the host reads back from the
                        // table after instantiation (`state::StateAccess::new`), unless a
                        // start function ran first or the offset is more than a constant
                        // (extended constants, `global.get`), which the host does not evaluate.
                        if let ElementKind::Active { offset_expr, .. } = &element.kind {
                            if !has_start && constant_offset(offset_expr)? {
                                continue;
                            }
                        }
                        match element.items {
                            ElementItems::Functions(indices) => {
                                for index in indices {
                                    placeable.insert(index?);
                                }
                            }
                            ElementItems::Expressions(_, exprs) => {
                                for expr in exprs {
                                    referenced(&expr?, &mut placeable)?;
                                }
                            }
                        }
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
        for export in &summary.exports {
            if export.kind == ExternalKind::Func && export.name == START_EXPORT {
                summary.start = summary.start.or(Some(export.index));
            }
            if export.kind == ExternalKind::Func {
                placeable.remove(&export.index);
            }
        }
        summary.placeable_functions = placeable.into_iter().collect();
        Ok(summary)
    }
}

/// Adds the functions `expr` references (`ref.func`) to `functions`.
fn referenced(expr: &ConstExpr, functions: &mut BTreeSet<u32>) -> Result<(), BinaryReaderError> {
    for op in expr.get_operators_reader() {
        if let Operator::RefFunc { function_index } = op? {
            functions.insert(function_index);
        }
    }
    Ok(())
}

/// Whether `expr` is a single `i32.const` or `i64.const`, the offsets the host reads active
/// segments back at.
fn constant_offset(expr: &ConstExpr) -> Result<bool, BinaryReaderError> {
    let ops = expr
        .get_operators_reader()
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(matches!(
        ops[..],
        [
            Operator::I32Const { .. } | Operator::I64Const { .. },
            Operator::End
        ]
    ))
}
