//! The snapshot format: an instance's state (memory 0, every mutable global, every table)
//! in one versioned, checksummed binary bound to the module it came from. A *full*
//! snapshot holds all of it; a *delta* holds what changed since the snapshot it follows
//! (its parent): the 4 KiB pages of memory that changed, and the globals and tables whole.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "HBBEAMRS"
//!      8     4  version (u32 LE), currently 3
//!     12     4  kind (u32 LE): 0 full, 1 delta
//!     16    16  id (u128 LE): xxh3-128 of every byte from offset 32 up to the bulk,
//!               followed by the xxh3-64 (u64 LE) of each 4 KiB page of the bulk
//!     32     8  total length of the snapshot in bytes (u64 LE)
//!     40    32  module id: the state identity of the module
//!               (`artifact::Header::state_identity`: source, WAMR layout)
//!     72    16  parent: the id of the snapshot a delta follows; zero in a full snapshot
//!     88     8  sequence (u64 LE): 0 in a full snapshot, the parent's + 1 in a delta
//!     96     …  sections, each: tag (u8), payload length (u64 LE), payload;
//!               tags strictly increasing, each at most once:
//!                 1 globals: count (u32), then per global: index (u32), kind (u8), value
//!                 2 tables: count (u32, at least 1; no section when the module has
//!                   no table), then per table, ascending by index: its index (u32),
//!                   size (u32), then per entry a function index (u32), u32::MAX for
//!                   null (the only entry a table of another reference type can have)
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
//! the change tracking of `dirty_pages` its base for free. The module id binds the source
//! and what decides the state's layout (WAMR's extra page), not the prepared bytes, so a
//! snapshot outlives changes to preparation that leave the layout alone (such as the
//! hidden exports version 3 reads other tables through).
//!
//! The id is the checksum, so it names the content: a delta names its parent by the
//! parent's id, which covers the parent's own parent, making a chain a hash chain; two
//! identical states give identical full snapshots and ids. xxh3 detects corruption, not
//! tampering: a snapshot is trusted input as far as intent goes, and everything in it is
//! validated before use.
//!
//! Version 2 (before every table was captured) is still read: the same layout, but its
//! section 2 is table 0 alone: size (u32), then its entries as above. It says nothing of
//! other tables, so restoring it sets table 0 and leaves the others as they are. A
//! version-2 table section read as version 3 or the reverse never decodes (the sizes
//! disagree with the section's length, and an empty tables section is refused), so a bit
//! flip between the two versions, which the id does not cover, is caught or changes
//! nothing (neither has a table section).
//!
//! Version 1 (full snapshots only, before deltas existed) is still read: a 64-byte header
//! (magic, version, flags 0, an xxh3-64 checksum at 16 of the bytes from 24 on and of each
//! 256 KiB segment of memory, length at 24, module at 32), then sections 1–3 as in version
//! 2 (table 0 only). Its id, which a delta taken after restoring it names, is that
//! checksum zero-extended.

mod chain;
mod decode;
pub mod digest;
mod encode;
mod format;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;

pub use chain::{chain_digests, check_chain};
pub use decode::{decode, decode_trusted, peek_id};
pub use digest::PAGE;
pub use encode::{copy_out, Encoded, MemoryParts, Parts};
pub use format::{
    GlobalValue, Lineage, MemoryState, ModuleId, PageRun, Snapshot, SnapshotError, SnapshotId,
    TableEntries, MAGIC, VERSION,
};
