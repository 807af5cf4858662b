//! The full-snapshot format: an instance's whole state (memory 0, every mutable global,
//! table 0) in one versioned, checksummed binary bound to the module it came from.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "HBBEAMRS"
//!      8     4  version (u32 LE), currently 1
//!     12     4  flags (u32 LE), 0: a full snapshot
//!     16     8  checksum: xxh3-64 of every byte from offset 24 up to memory's bytes,
//!               followed by the xxh3-64 (u64 LE) of each 256 KiB segment of memory
//!     24     8  total length of the snapshot in bytes (u64 LE)
//!     32    32  module id: SHA-256 of the prepared module (wasmer's ModuleInfo hash)
//!     64     …  sections, each: tag (u8), payload length (u64 LE), payload;
//!               tags strictly increasing, each at most once:
//!                 1 globals: count (u32), then per global: index (u32), kind (u8), value
//!                 2 table 0: size (u32), then per entry a function index (u32),
//!                   u32::MAX for null
//!                 3 memory 0: its bytes (a whole number of 64 KiB pages)
//! ```
//!
//! Why this shape: the checksum covers the header fields after it too, so a flipped bit
//! in the module id or a length reads as a corrupt snapshot, never as "another module";
//! the total length is checked before hashing, so truncation is reported cheaply; memory
//! comes last so that encoding copies it straight from wasm memory into the output (one
//! pass, each segment hashed right after it is copied, while it is still in cache) and
//! decoding lends it out as a slice of the input. A fresh destination (a new 1 GiB result
//! binary is a new mapping) is populated one segment at a time before the copy
//! (`populate`). Hashing memory per segment lets two
//! threads share the work: a restore must hash everything before it writes anything, and
//! at 1 GiB one thread's hash pass plus the copy fall short of 4 GB/s. The module id is the prepared module's SHA-256, so it
//! also binds the preparation options that change the module (WAMR layout, memory limit).
//! xxh3 detects corruption, not tampering: a snapshot is trusted input as far as intent
//! goes, and everything in it is validated before use.

use std::fmt;
use std::hash::Hasher;

use twox_hash::XxHash3_64;

pub const MAGIC: [u8; 8] = *b"HBBEAMRS";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 64;
const CHECKSUMMED_FROM: usize = 24;
const PAGE: usize = 65536;

/// Null in a table entry or funcref global.
const NULL: u32 = u32::MAX;

const TAG_GLOBALS: u8 = 1;
const TAG_TABLE: u8 = 2;
const TAG_MEMORY: u8 = 3;
const SECTION_HEADER: usize = 9;

/// Memory is copied and hashed in segments of this size, small enough to stay in L2.
const SEGMENT: usize = 256 * 1024;
/// From this much memory on, two threads copy and hash it.
const PARALLEL_FROM: usize = 8 << 20;

pub type ModuleId = [u8; 32];

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

/// A decoded snapshot; `memory` borrows the input.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot<'a> {
    pub module: ModuleId,
    /// Mutable globals by index (in the module's global index space), ascending.
    pub globals: Vec<(u32, GlobalValue)>,
    /// Table 0's entries as function indices, when the module has a table 0.
    pub table: Option<Vec<Option<u32>>>,
    /// Memory 0's bytes, when the module has a memory 0.
    pub memory: Option<&'a [u8]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// Not a snapshot, truncated, corrupted, or of an unknown version.
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

/// What a snapshot holds besides memory, for sizing and writing it.
pub struct Parts<'a> {
    pub module: &'a ModuleId,
    pub globals: &'a [(u32, GlobalValue)],
    pub table: Option<&'a [Option<u32>]>,
    /// The length of memory 0, or None when the module has none.
    pub memory_len: Option<usize>,
}

