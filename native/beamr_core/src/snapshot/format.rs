//! The snapshot format's constants and the types a snapshot decodes to.

use std::fmt;
use std::ops::Range;

use super::digest::PAGE;

pub const MAGIC: [u8; 8] = *b"HBBEAMRS";
pub const VERSION: u32 = 3;
pub(super) const HEADER_LEN: usize = 96;
pub(super) const V1_HEADER_LEN: usize = 64;
/// Where the bytes covered by the id start (after it).
pub(super) const IDENTIFIED_FROM: usize = 32;
pub(super) const V1_CHECKSUMMED_FROM: usize = 24;
/// Memory sizes are whole wasm pages.
pub(super) const WASM_PAGE: usize = 65536;

/// Null in a table entry or funcref global.
pub(super) const NULL: u32 = u32::MAX;

pub(super) const TAG_GLOBALS: u8 = 1;
/// Table 0 in versions 1 and 2, every table in version 3.
pub(super) const TAG_TABLE: u8 = 2;
pub(super) const TAG_MEMORY: u8 = 3;
pub(super) const TAG_CHANGED: u8 = 4;
pub(super) const TAG_PAGES: u8 = 5;
pub(super) const SECTION_HEADER: usize = 9;

pub(super) const KIND_FULL: u32 = 0;
pub(super) const KIND_DELTA: u32 = 1;

pub type ModuleId = [u8; 32];
/// A snapshot's id: its checksum.
pub type SnapshotId = u128;

/// A mutable global's value. Reference globals other than funcref can only be captured
/// when null: an externref or exnref cannot be represented outside its Store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalValue {
    I32(u32),
    I64(u64),
    F32(u32),
    F64(u64),
    V128(u128),
    /// A function index, or null.
    FuncRef(Option<u32>),
    NullExternRef,
    NullExnRef,
}

impl GlobalValue {
    pub(super) fn kind(&self) -> u8 {
        match self {
            GlobalValue::I32(_) => 0,
            GlobalValue::I64(_) => 1,
            GlobalValue::F32(_) => 2,
            GlobalValue::F64(_) => 3,
            GlobalValue::V128(_) => 4,
            GlobalValue::FuncRef(_) => 5,
            GlobalValue::NullExternRef => 6,
            GlobalValue::NullExnRef => 7,
        }
    }

    pub(super) fn value_len(kind: u8) -> Option<usize> {
        Some(match kind {
            0 | 2 | 5 => 4,
            1 | 3 => 8,
            4 => 16,
            6 | 7 => 0,
            _ => return None,
        })
    }

    /// Whether `other` has the same type (what a restore may write into this global).
    pub fn same_type(&self, other: &GlobalValue) -> bool {
        self.kind() == other.kind()
    }
}

/// A run of consecutive changed 4 KiB pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRun {
    pub first: u32,
    pub count: u32,
}

impl PageRun {
    /// The run's bytes in memory.
    pub fn bytes(&self) -> Range<usize> {
        self.first as usize * PAGE..(self.first as usize + self.count as usize) * PAGE
    }
}

/// Whether a snapshot stands alone or follows another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lineage {
    Full,
    Delta { parent: SnapshotId },
}

/// Memory 0 as a snapshot holds it.
#[derive(Debug, PartialEq, Eq)]
pub enum MemoryState<'a> {
    /// All of it (a full snapshot).
    Whole(&'a [u8]),
    /// Its size when the delta was taken, and the pages that changed (their bytes in run
    /// order).
    Changed {
        len: usize,
        runs: Vec<PageRun>,
        pages: &'a [u8],
    },
}

impl MemoryState<'_> {
    /// Memory's size in bytes.
    pub fn size(&self) -> usize {
        match self {
            MemoryState::Whole(bytes) => bytes.len(),
            MemoryState::Changed { len, .. } => *len,
        }
    }
}

/// A table's entries: function indices, None for null (the only entry a table of another
/// reference type can hold in a snapshot).
pub type TableEntries = Vec<Option<u32>>;

/// A decoded snapshot; memory borrows the input.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot<'a> {
    pub module: ModuleId,
    pub id: SnapshotId,
    pub lineage: Lineage,
    pub sequence: u64,
    /// Mutable globals by index (in the module's global index space), ascending.
    pub globals: Vec<(u32, GlobalValue)>,
    /// Tables by index, ascending, with their entries.
    pub tables: Vec<(u32, TableEntries)>,
    /// Whether `tables` are all the module's tables (version 3), or only table 0 when the
    /// module has one (versions 1 and 2, which captured no other table: restoring them
    /// leaves the others as they are).
    pub every_table: bool,
    /// Memory 0, when the module has one.
    pub memory: Option<MemoryState<'a>>,
    /// The digest of each 4 KiB page of the bulk (memory, or the changed pages) as the
    /// checksum computed them; None for version 1, which hashed 256 KiB segments.
    pub page_digests: Option<Vec<u64>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// Not a snapshot, truncated, corrupted, of an unknown version, or not a chain.
    Invalid(String),
    /// A valid snapshot of another module (or of other preparation options).
    Mismatch(String),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Invalid(why) => write!(f, "invalid snapshot: {why}"),
            SnapshotError::Mismatch(why) => write!(f, "snapshot mismatch: {why}"),
        }
    }
}

pub(super) fn invalid(why: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid(why.into())
}

impl Snapshot<'_> {
    /// `Mismatch` unless the snapshot was taken from module `id`.
    pub fn check_module(&self, id: &ModuleId) -> Result<(), SnapshotError> {
        if &self.module == id {
            Ok(())
        } else {
            Err(SnapshotError::Mismatch(format!(
                "snapshot of module {}, instance of module {}",
                short_hex(&self.module),
                short_hex(id)
            )))
        }
    }
}

fn short_hex(id: &ModuleId) -> String {
    id[..8].iter().map(|b| format!("{b:02x}")).collect()
}
