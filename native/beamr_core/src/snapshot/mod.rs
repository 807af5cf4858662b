//! The snapshot format: an instance's state (memory 0, every mutable global, table 0) in
//! one versioned, checksummed binary bound to the module it came from. A *full* snapshot
//! holds all of it; a *delta* holds what changed since the snapshot it follows (its
//! parent): the 4 KiB pages of memory that changed, and the globals and table whole.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "HBBEAMRS"
//!      8     4  version (u32 LE), currently 2
//!     12     4  kind (u32 LE): 0 full, 1 delta
//!     16    16  id (u128 LE): xxh3-128 of every byte from offset 32 up to the bulk,
//!               followed by the xxh3-64 (u64 LE) of each 4 KiB page of the bulk
//!     32     8  total length of the snapshot in bytes (u64 LE)
//!     40    32  module id: SHA-256 of the prepared module (wasmer's ModuleInfo hash)
//!     72    16  parent: the id of the snapshot a delta follows; zero in a full snapshot
//!     88     8  sequence (u64 LE): 0 in a full snapshot, the parent's + 1 in a delta
//!     96     …  sections, each: tag (u8), payload length (u64 LE), payload;
//!               tags strictly increasing, each at most once:
//!                 1 globals: count (u32), then per global: index (u32), kind (u8), value
//!                 2 table 0: size (u32), then per entry a function index (u32),
//!                   u32::MAX for null
//!                 3 memory 0 (full): its bytes (a whole number of 64 KiB pages)
//!                 4 changed pages (delta): memory 0's size in bytes (u64), run count
//!                   (u32), then per run its first 4 KiB page and page count (u32 each),
//!                   ascending and disjoint
//!                 5 page bytes (delta): the changed pages' bytes, in run order
//!               The bulk (section 3 or 5) comes last; 4 and 5 go together.
//! ```
//!
//! Why this shape: the id covers the header fields after it too, so a flipped bit in the
//! module id or a length reads as a corrupt snapshot, never as "another module"; the
//! total length is checked before hashing, so truncation is reported cheaply; the bulk
//! comes last so that encoding copies it straight from wasm memory into the output (one
//! pass, each segment hashed right after it is copied, while it is still in cache) and
//! decoding lends it out as a slice of the input. Hashing per 4 KiB page lets two threads
//! share the work (a restore must hash everything before it writes anything) and gives
//! the change tracking of `dirty_pages` its base for free. The module id is the prepared
//! module's SHA-256, so it also binds the preparation options that change the module
//! (WAMR layout, memory limit).
//!
//! The id is the checksum, so it names the content: a delta names its parent by the
//! parent's id, which covers the parent's own parent, making a chain a hash chain; two
//! identical states give identical full snapshots and ids. xxh3 detects corruption, not
//! tampering: a snapshot is trusted input as far as intent goes, and everything in it is
//! validated before use.
//!
//! Version 1 (full snapshots only, before deltas existed) is still read: a 64-byte header
//! (magic, version, flags 0, an xxh3-64 checksum at 16 of the bytes from 24 on and of each
//! 256 KiB segment of memory, length at 24, module at 32), then the same sections 1–3. Its
//! id, which a delta taken after restoring it names, is that checksum zero-extended.

mod chain;
pub mod digest;
mod encode;
#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::Range;

pub use chain::{chain_digests, check_chain};
pub use digest::PAGE;
pub use encode::{copy_out, Encoded, MemoryParts, Parts};

pub const MAGIC: [u8; 8] = *b"HBBEAMRS";
pub const VERSION: u32 = 2;
const HEADER_LEN: usize = 96;
const V1_HEADER_LEN: usize = 64;
/// Where the bytes covered by the id start (after it).
const IDENTIFIED_FROM: usize = 32;
const V1_CHECKSUMMED_FROM: usize = 24;
/// Memory sizes are whole wasm pages.
const WASM_PAGE: usize = 65536;

/// Null in a table entry or funcref global.
const NULL: u32 = u32::MAX;

