//! What preparation takes and gives, and the budgets it holds a module to.

/// What one table entry costs the host: wasmer keeps a table as a vector of 8-byte
/// references, allocated in full for the table's current size.
pub const TABLE_ENTRY_BYTES: u64 = 8;

/// What one entry of a funcref table of fixed size (its maximum equals its minimum) costs
/// the host besides [`TABLE_ENTRY_BYTES`]: wasmer also lays such a table out inside the
/// instance's context, 32 bytes per entry.
pub const FIXED_FUNCREF_ENTRY_BYTES: u64 = 32;

/// The most entries all funcref tables of fixed size may hold together (128 MiB of the
/// instance's context). wasmer addresses the context with 32-bit offsets, so it panics
/// compiling more than 2^27 such entries, and it allocates the context infallibly.
pub const MAX_FIXED_FUNCREF_ENTRIES: u64 = 1 << 22;

/// The budget when the caller gives none: one full 32-bit memory (65,536 pages) and 8 Mi
/// table entries. AO's processes (memory 0 grown to 32,769 pages, a table of ~200
/// entries) fit with room to spare, while a module declaring many memories or tables still
/// shares this one budget among them.
pub const DEFAULT_MEMORY_LIMIT: u64 = (4 << 30) + (64 << 20);

/// The most imports, and separately exports, a module may declare. Each costs every
/// instance a name, a type and a wasmer function, and each start a list entry for the
/// caller (100,000 exports took ~70 MB and 240-430 ms per start); real modules have
/// dozens (HyperBEAM's fixtures at most 52 imports and 32 exports).
pub const MAX_IMPORTS: usize = 10_000;
pub const MAX_EXPORTS: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PrepareOptions {
    /// Add WAMR's extra 64 KiB page (see docs/preparation.md, "4. WAMR page layout").
    pub wamr_compat: bool,
    /// The instance's byte budget for everything its memories and tables make the host
    /// allocate: the bytes of all memories plus [`TABLE_ENTRY_BYTES`] per entry of all
    /// tables ([`FIXED_FUNCREF_ENTRY_BYTES`] more for fixed-size funcref tables). Each
    /// memory's and table's maximum is lowered to what fits the budget alone (so
    /// `memory.grow`/`table.grow` past it return -1), and the module's initial footprint is
    /// reported in [`PreparedModule::initial_footprint`] for the caller to refuse.
    pub memory_limit: u64,
    /// Deterministic mode: refuse what could make two runs differ (shared memory and
    /// atomics), and compile with the NaN-canonicalising engine (`engine::EngineKind`).
    pub deterministic: bool,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            wamr_compat: true,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            deterministic: false,
        }
    }
}

impl PrepareOptions {
    /// The engine that compiles modules prepared with these options.
    pub fn engine_kind(&self) -> crate::engine::EngineKind {
        crate::engine::EngineKind::new(self.deterministic)
    }
}

#[derive(Debug)]
pub struct PreparedModule {
    /// A module wasmer can compile (32-bit memories, exnref exceptions only).
    pub wasm: Vec<u8>,
    /// 64-bit memories or tables were lowered to 32-bit ones.
    pub memory64_lowered: bool,
    /// Legacy exception handling was translated to exnref exception handling.
    pub exceptions_translated: bool,
    /// Memory 0 got WAMR's extra page.
    pub wamr_extra_page: bool,
    /// What instantiating it makes the host allocate, counted as `memory_limit` counts:
    /// the initial bytes of the memories it defines (with WAMR's page) plus
    /// [`TABLE_ENTRY_BYTES`] per initial entry of the tables it defines, and
    /// [`FIXED_FUNCREF_ENTRY_BYTES`] more per entry of its fixed-size funcref tables.
    /// Imported memories and tables do not count: hb_beamr provides none, so such a module
    /// never links.
    pub initial_footprint: u64,
    /// The entries of the fixed-size funcref tables it defines (see
    /// [`MAX_FIXED_FUNCREF_ENTRIES`]).
    pub fixed_funcref_entries: u64,
}
