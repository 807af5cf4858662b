//! Binaries (and lists of them) handed to the executor without copying large ones.
//!
//! A large refc binary is kept alive in a process-independent environment (copying the
//! term there only takes a reference), so restoring a 12 MiB snapshot copies it once,
//! straight into wasm memory. Small binaries are copied: cheaper than an environment.

use beamr_core::memory_access::Data;
use beamr_core::state::base::SnapshotBytes;
use rustler::env::SavedTerm;
use rustler::{Binary, Env, OwnedEnv, Term};

/// The longest snapshot chain (a full snapshot and its deltas) `restore` takes: the list
/// is walked on a normal scheduler, so its length is bounded before anything else.
pub const MAX_CHAIN: usize = 10_000;

/// Below this size a copy costs less than a process-independent environment.
const SHARE_THRESHOLD: usize = 64 * 1024;

pub enum Bytes {
    Copied(Vec<u8>),
    Shared { env: OwnedEnv, term: SavedTerm },
}

impl Bytes {
    pub fn new(binary: Binary) -> Bytes {
        if binary.len() < SHARE_THRESHOLD {
            return Bytes::Copied(binary.as_slice().to_vec());
        }
        let env = OwnedEnv::new();
        let term = env.save(binary);
        Bytes::Shared { env, term }
    }
}

impl Data for Bytes {
    fn with_slice<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            Bytes::Copied(data) => f(data),
            Bytes::Shared { env, term } => env.run(|env: Env| {
                let binary: Binary = term.load(env).decode().expect("a saved binary");
                f(binary.as_slice())
            }),
        }
    }
}

/// A list of binaries (a snapshot chain) handed to the executor without copying them:
/// the list lives in a process-independent environment, where large binaries are
/// referenced, not copied.
pub struct BinaryList {
    env: OwnedEnv,
    term: SavedTerm,
}

impl BinaryList {
    /// None unless `list` is a proper list of at most `MAX_CHAIN` binaries.
    pub fn new(list: Term) -> Option<BinaryList> {
        crate::codec::bounded_length(list, MAX_CHAIN).ok()?;
        list.decode::<Vec<Binary>>().ok()?;
        let env = OwnedEnv::new();
        let term = env.save(list);
        Some(BinaryList { env, term })
    }

    /// The same list in an environment of its own (its binaries are referenced, not
    /// copied).
    pub fn duplicate(&self) -> BinaryList {
        let env = OwnedEnv::new();
        let term = self.env.run(|own: Env| env.save(self.term.load(own)));
        BinaryList { env, term }
    }

    pub fn with_slices<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        self.env.run(|env: Env| {
            let binaries: Vec<Binary> = self
                .term
                .load(env)
                .decode()
                .expect("a saved list of binaries");
            let slices: Vec<&[u8]> = binaries.iter().map(|b| b.as_slice()).collect();
            f(&slices)
        })
    }
}

/// The first binary of a list (a restored chain's full snapshot), kept as a hibernation
/// base without copying it.
pub struct FirstBinary {
    /// Keeps the binary alive: a refc binary's bytes do not move while referenced.
    _list: BinaryList,
    ptr: *const u8,
    len: usize,
}

// SAFETY: the bytes are only read, and they stay where they are as long as `_list`
// references the binary, whichever thread holds it.
unsafe impl Send for FirstBinary {}
unsafe impl Sync for FirstBinary {}

impl FirstBinary {
    /// None for an empty list.
    pub fn new(list: BinaryList) -> Option<FirstBinary> {
        let (ptr, len) =
            list.with_slices(|slices| slices.first().map(|s| (s.as_ptr(), s.len())))?;
        Some(FirstBinary {
            _list: list,
            ptr,
            len,
        })
    }
}

impl SnapshotBytes for FirstBinary {
    fn with_bytes(&self, f: &mut dyn FnMut(&[u8])) {
        // SAFETY: see the type's Send/Sync.
        f(unsafe { std::slice::from_raw_parts(self.ptr, self.len) })
    }
}

/// A new binary of `len` bytes, or `None` where `OwnedBinary::new` would abort the
/// VM: the sizes asked for here (memory copies, snapshots) are chosen by modules and callers.
pub fn try_binary(len: usize) -> Option<rustler::OwnedBinary> {
    let mut raw = std::mem::MaybeUninit::uninit();
    // SAFETY: enif_alloc_binary initialises `raw` when it succeeds (returns non-zero);
    // ownership then passes to the OwnedBinary, which releases it.
    unsafe {
        if rustler::sys::enif_alloc_binary(len, raw.as_mut_ptr()) == 0 {
            return None;
        }
        Some(rustler::OwnedBinary::from_raw(raw.assume_init()))
    }
}