impl Parts<'_> {
    fn globals_len(&self) -> usize {
        4 + self.globals.iter().map(|(_, v)| 5 + GlobalValue::value_len(v.kind()).unwrap()).sum::<usize>()
    }

    /// The exact size of the encoded snapshot.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + SECTION_HEADER
            + self.globals_len()
            + self.table.map_or(0, |t| SECTION_HEADER + 4 + 4 * t.len())
            + self.memory_len.map_or(0, |m| SECTION_HEADER + m)
    }

    /// Writes the snapshot into `out` (exactly `encoded_len()` bytes) with `memory` (of
    /// `memory_len` bytes) copied in once.
    pub fn encode_into(&self, out: &mut [u8], memory: &[u8]) {
        assert_eq!(out.len(), self.encoded_len(), "output sized by encoded_len");
        assert_eq!(self.memory_len.unwrap_or(0), memory.len(), "memory of memory_len bytes");
        let mut w = Writer { out, at: 0 };
        w.bytes(&MAGIC);
        w.u32(VERSION);
        w.u32(0);
        w.u64(0); // checksum, filled in last
        w.u64(w.out.len() as u64);
        w.bytes(self.module);
        debug_assert_eq!(w.at, HEADER_LEN);

        w.section(TAG_GLOBALS, self.globals_len());
        w.u32(self.globals.len() as u32);
        for (index, value) in self.globals {
            w.u32(*index);
            w.bytes(&[value.kind()]);
            match *value {
                GlobalValue::I32(v) | GlobalValue::F32(v) => w.u32(v),
                GlobalValue::I64(v) | GlobalValue::F64(v) => w.u64(v),
                GlobalValue::V128(v) => w.bytes(&v.to_le_bytes()),
                GlobalValue::FuncRef(f) => w.u32(f.unwrap_or(NULL)),
                GlobalValue::NullExternRef | GlobalValue::NullExnRef => {}
            }
        }
        if let Some(table) = self.table {
            w.section(TAG_TABLE, 4 + 4 * table.len());
            w.u32(table.len() as u32);
            for entry in table {
                w.u32(entry.unwrap_or(NULL));
            }
        }
        if self.memory_len.is_some() {
            w.section(TAG_MEMORY, memory.len());
        }
        let meta_end = w.at;
        let (meta, dst) = out.split_at_mut(meta_end);
        let digests = segment_digests(memory.len(), |range| {
            // SAFETY: the ranges handed out are disjoint, so no two threads write the same bytes.
            let dst = unsafe { std::slice::from_raw_parts_mut(dst.as_ptr().add(range.start) as *mut u8, range.len()) };
            populate(dst);
            dst.copy_from_slice(&memory[range]);
            XxHash3_64::oneshot_with_seed(0, dst)
        });
        let sum = checksum(&meta[CHECKSUMMED_FROM..], &digests);
        out[16..24].copy_from_slice(&sum.to_le_bytes());
    }

    /// `encode_into` a new vector.
    pub fn encode(&self, memory: &[u8]) -> Vec<u8> {
        let mut out = vec![0; self.encoded_len()];
        self.encode_into(&mut out, memory);
        out
    }
}

