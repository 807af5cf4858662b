//! Hibernation images: an instance's whole state kept small while it has no executor, and
//! put back into a fresh instantiation of its module when it wakes.
//!
//! An image is a delta snapshot (see `crate::snapshot`) against a [`Base`]: a full snapshot
//! shared by many instances (the module's freshly instantiated state, or a snapshot that
//! several instances were restored from). It holds the 4 KiB pages whose digests differ
//! from the base's (each XORed with the base's page, so what did not change in it is
//! zeros), and the globals and tables whole, compressed with zstd. Reviving
//! restores the chain `[base, delta]`, validated like any restore.
//!
//! Incremental snapshots must not notice a hibernation: the delta a user takes after a
//! revival holds every page changed since their previous snapshot, including those changed
//! before hibernating. So the image also carries that base (its id and sequence) and the
//! pages changed since it (`DirtyPages::carry`); the revived memory's page digests are the
//! base's but for the image's pages, hashed at revival.

use std::sync::Arc;

use wasmer::AsStoreMut;

use super::apply::Known;
use super::base::Base;
#[cfg(target_os = "linux")]
use super::resident::touched_pages;
use super::scratch::{self, Scratch};
use super::zero_pages::{is_zero, ZeroPages};
use super::{StateAccess, StateError};
use crate::dirty_pages::{runs, DirtyPages};
use crate::snapshot::digest::{page_digest, zero_page_digest};
use crate::snapshot::{
    self, Lineage, MemoryParts, MemoryState, PageRun, Parts, Snapshot, SnapshotError, SnapshotId,
    PAGE,
};

/// zstd data and the length it decompresses to.
struct Compressed {
    bytes: Vec<u8>,
    len: usize,
}

/// zstd's fastest level: images are made often, and level 3 gains little on them.
const ZSTD_LEVEL: i32 = 1;

impl Compressed {
    fn new(data: &[u8]) -> Result<Compressed, StateError> {
        Ok(Compressed {
            bytes: scratch::compress(data, ZSTD_LEVEL).map_err(|_| StateError::Grow("memory"))?,
            len: data.len(),
        })
    }

    /// Decompresses into a buffer allocated fallibly (the length may come from disk).
    fn decompress(&self) -> Result<Scratch, StateError> {
        let mut out = Scratch::with_capacity(self.len).ok_or(StateError::Grow("memory"))?;
        match scratch::decompress(&self.bytes, &mut out) {
            Ok(n) if n == self.len => Ok(out),
            _ => Err(invalid("damaged hibernation image")),
        }
    }
}

fn invalid(why: &str) -> StateError {
    StateError::Snapshot(SnapshotError::Invalid(why.into()))
}

/// The incremental-snapshot base an image carries across hibernation: its id and
/// sequence, and the pages changed since it (runs, compressed).
struct Carried {
    base: (SnapshotId, u64),
    changed: Compressed,
}

/// An instance's state while it hibernates.
pub struct Image {
    base: Arc<Base>,
    delta: Compressed,
    tracking: Option<Carried>,
}

impl Image {
    pub fn base(&self) -> &Arc<Base> {
        &self.base
    }

    /// What the image itself takes (not its shared base).
    pub fn bytes(&self) -> usize {
        self.delta.bytes.len() + self.tracking.as_ref().map_or(0, |t| t.changed.bytes.len())
    }

