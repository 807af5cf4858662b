//! Import resolution between script instances, including the index-type check that
//! preparation makes impossible for wasmer to do.
//!
//! Preparation lowers 64-bit memories and tables to 32-bit ones, so wasmer sees an i64
//! memory and an i32 memory as the same type. The harness therefore reads the index type
//! of every memory/table import and export from the ORIGINAL binary ([`Interface`]) and
//! refuses a link whose index types differ, as the spec requires ("incompatible import
//! type"); limits and every other type are left to wasmer.

use std::collections::HashMap;
use std::rc::Rc;

use beamr_core::prepare::RESERVED_EXPORT_PREFIX;
use wasmer::{Extern, Imports, Instance, Module};
use wasmparser::{ExternalKind, Parser, Payload, TypeRef};

/// What an instance (or the host module) offers to importers and to actions.
pub struct Exported {
    pub externs: HashMap<String, Extern>,
    /// For memory and table exports: whether the original declaration is 64-bit.
    pub index64: HashMap<String, bool>,
}

impl Exported {
    /// The user-visible exports of an instance; preparation's reserved exports are dropped.
    pub fn of(instance: &Instance, interface: &Interface) -> Exported {
        let externs = instance
            .exports
            .iter()
            .filter(|(name, _)| !name.starts_with(RESERVED_EXPORT_PREFIX))
            .map(|(name, ext)| (name.clone(), ext.clone()))
            .collect();
        Exported {
            externs,
            index64: interface.exports.clone(),
        }
    }
}

/// Memory/table index types of a module as written, before preparation.
pub struct Interface {
    imports: HashMap<(String, String), bool>,
    exports: HashMap<String, bool>,
}

impl Interface {
    pub fn parse(wasm: &[u8]) -> Result<Interface, String> {
        let mut imports = HashMap::new();
        let mut exports = HashMap::new();
        // Index spaces, imports first, as export indices count them.
        let (mut memories, mut tables) = (Vec::new(), Vec::new());
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.map_err(|e| e.to_string())? {
                Payload::ImportSection(section) => {
                    for import in section.into_imports() {
                        let import = import.map_err(|e| e.to_string())?;
                        let is64 = match import.ty {
                            TypeRef::Memory(m) => {
                                memories.push(m.memory64);
                                m.memory64
                            }
                            TypeRef::Table(t) => {
                                tables.push(t.table64);
                                t.table64
                            }
                            _ => continue,
                        };
                        imports.insert((import.module.to_string(), import.name.to_string()), is64);
                    }
                }
                Payload::MemorySection(section) => {
                    for memory in section {
                        memories.push(memory.map_err(|e| e.to_string())?.memory64);
                    }
                }
                Payload::TableSection(section) => {
                    for table in section {
                        tables.push(table.map_err(|e| e.to_string())?.ty.table64);
                    }
                }
                Payload::ExportSection(section) => {
                    for export in section {
                        let export = export.map_err(|e| e.to_string())?;
                        let space = match export.kind {
                            ExternalKind::Memory => &memories,
                            ExternalKind::Table => &tables,
                            _ => continue,
                        };
                        if let Some(&is64) = space.get(export.index as usize) {
                            exports.insert(export.name.to_string(), is64);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(Interface { imports, exports })
    }
}

/// Resolves the prepared module's imports: `provider` looks up a registered module name
/// and may refuse with the caller's error (an excluded or failed module); the inner error
/// is a genuine link error, as `assert_unlinkable` expects.
pub fn resolve<E>(
    module: &Module,
    interface: &Interface,
    provider: impl Fn(&str) -> Option<Result<Rc<Exported>, E>>,
) -> Result<Result<Imports, String>, E> {
    let mut imports = Imports::new();
    for import in module.imports() {
        let (namespace, name) = (import.module(), import.name());
        let unknown = || Ok(Err(format!("unknown import {namespace}.{name}")));
        let Some(exported) = provider(namespace).transpose()? else {
            return unknown();
        };
        let Some(value) = exported.externs.get(name) else {
            return unknown();
        };
        let wanted = interface
            .imports
            .get(&(namespace.to_string(), name.to_string()));
        if let (Some(&wanted), Some(&offered)) = (wanted, exported.index64.get(name)) {
            if wanted != offered {
                return Ok(Err(format!(
                    "incompatible import type: {namespace}.{name} is {}-indexed, the import \
                        wants {}",
                    index_type(offered),
                    index_type(wanted)
                )));
            }
        }
        imports.define(namespace, name, value.clone());
    }
    Ok(Ok(imports))
}

fn index_type(is64: bool) -> &'static str {
    if is64 {
        "i64"
    } else {
        "i32"
    }
}