/// Maps in the pages of a destination segment in one call when they are not there yet.
/// A fresh result binary of 1 GiB is a new mapping: written directly, it takes 262,144
/// page faults, which cost more than the copy and the hash together; asking the kernel to
/// populate each segment's 64 pages at once saves most of the trap overhead. A reused
/// destination (the allocator's cached carrier, already written) is left alone: its last
/// page is checked with `mincore` first, which is cheap, whereas populating resident
/// pages is not. Either way only the timing changes, never the contents.
#[cfg(target_os = "linux")]
fn populate(segment: &mut [u8]) {
    const OS_PAGE: usize = 4096;
    let start = segment.as_ptr() as usize & !(OS_PAGE - 1);
    let end = segment.as_ptr() as usize + segment.len();
    if segment.len() < OS_PAGE {
        return;
    }
    let last = (end - 1) & !(OS_PAGE - 1);
    let mut resident = 0u8;
    // SAFETY: `mincore` reads the page table for a page of `segment`, and `madvise` with
    // MADV_POPULATE_WRITE faults in pages of `segment` (held exclusively here) without
    // changing their contents. Failures (an old kernel) leave the plain faults to happen.
    unsafe {
        if libc::mincore(last as *mut libc::c_void, OS_PAGE, &mut resident) == 0 && resident & 1 == 0 {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_POPULATE_WRITE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn populate(_segment: &mut [u8]) {}

/// The checksum of a snapshot: `meta` then the memory segments' digests.
fn checksum(meta: &[u8], digests: &[u64]) -> u64 {
    let mut hasher = XxHash3_64::with_seed(0);
    hasher.write(meta);
    for digest in digests {
        hasher.write(&digest.to_le_bytes());
    }
    hasher.finish()
}

/// `digest(range)` for each segment of `len` bytes of memory, in order; large memories
/// are split between two threads.
fn segment_digests(len: usize, digest: impl Fn(std::ops::Range<usize>) -> u64 + Sync) -> Vec<u64> {
    let segments = len.div_ceil(SEGMENT);
    let range = |i: usize| i * SEGMENT..((i + 1) * SEGMENT).min(len);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(2);
    if len < PARALLEL_FROM || threads < 2 {
        return (0..segments).map(|i| digest(range(i))).collect();
    }
    let half = segments / 2;
    std::thread::scope(|scope| {
        let second = scope.spawn(|| (half..segments).map(|i| digest(range(i))).collect::<Vec<u64>>());
        let mut digests: Vec<u64> = (0..half).map(|i| digest(range(i))).collect();
        // A panic in the helper is a bug; let it surface like one on this thread.
        digests.extend(second.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        digests
    })
}

struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) {
        self.out[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    fn section(&mut self, tag: u8, len: usize) {
        self.bytes(&[tag]);
        self.u64(len as u64);
    }
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
    fn done(&self) -> bool {
        self.at == self.input.len()
    }
}

/// Whether `bytes` starts like a snapshot of any version (to tell snapshots from raw memory).
pub fn looks_like_snapshot(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Checks integrity (magic, version, length, checksum) and structure; the module is
/// checked separately by [`Snapshot::check_module`], so that a corrupt snapshot is always
/// reported as invalid rather than as another module's.
pub fn decode(bytes: &[u8]) -> Result<Snapshot<'_>, SnapshotError> {
    if bytes.len() < HEADER_LEN {
        return Err(invalid(format!("{} bytes, shorter than the {HEADER_LEN}-byte header", bytes.len())));
    }
    let mut header = Reader { input: &bytes[..HEADER_LEN], at: 0, what: "header" };
    if header.take(8)? != MAGIC {
        return Err(invalid("bad magic: not an hb_beamr snapshot"));
    }
    let version = header.u32()?;
    if version != VERSION {
        return Err(invalid(format!("version {version}, this build reads version {VERSION}")));
    }
    let flags = header.u32()?;
    let checksum = header.u64()?;
    let total = header.u64()?;
    if total != bytes.len() as u64 {
        return Err(invalid(format!("length {} where the header says {total}", bytes.len())));
    }
    let module: ModuleId = header.take(32)?.try_into().unwrap();
    // Sections are parsed (bounds-checked) before the checksum is verified, to find where
    // memory starts; nothing parsed is used unless the checksum matches.
    let parsed = parse_sections(bytes, module);
    let memory_start = match &parsed {
        Ok(snapshot) => snapshot.memory.map_or(bytes.len(), |m| m.as_ptr() as usize - bytes.as_ptr() as usize),
        Err(_) => bytes.len(),
    };
    let memory = &bytes[memory_start..];
    let digests = segment_digests(memory.len(), |range| XxHash3_64::oneshot_with_seed(0, &memory[range]));
    if checksum != self::checksum(&bytes[CHECKSUMMED_FROM..memory_start], &digests) {
        return Err(invalid("checksum mismatch: corrupted"));
    }
    if flags != 0 {
        return Err(invalid(format!("unsupported flags {flags:#x}")));
    }
    parsed
}

fn parse_sections(bytes: &[u8], module: ModuleId) -> Result<Snapshot<'_>, SnapshotError> {

    let mut snapshot = Snapshot { module, globals: Vec::new(), table: None, memory: None };
    let mut body = Reader { input: bytes, at: HEADER_LEN, what: "section header" };
    let mut last_tag = 0;
    while !body.done() {
        let tag = body.u8()?;
        let len = body.u64()?;
        if tag <= last_tag {
            return Err(invalid(format!("section {tag} out of order")));
        }
        last_tag = tag;
        let len = usize::try_from(len).map_err(|_| invalid("section length overflows"))?;
        body.what = "section";
        let payload = body.take(len)?;
        body.what = "section header";
        match tag {
            TAG_GLOBALS => snapshot.globals = decode_globals(payload)?,
            TAG_TABLE => snapshot.table = Some(decode_table(payload)?),
            TAG_MEMORY if payload.len() % PAGE != 0 => {
                return Err(invalid(format!("memory of {} bytes is not a whole number of pages", payload.len())))
            }
            TAG_MEMORY => snapshot.memory = Some(payload),
            _ => return Err(invalid(format!("unknown section {tag}"))),
        }
    }
    Ok(snapshot)
}

fn decode_globals(payload: &[u8]) -> Result<Vec<(u32, GlobalValue)>, SnapshotError> {
    let mut r = Reader { input: payload, at: 0, what: "globals section" };
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
            4 => GlobalValue::V128(u128::from_le_bytes(r.take(16)?.try_into().unwrap())),
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
    let mut r = Reader { input: payload, at: 0, what: "table section" };
    let size = r.u32()? as usize;
    if payload.len() != 4 + 4 * size {
        return Err(invalid("table size disagrees with the section length"));
    }
    Ok(payload[4..].chunks_exact(4).map(|e| Some(u32::from_le_bytes(e.try_into().unwrap())).filter(|f| *f != NULL)).collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: ModuleId = [7; 32];

    fn sample_memory() -> Vec<u8> {
        (0..2 * PAGE).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn sample(memory: &[u8]) -> Vec<u8> {
        let globals = [
            (0, GlobalValue::I32(0xdead_beef)),
            (2, GlobalValue::I64(u64::MAX - 3)),
            (3, GlobalValue::F32(1.5f32.to_bits())),
            (4, GlobalValue::F64(f64::NAN.to_bits())),
            (5, GlobalValue::V128(u128::MAX / 3)),
            (6, GlobalValue::FuncRef(Some(12))),
            (7, GlobalValue::FuncRef(None)),
            (8, GlobalValue::NullExternRef),
            (9, GlobalValue::NullExnRef),
        ];
        let table = [None, Some(0), Some(5), None];
        Parts { module: &MODULE, globals: &globals, table: Some(&table), memory_len: Some(memory.len()) }.encode(memory)
    }

    #[test]
    fn round_trips_every_kind_of_state() {
        let memory = sample_memory();
        let bytes = sample(&memory);
        let snapshot = decode(&bytes).unwrap();
        assert_eq!(snapshot.module, MODULE);
        assert_eq!(snapshot.globals.len(), 9);
        assert_eq!(snapshot.globals[5], (6, GlobalValue::FuncRef(Some(12))));
        assert_eq!(snapshot.globals[4], (5, GlobalValue::V128(u128::MAX / 3)));
        assert_eq!(snapshot.table, Some(vec![None, Some(0), Some(5), None]));
        assert_eq!(snapshot.memory, Some(&memory[..]));
        snapshot.check_module(&MODULE).unwrap();
    }

    #[test]
    fn round_trips_a_module_without_memory_or_table() {
        let parts = Parts { module: &MODULE, globals: &[], table: None, memory_len: None };
        let bytes = parts.encode(&[]);
        assert_eq!(bytes.len(), parts.encoded_len());
        let snapshot = decode(&bytes).unwrap();
        assert_eq!(snapshot, Snapshot { module: MODULE, globals: vec![], table: None, memory: None });
    }

    #[test]
    fn every_truncation_is_invalid() {
        let memory = vec![0xa5; PAGE];
        let bytes = sample(&memory);
        for len in 0..bytes.len() {
            assert!(
                matches!(decode(&bytes[..len]), Err(SnapshotError::Invalid(_))),
                "truncated to {len} of {} bytes",
                bytes.len()
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(SnapshotError::Invalid(_))));
    }

    #[test]
    fn every_bit_flip_outside_memory_is_invalid_and_some_inside() {
        let memory = vec![0x3c; PAGE];
        let bytes = sample(&memory);
        let meta_end = bytes.len() - memory.len();
        let positions = (0..meta_end).chain((meta_end..bytes.len()).step_by(997));
        for at in positions {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[at] ^= 1 << bit;
                assert!(
                    matches!(decode(&flipped), Err(SnapshotError::Invalid(_))),
                    "bit {bit} of byte {at} flipped"
                );
            }
        }
    }

    /// Large memories are copied and hashed by two threads: same result, same checks.
    #[test]
    fn large_memory_round_trips_and_detects_flips_in_either_half() {
        let memory: Vec<u8> = (0..(PARALLEL_FROM + 3 * PAGE)).map(|i| (i % 253) as u8).collect();
        let bytes = sample(&memory);
        assert_eq!(decode(&bytes).unwrap().memory, Some(&memory[..]));
        for at in [bytes.len() - memory.len() + 5, bytes.len() - memory.len() / 3, bytes.len() - 1] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x80;
            assert!(matches!(decode(&flipped), Err(SnapshotError::Invalid(_))), "flip at {at}");
        }
    }

    #[test]
    fn another_module_is_a_mismatch_not_invalid() {
        let memory = sample_memory();
        let bytes = sample(&memory);
        let snapshot = decode(&bytes).unwrap();
        assert!(matches!(snapshot.check_module(&[8; 32]), Err(SnapshotError::Mismatch(_))));
    }

    #[test]
    fn other_versions_and_foreign_bytes_are_invalid() {
        let memory = sample_memory();
        let mut bytes = sample(&memory);
        bytes[8] = 2;
        let Err(SnapshotError::Invalid(why)) = decode(&bytes) else { panic!("version 2 accepted") };
        assert!(why.contains("version 2"), "{why}");
        assert!(matches!(decode(&memory), Err(SnapshotError::Invalid(_))));
        assert!(!looks_like_snapshot(&memory) && looks_like_snapshot(&sample(&memory)));
    }

    /// A well-formed snapshot (valid checksum) with a bad structure is still refused.
    #[test]
    fn structurally_bad_snapshots_with_good_checksums_are_invalid() {
        fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
            let len = bytes.len() as u64;
            bytes[24..32].copy_from_slice(&len.to_le_bytes());
            let sum = checksum(&bytes[CHECKSUMMED_FROM..], &[]);
            bytes[16..24].copy_from_slice(&sum.to_le_bytes());
            bytes
        }
        let header = Parts { module: &MODULE, globals: &[], table: None, memory_len: None }.encode(&[]);
        let with = |extra: &[u8]| reseal([&header[..], extra].concat());
        // memory not a whole number of pages
        assert!(decode(&with(&[TAG_MEMORY, 3, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3])).is_err());
        // unknown section
        assert!(decode(&with(&[9, 0, 0, 0, 0, 0, 0, 0, 0])).is_err());
        // globals section again (out of order)
        assert!(decode(&with(&[TAG_GLOBALS, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])).is_err());
        // table whose size disagrees with its length
        assert!(decode(&with(&[TAG_TABLE, 4, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0])).is_err());
        // a section longer than the input
        assert!(decode(&with(&[TAG_TABLE, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])).is_err());
        // flags set
        let mut flagged = header.clone();
        flagged[12] = 1;
        assert!(decode(&reseal(flagged)).is_err());
        assert!(decode(&reseal(header)).is_ok());
    }

    /// Encoding into a fresh mapping, whose pages are not resident yet (so each segment is
    /// populated before it is written), gives the same bytes as encoding into a buffer.
    #[cfg(target_os = "linux")]
    #[test]
    fn encoding_into_a_fresh_mapping_gives_the_same_bytes() {
        let len = 32usize << 20;
        let memory: Vec<u8> = (0..len).map(|i| ((i >> 12) ^ i) as u8).collect();
        let parts = Parts { module: &MODULE, globals: &[], table: None, memory_len: Some(len) };
        let total = parts.encoded_len();
        let mut buffer = vec![0xAAu8; total];
        parts.encode_into(&mut buffer, &memory);
        // SAFETY: a private anonymous mapping of `total` bytes, unmapped below.
        let mapping = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(mapping, libc::MAP_FAILED);
        // SAFETY: the mapping is `total` bytes, readable and writable, and only used here.
        let fresh = unsafe { std::slice::from_raw_parts_mut(mapping as *mut u8, total) };
        parts.encode_into(fresh, &memory);
        let same = fresh == &buffer[..];
        // SAFETY: unmapping what was mapped above; `fresh` is not used after this.
        unsafe { libc::munmap(mapping, total) };
        assert!(same);
        assert!(decode(&buffer).is_ok());
    }
}
