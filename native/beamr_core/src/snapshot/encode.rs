//! Writing snapshots (full and delta) into a buffer sized up front.

use super::digest::{self, PAGE, SEGMENT};
use super::format::{
    GlobalValue, Lineage, ModuleId, PageRun, SnapshotId, HEADER_LEN, IDENTIFIED_FROM, KIND_DELTA,
    KIND_FULL, MAGIC, NULL, SECTION_HEADER, TAG_CHANGED, TAG_GLOBALS, TAG_MEMORY, TAG_PAGES,
    TAG_TABLE, VERSION,
};

/// What a snapshot holds of memory 0.
#[derive(Clone, Copy)]
pub enum MemoryParts<'a> {
    /// The module has no memory 0.
    None,
    /// All of it (a full snapshot): `len` bytes.
    Whole { len: usize },
    /// The pages of a delta: memory is `len` bytes; `runs` ascending and disjoint.
    Changed { len: usize, runs: &'a [PageRun] },
}

/// What a snapshot holds besides memory's bytes, for sizing and writing it.
pub struct Parts<'a> {
    pub module: &'a ModuleId,
    pub lineage: Lineage,
    /// 0 for a full snapshot, the parent's + 1 for a delta.
    pub sequence: u64,
    pub globals: &'a [(u32, GlobalValue)],
    /// Every table of the module by index, ascending, with its entries (function indices,
    /// None for null).
    pub tables: &'a [(u32, &'a [Option<u32>])],
    pub memory: MemoryParts<'a>,
}

/// What encoding computed on the way.
pub struct Encoded {
    pub id: SnapshotId,
    /// The digest of each 4 KiB page of the bulk (memory, or the changed pages).
    pub page_digests: Vec<u64>,
}

impl Parts<'_> {
    fn globals_len(&self) -> usize {
        4 + self
            .globals
            .iter()
            .map(|(_, v)| 5 + GlobalValue::value_len(v.kind()).unwrap())
            .sum::<usize>()
    }

    /// The tables section's payload length (no section when the module has no table).
    fn tables_len(&self) -> usize {
        4 + self
            .tables
            .iter()
            .map(|(_, entries)| 8 + 4 * entries.len())
            .sum::<usize>()
    }

    /// The runs of pages the bulk holds, in order (all of memory for a full snapshot).
    fn runs(&self) -> Vec<PageRun> {
        match self.memory {
            MemoryParts::None => Vec::new(),
            MemoryParts::Whole { len } => vec![PageRun {
                first: 0,
                count: (len / PAGE) as u32,
            }],
            MemoryParts::Changed { runs, .. } => runs.to_vec(),
        }
    }

    fn bulk_len(&self) -> usize {
        match self.memory {
            MemoryParts::None => 0,
            MemoryParts::Whole { len } => len,
            MemoryParts::Changed { runs, .. } => runs.iter().map(|r| r.count as usize * PAGE).sum(),
        }
    }

    /// The exact size of the encoded snapshot.
    pub fn encoded_len(&self) -> usize {
        let memory = match self.memory {
            MemoryParts::None => 0,
            MemoryParts::Whole { len } => SECTION_HEADER + len,
            MemoryParts::Changed { runs, .. } => {
                2 * SECTION_HEADER + 12 + 8 * runs.len() + self.bulk_len()
            }
        };
        HEADER_LEN
            + SECTION_HEADER
            + self.globals_len()
            + if self.tables.is_empty() {
                0
            } else {
                SECTION_HEADER + self.tables_len()
            }
            + memory
    }

    /// Writes the snapshot into `out` (exactly `encoded_len()` bytes), copying the bulk
    /// out of `memory` (memory 0, of the length `self.memory` gives) once.
    pub fn encode_into(&self, out: &mut [u8], memory: &[u8]) -> Encoded {
        assert_eq!(out.len(), self.encoded_len(), "output sized by encoded_len");
        let (kind, parent) = match self.lineage {
            Lineage::Full => (KIND_FULL, 0),
            Lineage::Delta { parent } => (KIND_DELTA, parent),
        };
        let memory_len = match self.memory {
            MemoryParts::None => 0,
            MemoryParts::Whole { len } | MemoryParts::Changed { len, .. } => len,
        };
        assert_eq!(
            memory.len(),
            memory_len,
            "memory of the length the parts give"
        );
        let mut w = Writer { out, at: 0 };
        w.bytes(&MAGIC);
        w.u32(VERSION);
        w.u32(kind);
        w.bytes(&[0; 16]); // the id, filled in last
        w.u64(w.out.len() as u64);
        w.bytes(self.module);
        w.bytes(&parent.to_le_bytes());
        w.u64(self.sequence);
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
        if !self.tables.is_empty() {
            assert!(
                self.tables.windows(2).all(|w| w[0].0 < w[1].0),
                "tables ascending by index"
            );
            w.section(TAG_TABLE, self.tables_len());
            w.u32(self.tables.len() as u32);
            for (index, entries) in self.tables {
                w.u32(*index);
                w.u32(entries.len() as u32);
                for entry in *entries {
                    w.u32(entry.unwrap_or(NULL));
                }
            }
        }
        match self.memory {
            MemoryParts::None => {}
            MemoryParts::Whole { len } => w.section(TAG_MEMORY, len),
            MemoryParts::Changed { len, runs } => {
                w.section(TAG_CHANGED, 12 + 8 * runs.len());
                w.u64(len as u64);
                w.u32(runs.len() as u32);
                for run in runs {
                    w.u32(run.first);
                    w.u32(run.count);
                }
                w.section(TAG_PAGES, self.bulk_len());
            }
        }
        let bulk_start = w.at;
        let (meta, bulk) = out.split_at_mut(bulk_start);
        let runs = self.runs();
        // Where each run starts in the bulk, in pages.
        let starts: Vec<usize> = runs
            .iter()
            .scan(0, |at, run| {
                let start = *at;
                *at += run.count as usize;
                Some(start)
            })
            .collect();
        let bulk_base = bulk.as_mut_ptr() as usize;
        let page_digests = digest::per_segment(bulk.len(), PAGE, |range, digests| {
            // SAFETY: the ranges handed out are disjoint, so no two threads write the same bytes.
            let dst = unsafe {
                std::slice::from_raw_parts_mut((bulk_base + range.start) as *mut u8, range.len())
            };
            populate(dst);
            gather(dst, range.start, memory, &runs, &starts);
            digest::hash_pages(dst, digests);
        });
        let id = digest::id(&meta[IDENTIFIED_FROM..], &page_digests);
        out[16..32].copy_from_slice(&id.to_le_bytes());
        Encoded { id, page_digests }
    }

    /// `encode_into` a new vector.
    pub fn encode(&self, memory: &[u8]) -> (Vec<u8>, Encoded) {
        let mut out = vec![0; self.encoded_len()];
        let encoded = self.encode_into(&mut out, memory);
        (out, encoded)
    }
}