const TAG_GLOBALS: u8 = 1;
const TAG_TABLE: u8 = 2;
const TAG_MEMORY: u8 = 3;
const TAG_CHANGED: u8 = 4;
const TAG_PAGES: u8 = 5;
const SECTION_HEADER: usize = 9;

const KIND_FULL: u32 = 0;
const KIND_DELTA: u32 = 1;

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
    fn kind(&self) -> u8 {
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

    fn value_len(kind: u8) -> Option<usize> {
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

/// A decoded snapshot; memory borrows the input.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot<'a> {
    pub module: ModuleId,
    pub id: SnapshotId,
    pub lineage: Lineage,
    pub sequence: u64,
    /// Mutable globals by index (in the module's global index space), ascending.
    pub globals: Vec<(u32, GlobalValue)>,
    /// Table 0's entries as function indices, when the module has a table 0.
    pub table: Option<Vec<Option<u32>>>,
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

fn invalid(why: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid(why.into())
}

struct Reader<'a> {
    input: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        match self.at.checked_add(n) {
            Some(end) if end <= self.input.len() => {
                let bytes = &self.input[self.at..end];
                self.at = end;
                Ok(bytes)
            }
            _ => Err(invalid(format!("{} is cut short", self.what))),
        }
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn u128(&mut self) -> Result<u128, SnapshotError> {
        Ok(u128::from_le_bytes(self.take(16)?.try_into().unwrap()))
    }
    fn done(&self) -> bool {
        self.at == self.input.len()
    }
}

/// What the header says, before anything is verified.
struct Header {
    version: u32,
    kind: u32,
    checksum: u128,
    module: ModuleId,
    parent: SnapshotId,
    sequence: u64,
    len: usize,
}

fn read_header(bytes: &[u8]) -> Result<Header, SnapshotError> {
    let mut r = Reader {
        input: bytes,
        at: 0,
        what: "header",
    };
    if bytes.len() < 12 {
        return Err(invalid(format!(
            "{} bytes, shorter than a header",
            bytes.len()
        )));
    }
    if r.take(8)? != MAGIC {
        return Err(invalid("bad magic: not an hb_beamr snapshot"));
    }
    let version = r.u32()?;
    let len = match version {
        1 => V1_HEADER_LEN,
        VERSION => HEADER_LEN,
        _ => {
            return Err(invalid(format!(
                "version {version}, this build reads versions 1 and {VERSION}"
            )))
        }
    };
    if bytes.len() < len {
        return Err(invalid(format!(
            "{} bytes, shorter than the {len}-byte header",
            bytes.len()
        )));
    }
    let kind = r.u32()?;
    let (checksum, total, module, parent, sequence) = if version == 1 {
        (
            u128::from(r.u64()?),
            r.u64()?,
            r.take(32)?.try_into().unwrap(),
            0,
            0,
        )
    } else {
        (
            r.u128()?,
            r.u64()?,
            r.take(32)?.try_into().unwrap(),
            r.u128()?,
            r.u64()?,
        )
    };
    if total != bytes.len() as u64 {
        return Err(invalid(format!(
            "length {} where the header says {total}",
            bytes.len()
        )));
    }
    Ok(Header {
        version,
        kind,
        checksum,
        module,
        parent,
        sequence,
        len,
    })
}

/// Checks integrity (magic, version, length, checksum) and structure; the module is
/// checked separately by [`Snapshot::check_module`], so that a corrupt snapshot is always
/// reported as invalid rather than as another module's.
pub fn decode(bytes: &[u8]) -> Result<Snapshot<'_>, SnapshotError> {
    let header = read_header(bytes)?;
    // Sections are parsed (bounds-checked) before the checksum is verified, to find where
    // the bulk starts; nothing parsed is used unless the checksum matches.
    let parsed = parse_sections(bytes, &header);
    let bulk_start = match &parsed {
        Ok((_, _, Some(bulk))) => bulk.start,
        _ => bytes.len(),
    };
    let bulk = &bytes[bulk_start..];
    let page_digests = if header.version == 1 {
        if u128::from(digest::v1_checksum(
            &bytes[V1_CHECKSUMMED_FROM..bulk_start],
            bulk,
        )) != header.checksum
        {
            return Err(invalid("checksum mismatch: corrupted"));
        }
        None
    } else {
        let digests = digest::per_segment(bulk.len(), PAGE, |range, out| {
            digest::hash_pages(&bulk[range], out)
        });
        if digest::id(&bytes[IDENTIFIED_FROM..bulk_start], &digests) != header.checksum {
            return Err(invalid("checksum mismatch: corrupted"));
        }
        Some(digests)
    };
    let lineage = match (header.version, header.kind) {
        (1, 0) | (VERSION, KIND_FULL) => Lineage::Full,
        (VERSION, KIND_DELTA) => Lineage::Delta {
            parent: header.parent,
        },
        (_, kind) => return Err(invalid(format!("unsupported kind {kind:#x}"))),
    };
    let (globals, table, _) = parsed?;
    let memory = memory_state(bytes, &header, lineage)?;
    if lineage == Lineage::Full && (header.parent != 0 || header.sequence != 0) {
        return Err(invalid("a full snapshot with a parent"));
    }
    Ok(Snapshot {
        module: header.module,
        id: header.checksum,
        lineage,
        sequence: header.sequence,
        globals,
        table,
        memory,
        page_digests,
    })
}

