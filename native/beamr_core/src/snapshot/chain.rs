//! Chains: a full snapshot followed by its deltas, each naming the one before it.

use super::digest::{zero_page_digest, PAGE};
use super::format::{invalid, Lineage, MemoryState, Snapshot, SnapshotError};

/// Checks that `chain` (each element decoded, so its checksum verified) is a full snapshot
/// followed by deltas, each following the element before it, and that memory never
/// shrinks along it (wasm memory cannot). The module is each element's own check.
pub fn check_chain(chain: &[Snapshot]) -> Result<(), SnapshotError> {
    let Some(first) = chain.first() else {
        return Err(invalid("an empty chain"));
    };
    if first.lineage != Lineage::Full {
        return Err(invalid(
            "a delta cannot be restored without the snapshots it follows: restore [Full | Deltas]",
        ));
    }
    for (i, pair) in chain.windows(2).enumerate() {
        let (before, delta) = (&pair[0], &pair[1]);
        let n = i + 2;
        match delta.lineage {
            Lineage::Full => {
                return Err(invalid(format!(
                    "element {n} is a full snapshot: a chain is one full snapshot, then its deltas"
                )))
            }
            Lineage::Delta { parent }
                if parent != before.id || delta.sequence != before.sequence + 1 =>
            {
                return Err(invalid(format!(
                    "element {n} (delta {} of its chain) does not follow element {} (number {}): \
                     out of order, or from another chain",
                    delta.sequence,
                    n - 1,
                    before.sequence
                )))
            }
            Lineage::Delta { .. } => {}
        }
        match (&before.memory, &delta.memory) {
            (None, None) => {}
            (Some(a), Some(b)) if b.size() >= a.size() => {}
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "element {n} has less memory than the one before it"
                )))
            }
            _ => {
                return Err(invalid(format!(
                    "memory 0 present in only some elements (element {n})"
                )))
            }
        }
    }
    Ok(())
}

/// The digest of each 4 KiB page of the memory `chain` describes, zero-extended to `len`
/// bytes (at least the chain's memory size), from the digests decoding computed; None
/// when the full snapshot (version 1) has none, or there is no memory.
pub fn chain_digests(chain: &[Snapshot], len: usize) -> Option<Vec<u64>> {
    let first = chain.first()?;
    first.memory.as_ref()?;
    let mut digests = first.page_digests.clone()?;
    digests.resize(len / PAGE, zero_page_digest());
    for delta in &chain[1..] {
        if let (Some(MemoryState::Changed { runs, .. }), Some(changed)) =
            (&delta.memory, &delta.page_digests)
        {
            let pages = runs
                .iter()
                .flat_map(|run| run.first as usize..run.first as usize + run.count as usize);
            for (page, digest) in pages.zip(changed) {
                if let Some(slot) = digests.get_mut(page) {
                    *slot = *digest;
                }
            }
        }
    }
    Some(digests)
}
