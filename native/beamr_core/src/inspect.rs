//! What a module declares and which preparation passes it needs, without compiling or
//! running it (`beamr inspect`, through the `hb_beamr_nif:inspect/2` NIF).

use wasmparser::types::{EntityType, TypesRef};
use wasmparser::{MemoryType, ValType, Validator, WasmFeatures};

use crate::emscripten::Import;
use crate::prepare::{prepare, PrepareError, PrepareOptions};

/// An import or export: its kind (`func`, `table`, `memory`, `global`, `tag`), module
/// (empty for exports), name and, for functions and tags, the signature string.
pub struct Entry {
    pub kind: &'static str,
    pub module: String,
    pub name: String,
    pub signature: String,
}

/// A memory's limits in 64 KiB pages.
pub struct Memory {
    pub memory64: bool,
    pub shared: bool,
    pub imported: bool,
    pub initial: u64,
    pub maximum: Option<u64>,
}

pub struct Inspection {
    pub imports: Vec<Entry>,
    pub exports: Vec<Entry>,
    /// The module's memories as declared.
    pub memories: Vec<Memory>,
    /// Memory 0 as it runs, after preparation (32-bit, WAMR's page, `memory_limit`).
    pub prepared_memory0: Option<Memory>,
    pub memory64_lowered: bool,
    pub exceptions_translated: bool,
    pub wamr_extra_page: bool,
    /// The imports of Emscripten's runtime that hb_beamr answers itself: `invoke_*` always,
    /// the exception and longjmp functions unless started with `emscripten => imports`.
    pub emscripten: Vec<String>,
}

/// Inspects wasm bytes or WAT text: preparation runs (it also validates), nothing compiles.
pub fn inspect(source: &[u8], opts: &PrepareOptions) -> Result<Inspection, PrepareError> {
    let wasm = wat::parse_bytes(source).map_err(|e| PrepareError(e.to_string()))?;
    let prepared = prepare(&wasm, opts)?;
    let original = validate(&wasm)?;
    let types = original.as_ref();
    let imported_memories = types
        .core_imports()
        .into_iter()
        .flatten()
        .filter(|(_, _, ty)| matches!(ty, EntityType::Memory(_)))
        .count();
    let rewritten = validate(&prepared.wasm)?;
    Ok(Inspection {
        imports: types
            .core_imports()
            .into_iter()
            .flatten()
            .map(|(module, name, ty)| entry(types, module, name, ty))
            .collect(),
        exports: types
            .core_exports()
            .into_iter()
            .flatten()
            .map(|(name, ty)| entry(types, "", name, ty))
            .collect(),
        memories: (0..types.memory_count())
            .map(|i| memory(types.memory_at(i), (i as usize) < imported_memories))
            .collect(),
        prepared_memory0: (rewritten.as_ref().memory_count() > 0)
            .then(|| memory(rewritten.as_ref().memory_at(0), imported_memories > 0)),
        emscripten: types
            .core_imports()
            .into_iter()
            .flatten()
            .filter(|(module, name, ty)| {
                matches!(ty, EntityType::Func(_))
                    && (*module == "env" && name.starts_with("invoke_")
                        || Import::recognise(module, name).is_some())
            })
            .map(|(_, name, _)| name.to_string())
            .collect(),
        memory64_lowered: prepared.memory64_lowered,
        exceptions_translated: prepared.exceptions_translated,
        wamr_extra_page: prepared.wamr_extra_page,
    })
}

/// Preparation has validated with the features it accepts; here only the types are wanted.
fn validate(wasm: &[u8]) -> Result<wasmparser::types::Types, PrepareError> {
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(wasm)
        .map_err(|e| PrepareError(e.to_string()))
}

fn entry(types: TypesRef, module: &str, name: &str, ty: EntityType) -> Entry {
    let (kind, signature) = match ty {
        EntityType::Func(id) | EntityType::FuncExact(id) => ("func", signature(types, id)),
        EntityType::Tag(id) => ("tag", signature(types, id)),
        EntityType::Table(_) => ("table", String::new()),
        EntityType::Memory(_) => ("memory", String::new()),
        EntityType::Global(_) => ("global", String::new()),
    };
    Entry {
        kind,
        module: module.to_string(),
        name: name.to_string(),
        signature,
    }
}

/// HyperBEAM's signature string (`crate::signature`) of a wasmparser function type.
fn signature(types: TypesRef, id: wasmparser::types::CoreTypeId) -> String {
    let func = types[id].unwrap_func();
    let chars = |tys: &[ValType]| tys.iter().map(|t| type_char(*t)).collect::<String>();
    format!("({}){}", chars(func.params()), chars(func.results()))
}

fn type_char(ty: ValType) -> char {
    match ty {
        ValType::I32 => 'i',
        ValType::I64 => 'I',
        ValType::F32 => 'f',
        ValType::F64 => 'F',
        ValType::V128 => 'v',
        ValType::Ref(r) if r.is_func_ref() => 'r',
        ValType::Ref(_) => 'e',
    }
}

fn memory(ty: MemoryType, imported: bool) -> Memory {
    Memory {
        memory64: ty.memory64,
        shared: ty.shared,
        imported,
        initial: ty.initial,
        maximum: ty.maximum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = r#"(module
        (import "env" "log" (func (param i64 f32)))
        (memory (export "mem") i64 2 10)
        (func (export "grow") (param i64) (result i64) (memory.grow (local.get 0))))"#;

    #[test]
    fn lists_imports_exports_memories_and_passes() {
        let info = inspect(MODULE.as_bytes(), &PrepareOptions::default()).unwrap();
        let imports: Vec<_> = info
            .imports
            .iter()
            .map(|e| {
                (
                    e.kind,
                    e.module.as_str(),
                    e.name.as_str(),
                    e.signature.as_str(),
                )
            })
            .collect();
        assert_eq!(imports, [("func", "env", "log", "(If)")]);
        let exports: Vec<_> = info
            .exports
            .iter()
            .map(|e| (e.kind, e.name.as_str(), e.signature.as_str()))
            .collect();
        assert_eq!(exports, [("memory", "mem", ""), ("func", "grow", "(I)I")]);
        let memory = &info.memories[0];
        assert!(memory.memory64 && !memory.imported);
        assert_eq!((memory.initial, memory.maximum), (2, Some(10)));
        let prepared = info.prepared_memory0.as_ref().unwrap();
        assert!(!prepared.memory64);
        assert_eq!((prepared.initial, prepared.maximum), (3, Some(11)));
        assert!(info.memory64_lowered && info.wamr_extra_page && !info.exceptions_translated);
    }

    #[test]
    fn refuses_invalid_modules() {
        assert!(inspect(b"(module (func (result i32)))", &PrepareOptions::default()).is_err());
        assert!(inspect(b"\0asm\x02", &PrepareOptions::default()).is_err());
    }
}
