//! For tests: version-2 snapshots, made from version-3 ones (the format before every
//! table was captured, so that tests check it still restores), and fresh mappings.

use super::digest;
use super::format::{
    SnapshotId, HEADER_LEN, IDENTIFIED_FROM, SECTION_HEADER, TAG_MEMORY, TAG_PAGES, TAG_TABLE,
};

/// What version 2 wrote of the state version-3 `bytes` hold: the same header (with
/// `parent` instead of the one it names, for a delta whose parent was made version 2 as
/// well), and in section 2 table 0 alone, as `size, entries` (version 2 captured no
/// other table), resealed with its own id.
pub(crate) fn as_version_2(bytes: &[u8], parent: Option<SnapshotId>) -> Vec<u8> {
    let mut out = bytes[..HEADER_LEN].to_vec();
    out[8..12].copy_from_slice(&2u32.to_le_bytes());
    if let Some(parent) = parent {
        out[72..88].copy_from_slice(&parent.to_le_bytes());
    }
    let mut bulk = 0;
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        let tag = bytes[at];
        let len =
            u64::from_le_bytes(bytes[at + 1..at + SECTION_HEADER].try_into().unwrap()) as usize;
        let payload = &bytes[at + SECTION_HEADER..at + SECTION_HEADER + len];
        if tag == TAG_TABLE {
            // count, then table 0 (if the module has one) first: index, size, entries.
            let first = u32::from_le_bytes(payload[4..8].try_into().unwrap());
            if first == 0 {
                let size = u32::from_le_bytes(payload[8..12].try_into().unwrap()) as usize;
                let table0 = &payload[8..12 + 4 * size];
                out.push(TAG_TABLE);
                out.extend_from_slice(&(table0.len() as u64).to_le_bytes());
                out.extend_from_slice(table0);
            }
        } else {
            out.extend_from_slice(&bytes[at..at + SECTION_HEADER + len]);
            if tag == TAG_MEMORY || tag == TAG_PAGES {
                bulk = len;
            }
        }
        at += SECTION_HEADER + len;
    }
    let len = out.len() as u64;
    out[32..40].copy_from_slice(&len.to_le_bytes());
    let meta_end = out.len() - bulk;
    let id = digest::id(
        &out[IDENTIFIED_FROM..meta_end],
        &digest::page_digests(&out[meta_end..]),
    );
    out[16..32].copy_from_slice(&id.to_le_bytes());
    out
}

/// A private anonymous mapping none of whose pages is resident yet, like the fresh carrier
/// of a large result binary.
#[cfg(target_os = "linux")]
pub(crate) struct FreshMapping {
    base: *mut libc::c_void,
    len: usize,
}

#[cfg(target_os = "linux")]
impl FreshMapping {
    pub(crate) fn new(len: usize) -> FreshMapping {
        // SAFETY: a new private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        FreshMapping { base, len }
    }

    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable, and ours.
        unsafe { std::slice::from_raw_parts_mut(self.base.cast(), self.len) }
    }
}

#[cfg(target_os = "linux")]
impl Drop for FreshMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; no slice of it outlives `self`.
        unsafe { libc::munmap(self.base, self.len) };
    }
}