    /// The image as one checksummed record (for a file), without its base.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes() + 96);
        out.extend_from_slice(IMAGE_MAGIC);
        out.extend_from_slice(&self.base.id.to_le_bytes());
        put_compressed(&mut out, &self.delta);
        match &self.tracking {
            None => out.push(0),
            Some(carried) => {
                out.push(1);
                out.extend_from_slice(&carried.base.0.to_le_bytes());
                out.extend_from_slice(&carried.base.1.to_le_bytes());
                put_compressed(&mut out, &carried.changed);
            }
        }
        let checksum = twox_hash::XxHash3_64::oneshot(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Reads what `encode` wrote, for `base`; anything else is `invalid_snapshot`.
    pub fn decode(bytes: &[u8], base: Arc<Base>) -> Result<Image, StateError> {
        let body_len = bytes
            .len()
            .checked_sub(8)
            .ok_or_else(|| invalid("truncated hibernation image"))?;
        let (body, checksum) = bytes.split_at(body_len);
        if twox_hash::XxHash3_64::oneshot(body).to_le_bytes() != checksum {
            return Err(invalid("hibernation image checksum mismatch"));
        }
        let mut reader = Reader(body);
        if reader.take(IMAGE_MAGIC.len())? != IMAGE_MAGIC {
            return Err(invalid("not a hibernation image"));
        }
        if reader.u128()? != base.id {
            return Err(invalid("hibernation image of another base"));
        }
        let delta = reader.compressed()?;
        let tracking = match reader.take(1)? {
            [0] => None,
            [1] => Some(Carried {
                base: (reader.u128()?, reader.u64()?),
                changed: reader.compressed()?,
            }),
            _ => return Err(invalid("hibernation image: bad tracking flag")),
        };
        if !reader.0.is_empty() {
            return Err(invalid("hibernation image: trailing bytes"));
        }
        Ok(Image {
            base,
            delta,
            tracking,
        })
    }
}

const IMAGE_MAGIC: &[u8; 8] = b"HBBEAMRI";

/// The largest decompressed part a file may announce (wasm32 memory and its digests, with
/// room for globals and tables); larger is a damaged file, refused before allocating.
const MAX_DECOMPRESSED: u64 = (4 << 30) + (256 << 20);

fn put_compressed(out: &mut Vec<u8>, part: &Compressed) {
    out.extend_from_slice(&(part.len as u64).to_le_bytes());
    out.extend_from_slice(&(part.bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&part.bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        if n > self.0.len() {
            return Err(invalid("truncated hibernation image"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, StateError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn u128(&mut self) -> Result<u128, StateError> {
        Ok(u128::from_le_bytes(
            self.take(16)?.try_into().expect("16 bytes"),
        ))
    }

    fn compressed(&mut self) -> Result<Compressed, StateError> {
        let len = self.u64()?;
        let stored = self.u64()?;
        if len > MAX_DECOMPRESSED || stored > self.0.len() as u64 {
            return Err(invalid("hibernation image: impossible length"));
        }
        Ok(Compressed {
            len: len as usize,
            bytes: self.take(stored as usize)?.to_vec(),
        })
    }
}

/// What a page of memory holds, as far as the kernel can tell without reading it.
#[derive(Clone, Copy)]
enum Held {
    /// Never written: zeros.
    Zeros,
    /// Never written where the base's memory file is mapped: the base's page.
    Base,
    /// Anything.
    Touched,
}

/// The pages (as runs) where `memory` differs from `base` (zeros past it), compared
/// byte for byte where they may have been written (`held`).
fn changed_pages(
    memory: &[u8],
    base: &[u8],
    base_zero: &ZeroPages,
    held: impl Fn(usize) -> Held,
) -> Vec<PageRun> {
    let base_pages = base.len() / PAGE;
    let changed = memory.chunks(PAGE).enumerate().filter(|(page, bytes)| {
        let zero_in_base = *page >= base_pages || base_zero.get(*page);
        match (held(*page), zero_in_base) {
            (Held::Base, _) => false,
            (Held::Zeros, zero) => !zero,
            (Held::Touched, true) => !is_zero(bytes),
            (Held::Touched, false) => **bytes != base[page * PAGE..(page + 1) * PAGE],
        }
    });
    runs(changed.map(|(page, _)| page))
}

/// Every page may hold data where the kernel cannot say.
#[cfg(not(target_os = "linux"))]
fn touched_pages(_memory: &[u8], _file_len: usize) -> Option<Vec<bool>> {
    None
}

impl StateAccess {
    /// The state as an image against `base`. Nothing about the instance changes, except
    /// that kernel change tracking, if engaged, becomes digests (see `DirtyPages::carry`),
    /// so the instance can go on running if it does not hibernate after all.
    pub fn hibernate(
        &self,
        store: &mut impl AsStoreMut,
        base: Arc<Base>,
    ) -> Result<Image, StateError> {
        let globals = self.capture_globals(store)?;
        let tables = self.capture_tables(store)?;
        let tables: Vec<(u32, &[Option<u32>])> = tables.iter().map(|(i, e)| (*i, &e[..])).collect();
        let view = self.memory.as_ref().map(|m| m.view(store));
        // SAFETY: as in `capture`: no wasm runs, only the executor touches the instance.
        let memory: &[u8] = view.as_ref().map_or(&[], |v| unsafe { v.data_unchecked() });
        // Where a memory file is mapped, pages never written hold its pages: the base's
        // when it is the base's file, and otherwise pages that must be read.
        let (file_len, file_is_base) = match self.mapped_file(memory) {
            Some(file) => (file.len, file.base == base.id),
            None => (0, true),
        };
        let touched = touched_pages(memory, file_len);
        let held = |page: usize| match touched.as_ref().is_none_or(|t| t[page]) {
            true => Held::Touched,
            false if page >= file_len / PAGE => Held::Zeros,
            false if file_is_base => Held::Base,
            false => Held::Touched,
        };
        // Digests of each page (for the incremental base carried along), hashing only
        // what may have been written.
        let now: Vec<u64> = memory
            .chunks(PAGE)
            .enumerate()
            .map(|(page, bytes)| match held(page) {
                Held::Touched => page_digest(bytes),
                Held::Zeros => zero_page_digest(),
                Held::Base => base
                    .digests
                    .get(page)
                    .copied()
                    .unwrap_or_else(|| page_digest(bytes)),
            })
            .collect();
        let mut runs = Vec::new();
        base.with_memory(&mut |base_memory| {
            runs = changed_pages(memory, base_memory, &base.zero, held);
        });
        let parts = Parts {
            module: &self.module,
            lineage: Lineage::Delta { parent: base.id },
            sequence: 1,
            globals: &globals,
            tables: &tables,
            memory: match view {
                Some(_) => MemoryParts::Changed {
                    len: memory.len(),
                    runs: &runs,
                },
                None => MemoryParts::None,
            },
        };
        let mut delta = Scratch::zeroed(parts.encoded_len()).ok_or(StateError::Grow("memory"))?;
        parts.encode_into(&mut delta, memory);
        let bulk = delta.len() - runs.iter().map(|r| r.bytes().len()).sum::<usize>();
        base.with_memory(&mut |base| xor_pages(&mut delta[bulk..], &runs, base));
        let mut tracking = self.tracking.borrow_mut();
        let carried = match (tracking.base, tracking.pages.carry(memory, &now)) {
            (Some(base), Some(changed)) => Some(Carried {
                base,
                changed: Compressed::new(&runs_bytes(&changed))?,
            }),
            _ => None,
        };
        Ok(Image {
            base,
            delta: Compressed::new(&delta)?,
            tracking: carried,
        })
    }

    /// A base with this instance's globals and tables and an empty memory: images against
    /// it hold every page that is not zeros. For when no shared base can be had (the OS
    /// refuses the fresh instantiation a module's base is made from).
    pub fn bare_base(&self, store: &mut impl AsStoreMut) -> Result<Arc<Base>, StateError> {
        let globals = self.capture_globals(store)?;
        let tables = self.capture_tables(store)?;
        let tables: Vec<(u32, &[Option<u32>])> = tables.iter().map(|(i, e)| (*i, &e[..])).collect();
        let parts = Parts {
            module: &self.module,
            lineage: Lineage::Full,
            sequence: 0,
            globals: &globals,
            tables: &tables,
            memory: match self.memory {
                Some(_) => MemoryParts::Whole { len: 0 },
                None => MemoryParts::None,
            },
        };
        let mut bytes = vec![0; parts.encoded_len()];
        parts.encode_into(&mut bytes, &[]);
        Ok(Arc::new(
            Base::new(Box::new(bytes)).map_err(StateError::Snapshot)?,
        ))
    }

    /// Puts `image` back into this instance, a fresh instantiation of the same module
    /// whose memory's pages of zeros are `fresh`.
    pub fn revive(
        &self,
        store: &mut impl AsStoreMut,
        image: &Image,
        fresh: Option<&ZeroPages>,
    ) -> Result<(), StateError> {
        let mut delta = image.delta.decompress()?;
        // Read before the checksum is, to undo the XOR the checksum was computed without.
        let (bulk, image_runs) = match snapshot::decode_trusted(&delta, Vec::new()) {
            Ok(Snapshot {
                memory: Some(MemoryState::Changed { runs, pages, .. }),
                ..
            }) => (pages.as_ptr() as usize - delta.as_ptr() as usize, runs),
            Ok(_) => (delta.len(), Vec::new()),
            Err(why) => return Err(StateError::Snapshot(why)),
        };
        image
            .base
            .with_memory(&mut |base| xor_pages(&mut delta[bulk..], &image_runs, base));
        let carried = match &image.tracking {
            Some(carried) => Some((carried.base, runs_from(&carried.changed.decompress()?)?)),
            None => None,
        };
        let mut delta = Some(snapshot::decode(&delta).map_err(StateError::Snapshot)?);
        let mut outcome = Err(invalid("no base"));
        let digests = &image.base.digests;
        image.base.bytes.with_bytes(&mut |base| {
            outcome = snapshot::decode_trusted(base, digests.clone())
                .map_err(StateError::Snapshot)
                .and_then(|base| {
                    let delta = delta.take().expect("the base is read once");
                    let known = Known {
                        memory: fresh,
                        base: Some(&image.base),
                    };
                    self.apply_decoded(store, vec![base, delta], known)
                });
        });
        outcome?;
        let mut tracking = self.tracking.borrow_mut();
        let policy = tracking.pages.policy();
        match carried {
            Some((base, changed)) => {
                tracking.base = Some(base);
                let digests = self.revived_digests(store, &image.base, &image_runs);
                tracking.pages = DirtyPages::revived(policy, digests, changed);
            }
            None => {
                tracking.base = None;
                tracking.pages = DirtyPages::new(policy);
            }
        }
        Ok(())
    }
}

/// XORs each page of `pages` (the bytes of `runs`, in order) with the same page of
/// `base` (zeros past it): a page that changed in a few places becomes mostly zeros,
/// which compress several times better. Its own inverse.
fn xor_pages(pages: &mut [u8], runs: &[PageRun], base: &[u8]) {
    let mut at = 0;
    for run in runs {
        let range = run.bytes();
        let len = range.len();
        let end = range.end.min(base.len());
        if range.start < end {
            let from = &base[range.start..end];
            let to = &mut pages[at..at + from.len()];
            // In words: pages are whole multiples of 8 bytes.
            for (to, from) in to.chunks_exact_mut(8).zip(from.chunks_exact(8)) {
                let word = u64::from_ne_bytes(to.try_into().expect("8 bytes"))
                    ^ u64::from_ne_bytes(from.try_into().expect("8 bytes"));
                to.copy_from_slice(&word.to_ne_bytes());
            }
        }
        at += len;
    }
}

impl StateAccess {
    /// The page digests of memory just revived from an image against `base`: the base's,
    /// but for the image's pages (hashed now) and zeros past the base.
    fn revived_digests(
        &self,
        store: &mut impl AsStoreMut,
        base: &Base,
        image_runs: &[PageRun],
    ) -> Vec<u64> {
        let view = self.memory.as_ref().map(|m| m.view(store));
        // SAFETY: as in `capture`.
        let memory: &[u8] = view.as_ref().map_or(&[], |v| unsafe { v.data_unchecked() });
        let mut digests = base.digests.clone();
        digests.resize(memory.len() / PAGE, zero_page_digest());
        for page in image_runs
            .iter()
            .flat_map(|run| run.first as usize..(run.first + run.count) as usize)
        {
            if let (Some(slot), Some(bytes)) = (
                digests.get_mut(page),
                memory.get(page * PAGE..(page + 1) * PAGE),
            ) {
                *slot = page_digest(bytes);
            }
        }
        digests
    }
}

fn runs_bytes(runs: &[PageRun]) -> Vec<u8> {
    runs.iter()
        .flat_map(|run| [run.first.to_le_bytes(), run.count.to_le_bytes()])
        .flatten()
        .collect()
}

fn runs_from(bytes: &[u8]) -> Result<Vec<PageRun>, StateError> {
    if !bytes.len().is_multiple_of(8) {
        return Err(invalid("hibernation image: bad page runs"));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| PageRun {
            first: u32::from_le_bytes(c[..4].try_into().expect("4 bytes")),
            count: u32::from_le_bytes(c[4..].try_into().expect("4 bytes")),
        })
        .collect())
}