/// Copies `src` into `dst`, a destination of the same length that may be fresh (nothing
/// resident yet), as the bulk of a full snapshot is copied: segment by segment, each
/// populated first, by two threads for large inputs. For raw reads of memory
/// (`serialize`), which otherwise pay a page fault per 4 KiB of their result.
pub fn copy_out(dst: &mut [u8], src: &[u8]) {
    assert_eq!(
        dst.len(),
        src.len(),
        "copy_out needs a destination as long as its source"
    );
    let dst_base = dst.as_mut_ptr() as usize;
    digest::per_segment(src.len(), SEGMENT, |range, _| {
        // SAFETY: the ranges handed out are disjoint, so no two threads write the same bytes.
        let dst = unsafe {
            std::slice::from_raw_parts_mut((dst_base + range.start) as *mut u8, range.len())
        };
        populate(dst);
        dst.copy_from_slice(&src[range]);
    });
}

/// Fills `dst`, the bulk's bytes from offset `at`, with the pages of `memory` that `runs`
/// (starting at pages `starts` of the bulk) name.
fn gather(dst: &mut [u8], at: usize, memory: &[u8], runs: &[PageRun], starts: &[usize]) {
    let mut done = 0;
    while done < dst.len() {
        let offset = at + done;
        let k = starts.partition_point(|start| *start * PAGE <= offset) - 1;
        let into_run = offset - starts[k] * PAGE;
        let source = runs[k].first as usize * PAGE + into_run;
        let n = (runs[k].count as usize * PAGE - into_run).min(dst.len() - done);
        dst[done..done + n].copy_from_slice(&memory[source..source + n]);
        done += n;
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
    let start = segment.as_ptr() as usize & !(PAGE - 1);
    let end = segment.as_ptr() as usize + segment.len();
    if segment.len() < PAGE {
        return;
    }
    let last = (end - 1) & !(PAGE - 1);
    let mut resident = 0u8;
    // SAFETY: `mincore` reads the page table for a page of `segment`, and `madvise` with
    // MADV_POPULATE_WRITE faults in pages of `segment` (held exclusively here) without
    // changing their contents. Failures (an old kernel) leave the plain faults to happen.
    unsafe {
        if libc::mincore(last as *mut libc::c_void, PAGE, &mut resident) == 0 && resident & 1 == 0 {
            libc::madvise(
                start as *mut libc::c_void,
                end - start,
                libc::MADV_POPULATE_WRITE,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn populate(_segment: &mut [u8]) {}

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
