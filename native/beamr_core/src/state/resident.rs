//! Which pages of a memory the process has touched, from /proc/self/pagemap: a page of an
//! anonymous private mapping that is neither present nor swapped out has never been
//! written (or was given back), so it reads as zeros; a page of a private mapping of a
//! file (see `memory_file`) that is not an anonymous page of the process (present and not
//! the file's, or swapped out) was never written, so it reads as the file. Hibernation
//! compares only the touched pages with its base, instead of reading (and faulting in)
//! all of memory.

use std::fs::File;
use std::os::unix::fs::FileExt;

use once_cell::sync::Lazy;

use crate::snapshot::PAGE;

/// pagemap's entry bits: page present in RAM, page swapped out, page of a file (or of
/// shared anonymous memory) rather than of the process's own.
const PRESENT: u64 = 1 << 63;
const SWAPPED: u64 = 1 << 62;
const FILE: u64 = 1 << 61;

static PAGEMAP: Lazy<Option<File>> = Lazy::new(|| File::open("/proc/self/pagemap").ok());

/// One flag per page of `memory` (which starts on a page boundary): true when it may hold
/// something other than what the mapping started with, which is a file mapped privately
/// for its first `file_len` bytes and zeros after. None when pagemap cannot be read (then
/// every page may).
pub fn touched_pages(memory: &[u8], file_len: usize) -> Option<Vec<bool>> {
    let pagemap = PAGEMAP.as_ref()?;
    let start = memory.as_ptr() as usize;
    if !start.is_multiple_of(PAGE) {
        return None;
    }
    let pages = memory.len() / PAGE;
    let mut entries = vec![0u8; pages * 8];
    let offset = (start / PAGE * 8) as u64;
    pagemap.read_exact_at(&mut entries, offset).ok()?;
    Some(
        entries
            .chunks_exact(8)
            .enumerate()
            .map(|(page, e)| {
                let entry = u64::from_le_bytes(e.try_into().expect("8 bytes"));
                let own = entry & SWAPPED != 0 || entry & (PRESENT | FILE) == PRESENT;
                match page < file_len / PAGE {
                    true => own,
                    false => entry & (PRESENT | SWAPPED) != 0,
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::test_support::FreshMapping;

    #[test]
    fn untouched_pages_read_as_untouched() {
        // A fresh anonymous mapping: only the pages written are touched.
        let mut mapping = FreshMapping::new(8 * PAGE);
        let memory = mapping.bytes();
        memory[PAGE + 1] = 1;
        memory[5 * PAGE] = 2;
        let touched = touched_pages(memory, 0).expect("pagemap readable");
        assert_eq!(
            touched,
            [false, true, false, false, false, true, false, false]
        );
    }
}
