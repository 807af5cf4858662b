//! Which 4 KiB pages of a memory hold only zeros, found by reading them: what lets a
//! restore skip the pages that are zeros on both sides without trusting a digest (a
//! module could craft a page whose digest is the zero page's; its state must come back
//! exactly, on every node that recomputes it).

use std::collections::HashMap;
use std::sync::Arc;

use once_cell::sync::Lazy;
use parking_lot::Mutex;

use crate::snapshot::{ModuleId, PAGE};

/// One bit per page: set when the page holds only zeros.
pub struct ZeroPages(Vec<u64>);

static ZEROS: [u8; PAGE] = [0; PAGE];

impl ZeroPages {
    /// The zero pages of `memory` (a whole number of pages; a short last page counts
    /// by its bytes).
    pub fn of(memory: &[u8]) -> ZeroPages {
        let pages = memory.len().div_ceil(PAGE);
        let mut bits = vec![0u64; pages.div_ceil(64)];
        for (page, bytes) in memory.chunks(PAGE).enumerate() {
            if is_zero(bytes) {
                bits[page / 64] |= 1 << (page % 64);
            }
        }
        ZeroPages(bits)
    }

    /// Whether page `page` is known to hold only zeros (false past the memory).
    pub fn get(&self, page: usize) -> bool {
        self.0
            .get(page / 64)
            .is_some_and(|word| word & (1 << (page % 64)) != 0)
    }

    /// The zero pages of a fresh instantiation of the module `identity`, made by `scan`
    /// the first time (kept for the 256 modules seen last).
    pub fn of_fresh_module(identity: ModuleId, scan: impl FnOnce() -> ZeroPages) -> Arc<ZeroPages> {
        static FRESH: Lazy<Mutex<HashMap<ModuleId, Arc<ZeroPages>>>> =
            Lazy::new(|| Mutex::new(HashMap::new()));
        if let Some(known) = FRESH.lock().get(&identity) {
            return Arc::clone(known);
        }
        let known = Arc::new(scan());
        let mut fresh = FRESH.lock();
        if fresh.len() >= 256 {
            fresh.clear();
        }
        fresh.insert(identity, Arc::clone(&known));
        known
    }
}

/// Whether `bytes` (at most a page) are all zeros: `memcmp` against a page of zeros,
/// many times faster than a loop over bytes.
pub fn is_zero(bytes: &[u8]) -> bool {
    bytes == &ZEROS[..bytes.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_the_pages_of_zeros() {
        let mut memory = vec![0u8; 5 * PAGE];
        memory[PAGE + 7] = 1;
        memory[4 * PAGE - 1] = 9;
        let zero = ZeroPages::of(&memory);
        let found: Vec<bool> = (0..6).map(|p| zero.get(p)).collect();
        assert_eq!(found, [true, false, true, false, true, false]);
    }
}