type Sections = (
    Vec<(u32, GlobalValue)>,
    Option<Vec<Option<u32>>>,
    Option<Range<usize>>,
);

/// The globals, table, and where the bulk is; memory's sections are read by
/// `memory_state` once the kind is known to be trustworthy.
fn parse_sections(bytes: &[u8], header: &Header) -> Result<Sections, SnapshotError> {
    let (mut globals, mut table, mut bulk) = (Vec::new(), None, None);
    let mut body = Reader {
        input: bytes,
        at: header.len,
        what: "section header",
    };
    let mut last_tag = 0;
    while !body.done() {
        let tag = body.u8()?;
        let len = body.u64()?;
        if tag <= last_tag {
            return Err(invalid(format!("section {tag} out of order")));
        }
        if bulk.is_some() {
            return Err(invalid("sections after memory's bytes"));
        }
        last_tag = tag;
        let len = usize::try_from(len).map_err(|_| invalid("section length overflows"))?;
        body.what = "section";
        let start = body.at;
        let payload = body.take(len)?;
        body.what = "section header";
        match tag {
            TAG_GLOBALS => globals = decode_globals(payload)?,
            TAG_TABLE => table = Some(decode_table(payload)?),
            TAG_MEMORY | TAG_PAGES => bulk = Some(start..start + len),
            TAG_CHANGED if header.version != 1 => {}
            _ => return Err(invalid(format!("unknown section {tag}"))),
        }
    }
    Ok((globals, table, bulk))
}

/// Finds the section with `tag` (the sections were validated by `parse_sections`).
fn section<'a>(bytes: &'a [u8], header: &Header, tag: u8) -> Option<&'a [u8]> {
    let mut at = header.len;
    while at < bytes.len() {
        let len =
            u64::from_le_bytes(bytes[at + 1..at + SECTION_HEADER].try_into().unwrap()) as usize;
        let payload = &bytes[at + SECTION_HEADER..at + SECTION_HEADER + len];
        if bytes[at] == tag {
            return Some(payload);
        }
        at += SECTION_HEADER + len;
    }
    None
}

