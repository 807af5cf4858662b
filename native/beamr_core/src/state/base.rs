//! The bases of hibernation images: full snapshots shared by many instances (the module's
//! freshly instantiated state, or a snapshot that several instances were restored from),
//! validated once, held without copying, and whose memory can be mapped copy-on-write
//! (see `memory_file`).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use once_cell::sync::{Lazy, OnceCell};
use parking_lot::Mutex;

use super::memory_file::MemoryFile;
use super::zero_pages::ZeroPages;
use super::StateError;
use crate::snapshot::{self, Lineage, MemoryState, ModuleId, SnapshotError, SnapshotId};

/// The bytes of a full snapshot, however the embedder holds them (an Erlang binary is not
/// copied, see the NIF's `Bytes`).
pub trait SnapshotBytes: Send + Sync {
    fn with_bytes(&self, f: &mut dyn FnMut(&[u8]));
}

impl SnapshotBytes for Vec<u8> {
    fn with_bytes(&self, f: &mut dyn FnMut(&[u8])) {
        f(self)
    }
}

/// A full snapshot that images are deltas of, validated once.
pub struct Base {
    pub(super) bytes: Box<dyn SnapshotBytes>,
    pub(super) id: SnapshotId,
    /// The digest of each page of its memory (empty without memory).
    pub(super) digests: Vec<u64>,
    /// Its memory's pages of zeros.
    pub(super) zero: ZeroPages,
    /// Its memory in a file, to map copy-on-write (made at the first restore or revival
    /// that uses it; None when the OS refused one).
    file: OnceCell<Option<MemoryFile>>,
}

impl Base {
    /// `bytes` must decode as a full snapshot (version 2 or later, which has page digests).
    pub fn new(bytes: Box<dyn SnapshotBytes>) -> Result<Base, SnapshotError> {
        let mut decoded = Err(SnapshotError::Invalid("no bytes".into()));
        bytes.with_bytes(&mut |data| {
            decoded = snapshot::decode(data).and_then(|s| {
                let zero = match &s.memory {
                    Some(MemoryState::Whole(memory)) => ZeroPages::of(memory),
                    _ => ZeroPages::of(&[]),
                };
                match s.lineage {
                    Lineage::Full => Ok((s.id, s.page_digests.unwrap_or_default(), zero)),
                    Lineage::Delta { .. } => Err(SnapshotError::Invalid("a base is full".into())),
                }
            });
        });
        let (id, digests, zero) = decoded?;
        Ok(Base {
            bytes,
            id,
            digests,
            zero,
            file: OnceCell::new(),
        })
    }

    /// Its memory in a sealed file, made the first time it is asked for; None when the
    /// OS refuses the file (memory is then written page by page).
    pub(super) fn memory_file(&self) -> Option<&MemoryFile> {
        self.file
            .get_or_init(|| {
                let mut file = None;
                self.with_memory(&mut |memory| file = MemoryFile::new(memory, &self.zero).ok());
                file
            })
            .as_ref()
    }

    /// Whether `other` are the base's bytes (the same binary, or equal ones).
    fn holds(&self, other: &dyn SnapshotBytes) -> bool {
        let mut same = false;
        self.bytes.with_bytes(&mut |ours| {
            other.with_bytes(&mut |theirs| {
                same = std::ptr::eq(ours, theirs) || ours == theirs;
            })
        });
        same
    }

    /// Calls `f` with the base's memory (empty without one).
    pub(super) fn with_memory(&self, f: &mut dyn FnMut(&[u8])) {
        self.bytes.with_bytes(
            &mut |bytes| match snapshot::decode_trusted(bytes, Vec::new()).map(|s| s.memory) {
                Ok(Some(MemoryState::Whole(memory))) => f(memory),
                _ => f(&[]),
            },
        );
    }
}

/// Bases that images share: each module's freshly instantiated state (by the module's
/// state identity), and snapshots that more than one instance was restored from (by
/// snapshot id), while any instance or image holds them.
struct Bases {
    modules: HashMap<ModuleId, Weak<Base>>,
    /// A snapshot restored once is only remembered (holding it for one instance would
    /// cost its whole size); from the second restore on it is a base.
    restored: HashMap<SnapshotId, Weak<Base>>,
}

static BASES: Lazy<Mutex<Bases>> = Lazy::new(|| {
    Mutex::new(Bases {
        modules: HashMap::new(),
        restored: HashMap::new(),
    })
});

/// How many snapshot ids are remembered at most (about 40 bytes each).
const MAX_REMEMBERED: usize = 65_536;

impl Base {
    /// The module's base: the one images already share, or the full snapshot `fresh`
    /// makes (of a fresh instantiation of the module).
    pub fn for_module(
        identity: ModuleId,
        fresh: impl FnOnce() -> Result<Vec<u8>, StateError>,
    ) -> Result<Arc<Base>, StateError> {
        if let Some(base) = BASES.lock().modules.get(&identity).and_then(Weak::upgrade) {
            return Ok(base);
        }
        let base = Arc::new(Base::new(Box::new(fresh()?)).map_err(StateError::Snapshot)?);
        let mut bases = BASES.lock();
        bases.modules.retain(|_, base| base.strong_count() > 0);
        bases.modules.insert(identity, Arc::downgrade(&base));
        Ok(base)
    }

    /// An instance is about to be restored from the full snapshot `snapshot`: its base
    /// when another instance was restored from it too (made from `snapshot`, which holds
    /// its bytes without copying them, the first time; None unless it decodes as a full
    /// snapshot); None the first time the snapshot is seen. A base is only ever shared
    /// with the very same bytes: ids are digests, which a module could make collide.
    pub fn for_restored(snapshot: Box<dyn SnapshotBytes>) -> Option<Arc<Base>> {
        let mut id = None;
        snapshot.with_bytes(&mut |bytes| id = snapshot::peek_id(bytes).ok());
        let id = id?;
        let mut bases = BASES.lock();
        match bases.restored.get(&id).map(Weak::upgrade) {
            Some(Some(base)) => {
                // Compared outside the lock: equal bytes in another binary are read whole.
                drop(bases);
                return base.holds(&*snapshot).then_some(base);
            }
            Some(None) => {}
            None => {
                if bases.restored.len() >= MAX_REMEMBERED {
                    bases.restored.retain(|_, base| base.strong_count() > 0);
                    if bases.restored.len() >= MAX_REMEMBERED {
                        bases.restored.clear();
                    }
                }
                bases.restored.insert(id, Weak::new());
                return None;
            }
        }
        drop(bases);
        let base = Arc::new(Base::new(snapshot).ok()?);
        BASES.lock().restored.insert(id, Arc::downgrade(&base));
        Some(base)
    }
}
