//! Which memories and tables are lowered, the limits they are clamped to, and where each
//! goes in the lowered module.

use wasmparser::TypeRef;

/// The largest a lowered memory may get: one page short of 4 GiB, so that
/// [`SENTINEL`](super::narrow::SENTINEL) and everything above it stay out of bounds.
pub(in crate::prepare) const MAX_LOWERED_PAGES: u64 = 65535;

/// The largest a lowered table may get: wasmer refuses tables above 128 Mi elements.
pub(super) const MAX_LOWERED_TABLE_ELEMENTS: u64 = 1 << 27;

/// The module that the imports replacing unfittable memories and tables (see the
/// `memory64` module docs) come from; nothing provides them.
pub(super) const UNSATISFIABLE_MODULE: &str = "hb_beamr";

/// A memory or table of the original module.
pub(super) struct Entity {
    pub(super) is64: bool,
    pub(super) imported: bool,
    /// Its index in the lowered module, which differs from the original one when unfittable
    /// definitions before it moved to the imports.
    pub(super) new_index: u32,
    /// For a 64-bit one whose minimum cannot be lowered: the name of the unsatisfiable
    /// import that replaces it.
    pub(super) unfittable: Option<String>,
}

/// The memories (or tables) of a module, given whether each is 64-bit and its minimum
/// (imports first, the first `imported` of them imported), with the new index order: the
/// imports, then the unfittable definitions (which become imports), then the others.
pub(super) fn entities(
    limits: impl Iterator<Item = (bool, u64)>,
    imported: usize,
    cap: u64,
    what: &str,
    unit: &str,
) -> Vec<Entity> {
    let mut entities: Vec<Entity> = limits
        .enumerate()
        .map(|(index, (is64, initial))| Entity {
            is64,
            imported: index < imported,
            new_index: index as u32,
            unfittable: (is64 && initial > cap).then(|| {
                format!(
                    "{what} {index} of {initial} {unit} does not fit in 32 bits \
                    (at most {cap} {unit})"
                )
            }),
        })
        .collect();
    let moved = entities[imported..]
        .iter()
        .filter(|entity| entity.unfittable.is_some())
        .count();
    let (mut next_moved, mut next_kept) = (imported, imported + moved);
    for entity in &mut entities[imported..] {
        let next = if entity.unfittable.is_some() {
            &mut next_moved
        } else {
            &mut next_kept
        };
        entity.new_index = *next as u32;
        *next += 1;
    }
    entities
}

/// The type of the import replacing an unfittable memory or table: the same with a minimum
/// of zero, so that it lowers to a valid 32-bit type.
pub(super) fn emptied(ty: TypeRef) -> TypeRef {
    match ty {
        TypeRef::Memory(memory) => TypeRef::Memory(wasmparser::MemoryType {
            initial: 0,
            ..memory
        }),
        TypeRef::Table(table) => TypeRef::Table(wasmparser::TableType {
            initial: 0,
            ..table
        }),
        other => other,
    }
}

/// The maximum of a lowered memory or table: at most `cap`.
pub(super) fn clamp_maximum(maximum: Option<u64>, cap: u64) -> u64 {
    maximum.map_or(cap, |max| max.min(cap))
}