fn memory_state<'a>(
    bytes: &'a [u8],
    header: &Header,
    lineage: Lineage,
) -> Result<Option<MemoryState<'a>>, SnapshotError> {
    let whole = section(bytes, header, TAG_MEMORY);
    let changed = section(bytes, header, TAG_CHANGED);
    let pages = section(bytes, header, TAG_PAGES);
    match (lineage, whole, changed, pages) {
        (Lineage::Full, None, None, None) | (Lineage::Delta { .. }, None, None, None) => Ok(None),
        (Lineage::Full, Some(memory), None, None) => {
            if memory.len() % WASM_PAGE != 0 {
                return Err(invalid(format!(
                    "memory of {} bytes is not a whole number of pages",
                    memory.len()
                )));
            }
            Ok(Some(MemoryState::Whole(memory)))
        }
        (Lineage::Delta { .. }, None, Some(changed), Some(pages)) => {
            decode_changed(changed, pages).map(Some)
        }
        (Lineage::Full, ..) => Err(invalid("a full snapshot with a delta's sections")),
        (Lineage::Delta { .. }, ..) => Err(invalid(
            "a delta without its changed pages, or with a full memory",
        )),
    }
}

fn decode_changed<'a>(changed: &[u8], pages: &'a [u8]) -> Result<MemoryState<'a>, SnapshotError> {
    let mut r = Reader {
        input: changed,
        at: 0,
        what: "changed pages section",
    };
    let len = usize::try_from(r.u64()?).map_err(|_| invalid("memory size overflows"))?;
    if len % WASM_PAGE != 0 || len > 1 << 32 {
        return Err(invalid(format!(
            "memory of {len} bytes is not a whole number of pages below 4 GiB"
        )));
    }
    let count = r.u32()? as usize;
    if changed.len() != 12 + 8 * count {
        return Err(invalid("run count disagrees with the section length"));
    }
    let mut runs = Vec::with_capacity(count);
    let mut end = 0usize;
    for _ in 0..count {
        let run = PageRun {
            first: r.u32()?,
            count: r.u32()?,
        };
        if run.count == 0 || (run.first as usize) < end || run.bytes().end > len {
            return Err(invalid(
                "changed pages not ascending, empty, or beyond memory",
            ));
        }
        end = run.bytes().end / PAGE;
        runs.push(run);
    }
    let total: usize = runs.iter().map(|r| r.count as usize * PAGE).sum();
    if pages.len() != total {
        return Err(invalid(format!(
            "{} bytes of pages where the runs say {total}",
            pages.len()
        )));
    }
    Ok(MemoryState::Changed { len, runs, pages })
}

fn decode_globals(payload: &[u8]) -> Result<Vec<(u32, GlobalValue)>, SnapshotError> {
    let mut r = Reader {
        input: payload,
        at: 0,
        what: "globals section",
    };
    let count = r.u32()?;
    // Each global takes at least 5 bytes: a count beyond that is a lie, not an allocation.
    if count as usize > payload.len() / 5 {
        return Err(invalid("globals count exceeds the section"));
    }
    let mut globals = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let index = r.u32()?;
        if globals.last().is_some_and(|(last, _)| *last >= index) {
            return Err(invalid("global indices not ascending"));
        }
        let kind = r.u8()?;
        let value = match kind {
            0 => GlobalValue::I32(r.u32()?),
            1 => GlobalValue::I64(r.u64()?),
            2 => GlobalValue::F32(r.u32()?),
            3 => GlobalValue::F64(r.u64()?),
            4 => GlobalValue::V128(r.u128()?),
            5 => GlobalValue::FuncRef(Some(r.u32()?).filter(|f| *f != NULL)),
            6 => GlobalValue::NullExternRef,
            7 => GlobalValue::NullExnRef,
            _ => return Err(invalid(format!("global kind {kind}"))),
        };
        globals.push((index, value));
    }
    if !r.done() {
        return Err(invalid("trailing bytes in the globals section"));
    }
    Ok(globals)
}

fn decode_table(payload: &[u8]) -> Result<Vec<Option<u32>>, SnapshotError> {
    let mut r = Reader {
        input: payload,
        at: 0,
        what: "table section",
    };
    let size = r.u32()? as usize;
    if payload.len() != 4 + 4 * size {
        return Err(invalid("table size disagrees with the section length"));
    }
    Ok(payload[4..]
        .chunks_exact(4)
        .map(|e| Some(u32::from_le_bytes(e.try_into().unwrap())).filter(|f| *f != NULL))
        .collect())
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
