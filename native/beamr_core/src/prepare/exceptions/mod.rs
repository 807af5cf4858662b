//! Legacy exception handling → standard (exnref) exception handling.
//!
//! Emscripten builds AO's modules with the legacy exception-handling proposal (`try`,
//! `catch`, `catch_all`, `rethrow`, `delegate`). wasmer's compilers only run the
//! standardised form (`try_table`, `throw_ref`, `exnref`), so every function that uses a
//! legacy instruction is rewritten; every other function body and every section except the
//! type and code sections is copied byte for byte, which keeps the pass fast on large
//! modules.
//!
//! A legacy `try` only reveals what it is (which clauses, or a `delegate`) at its end, so
//! each such function is read twice: [`plan`] collects what every `try` turns out to be and
//! [`rewrite`] emits the new body. The scheme, for `try bt BODY catch $t H1 catch_all H2 end`:
//!
//! ```text
//! block bt                                   ;; the try's own label: branches go here
//!   block [params] -> [exnref]               ;; catch_all target
//!     block [params] -> [$t payload, exnref] ;; catch $t target
//!       try_table bt (catch_ref $t 0) (catch_all_ref 1)
//!         BODY
//!       end
//!       br 2
//!     end
//!     local.set $exn (or drop)               ;; kept only when a rethrow needs it
//!     H1
//!     br 1
//!   end
//!   local.set $exn (or drop)
//!   H2
//! end
//! ```
//!
//! `rethrow` becomes `local.get $exn; throw_ref`. A `try … delegate l` becomes a `try_table`
//! with a `catch_all_ref` to a *landing block* of the nearest frame at or outside label `l`
//! whose handlers are active there (a `try` still in its body, or a `try_table`); the
//! landing block wraps that frame's body and is followed by `throw_ref`, so the exception is
//! rethrown where that frame's handlers catch it. Without such a frame the landing block
//! wraps the function body and the exception goes to the caller.

mod error;
mod plan;
mod rewrite;
#[cfg(test)]
mod tests;
mod types;

use std::ops::Range;

use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{CodeSection, Module, RawSection, SectionId, TypeSection};
use wasmparser::{FunctionBody, Parser, Payload, TypeRef};

use super::error::PrepareError;
use error::{encode_error, parse_error};
use types::ModuleTypes;

/// Rewrites legacy exception handling (try / catch / catch_all / rethrow / delegate) into the
/// standard exnref form (try_table / throw_ref), which wasmer runs. None when the module has none.
pub fn translate_legacy_exceptions(wasm: &[u8]) -> Result<Option<Vec<u8>>, PrepareError> {
    let parts = ModuleParts::read(wasm)?;
    let mut types = parts.types;
    let mut code = CodeSection::new();
    let mut translated = false;
    for (body, type_index) in parts.bodies.iter().zip(&parts.function_types) {
        match plan::plan_function(body)? {
            None => {
                code.raw(body.as_bytes());
            }
            Some(plan) => {
                let params = types.function_param_count(*type_index)?;
                code.function(&rewrite::rewrite_function(body, &plan, params, &mut types)?);
                translated = true;
            }
        }
    }
    if !translated {
        return Ok(None);
    }

    let mut module = Module::new();
    for (id, range) in &parts.sections {
        let data = &wasm[range.clone()];
        match *id {
            id if id == SectionId::Type as u8 && types.has_added() => {
                let reader = wasmparser::TypeSectionReader::new(wasmparser::BinaryReader::new(
                    data,
                    range.start as u64,
                ))
                .map_err(parse_error)?;
                let mut section = TypeSection::new();
                RoundtripReencoder
                    .parse_type_section(&mut section, reader)
                    .map_err(encode_error)?;
                types.append_added(&mut section)?;
                module.section(&section);
            }
            id if id == SectionId::Code as u8 => {
                module.section(&code);
            }
            id => {
                module.section(&RawSection { id, data });
            }
        }
    }
    Ok(Some(module.finish()))
}

/// What the pass needs from a module: where its sections are, the types of its functions
/// and tags, and the function bodies.
struct ModuleParts<'a> {
    sections: Vec<(u8, Range<usize>)>,
    types: ModuleTypes,
    /// The type index of each function defined in the module, in code-section order.
    function_types: Vec<u32>,
    bodies: Vec<FunctionBody<'a>>,
}

impl<'a> ModuleParts<'a> {
    fn read(wasm: &'a [u8]) -> Result<Self, PrepareError> {
        // The parser's default features are all of them: legacy exceptions, memory64 (which
        // may or may not have been lowered yet) and anything else this pass copies unread.
        let mut parts = ModuleParts {
            sections: Vec::new(),
            types: ModuleTypes::default(),
            function_types: Vec::new(),
            bodies: Vec::new(),
        };
        for payload in Parser::new(0).parse_all(wasm) {
            let payload = payload.map_err(parse_error)?;
            match &payload {
                Payload::Version {
                    encoding: wasmparser::Encoding::Component,
                    ..
                } => {
                    return Err(PrepareError("legacy exceptions: not a core module".into()));
                }
                Payload::TypeSection(reader) => parts.types.read_types(reader.clone())?,
                Payload::ImportSection(reader) => {
                    for import in reader.clone().into_imports() {
                        if let TypeRef::Tag(tag) = import.map_err(parse_error)?.ty {
                            parts.types.add_tag(tag.func_type_idx);
                        }
                    }
                }
                Payload::TagSection(reader) => {
                    for tag in reader.clone() {
                        parts.types.add_tag(tag.map_err(parse_error)?.func_type_idx);
                    }
                }
                Payload::FunctionSection(reader) => {
                    for type_index in reader.clone() {
                        parts.function_types.push(type_index.map_err(parse_error)?);
                    }
                }
                Payload::CodeSectionEntry(body) => parts.bodies.push(body.clone()),
                _ => {}
            }
            if let Some((id, range)) = payload.as_section() {
                parts
                    .sections
                    .push((id, range.start as usize..range.end as usize));
            }
        }
        if parts.bodies.len() != parts.function_types.len() {
            return Err(PrepareError(
                "legacy exceptions: function and code section counts differ".into(),
            ));
        }
        Ok(parts)
    }
}
