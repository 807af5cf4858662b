//! Reading a snapshot: the header, the sections, and what they hold.

use std::ops::Range;

use super::digest::{self, PAGE};
use super::format::*;

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
        2 | VERSION => HEADER_LEN,
        _ => {
            return Err(invalid(format!(
                "version {version}, this build reads versions 1 to {VERSION}"
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

/// The id a snapshot's header gives, checked for form (magic, version, length) but not
/// against the contents: for a snapshot that was decoded before.
pub fn peek_id(bytes: &[u8]) -> Result<SnapshotId, SnapshotError> {
    read_header(bytes).map(|header| header.checksum)
}

/// Checks integrity (magic, version, length, checksum) and structure; the module is
/// checked separately by [`Snapshot::check_module`], so that a corrupt snapshot is always
/// reported as invalid rather than as another module's.
pub fn decode(bytes: &[u8]) -> Result<Snapshot<'_>, SnapshotError> {
    decode_checked(bytes, None)
}

/// `decode` of a snapshot decoded before, whose page digests are `digests`: the checksum
/// is not computed again (hibernation's bases, validated when they became bases).
pub fn decode_trusted(bytes: &[u8], digests: Vec<u64>) -> Result<Snapshot<'_>, SnapshotError> {
    decode_checked(bytes, Some(digests))
}

fn decode_checked(bytes: &[u8], trusted: Option<Vec<u64>>) -> Result<Snapshot<'_>, SnapshotError> {
    let header = read_header(bytes)?;
    // Sections are parsed (bounds-checked) before the checksum is verified, to find where
    // the bulk starts; nothing parsed is used unless the checksum matches.
    let parsed = parse_sections(bytes, &header);
    let bulk_start = match &parsed {
        Ok((_, _, Some(bulk))) => bulk.start,
        _ => bytes.len(),
    };
    let bulk = &bytes[bulk_start..];
    let page_digests = if let Some(digests) = trusted {
        Some(digests)
    } else if header.version == 1 {
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
        (1, 0) | (2 | VERSION, KIND_FULL) => Lineage::Full,
        (2 | VERSION, KIND_DELTA) => Lineage::Delta {
            parent: header.parent,
        },
        (_, kind) => return Err(invalid(format!("unsupported kind {kind:#x}"))),
    };
    let (globals, tables, _) = parsed?;
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
        tables,
        every_table: header.version >= 3,
        memory,
        page_digests,
    })
}

type Sections = (
    Vec<(u32, GlobalValue)>,
    Vec<(u32, TableEntries)>,
    Option<Range<usize>>,
);

/// The globals, tables, and where the bulk is; memory's sections are read by
/// `memory_state` once the kind is known to be trustworthy.
fn parse_sections(bytes: &[u8], header: &Header) -> Result<Sections, SnapshotError> {
    let (mut globals, mut tables, mut bulk) = (Vec::new(), Vec::new(), None);
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
            TAG_TABLE if header.version < 3 => tables = vec![(0, decode_table(payload)?)],
            TAG_TABLE => tables = decode_tables(payload)?,
            TAG_MEMORY | TAG_PAGES => bulk = Some(start..start + len),
            TAG_CHANGED if header.version != 1 => {}
            _ => return Err(invalid(format!("unknown section {tag}"))),
        }
    }
    Ok((globals, tables, bulk))
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

/// Versions 1 and 2: table 0 alone.
fn decode_table(payload: &[u8]) -> Result<TableEntries, SnapshotError> {
    let mut r = Reader {
        input: payload,
        at: 0,
        what: "table section",
    };
    let size = r.u32()? as usize;
    if payload.len() != 4 + 4 * size {
        return Err(invalid("table size disagrees with the section length"));
    }
    Ok(entries(&payload[4..]))
}

fn entries(bytes: &[u8]) -> TableEntries {
    bytes
        .chunks_exact(4)
        .map(|e| Some(u32::from_le_bytes(e.try_into().unwrap())).filter(|f| *f != NULL))
        .collect()
}

/// Version 3: every table, by index.
fn decode_tables(payload: &[u8]) -> Result<Vec<(u32, TableEntries)>, SnapshotError> {
    let mut r = Reader {
        input: payload,
        at: 0,
        what: "tables section",
    };
    let count = r.u32()?;
    // A module without tables has no tables section, so an empty one is malformed (and a
    // version-2 table section of size 0 read as version 3 is refused rather than taken for
    // "no tables"). Each table takes at least 8 bytes: a larger count is a lie.
    if count == 0 || count as usize > payload.len() / 8 {
        return Err(invalid("tables count is zero or exceeds the section"));
    }
    let mut tables: Vec<(u32, TableEntries)> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let index = r.u32()?;
        if tables.last().is_some_and(|(last, _)| *last >= index) {
            return Err(invalid("table indices not ascending"));
        }
        let size = r.u32()? as usize;
        let bytes = r.take(
            size.checked_mul(4)
                .ok_or_else(|| invalid("table size overflows"))?,
        )?;
        tables.push((index, entries(bytes)));
    }
    if !r.done() {
        return Err(invalid("trailing bytes in the tables section"));
    }
    Ok(tables)
}
