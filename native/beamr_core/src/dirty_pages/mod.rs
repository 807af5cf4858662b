//! Which 4 KiB pages of a wasm memory changed since its base (the instance's last
//! snapshot or restore): what a delta must hold.
//!
//! Two ways to the same answer:
//!
//! * **Digests**: the base is the xxh3-64 of each page, which the full snapshot or restore
//!   computed for its checksum anyway, so keeping a base costs no pass over memory; a
//!   delta hashes memory again (about 13 GB/s per core, two cores from 8 MiB) and
//!   compares. Pages written with the same bytes do not count.
//! * **Kernel**: userfaultfd write protection in asynchronous mode and `PAGEMAP_SCAN`
//!   (see `uffd`). The first write to a page after the base costs a minor fault (about a
//!   microsecond); a delta then costs a walk of the page tables plus copying the written
//!   pages, whatever the size of memory. Protecting all of memory costs about a quarter of
//!   a microsecond per resident page, so it is done once an instance takes incremental
//!   snapshots (engaged), never for one that only takes full snapshots or is restored.
//!
//! The kernel way needs Linux 6.7 and a process allowed to call userfaultfd (seccomp
//! profiles of container runtimes often refuse it); otherwise, or with
//! `Policy::Digests`, digests are used. wasm memory only grows; pages past the base's size
//! count as changed. Tracking names pages by their offset in memory, so if memory moves
//! (a runtime that reallocates on growth; wasmer does not for 32-bit memories) every page
//! counts as changed once.

mod uffd;

use crate::snapshot::digest::page_digests;
use crate::snapshot::PageRun;
pub use crate::snapshot::PAGE;
#[cfg(test)]
use uffd::Mapping;

/// How changes are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The kernel's tracking once engaged, where available; digests otherwise.
    Auto,
    /// Always digests (for kernels whose tracking misbehaves, and to test this way).
    Digests,
}

/// The change tracking of one memory.
pub struct DirtyPages {
    policy: Policy,
    base: Base,
    /// Pages known to have changed since the base besides those `base` finds: carried
    /// across a hibernation, whose revival puts the state into new memory.
    carried: Vec<PageRun>,
}

enum Base {
    None,
    /// The digest of each page of memory at the base.
    Digests(Vec<u64>),
    /// Memory at `start`, `len` bytes at the base, under the kernel's tracking for its
    /// first `registered` bytes.
    Kernel {
        kernel: &'static uffd::Kernel,
        start: usize,
        len: usize,
        registered: usize,
    },
}

/// How a `DirtyPages` finds changes now.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    NoBase,
    Digests,
    Kernel,
}

/// Whether this process can use the kernel's tracking.
pub fn kernel_tracking_available() -> bool {
    uffd::kernel().is_some()
}

impl DirtyPages {
    pub fn new(policy: Policy) -> DirtyPages {
        DirtyPages {
            policy,
            base: Base::None,
            carried: Vec::new(),
        }
    }

    #[cfg(test)]
    fn mode(&self) -> Mode {
        match self.base {
            Base::None => Mode::NoBase,
            Base::Digests(_) => Mode::Digests,
            Base::Kernel { .. } => Mode::Kernel,
        }
    }

    /// A full snapshot captured `memory`, whose page digests it computed: the new base.
    /// `engage` (the snapshot was asked for incrementally) puts memory under the kernel's
    /// tracking when it can be; once it is, it stays (re-protecting only what was
    /// written since the last base is cheap).
    pub fn snapshotted(&mut self, memory: &[u8], digests: Vec<u64>, engage: bool) {
        self.carried.clear();
        self.base = match std::mem::replace(&mut self.base, Base::None) {
            Base::Kernel {
                kernel,
                start,
                len,
                registered,
            } if start == memory.as_ptr() as usize && memory.len() >= len => {
                let mut written = Vec::new();
                match kernel.take_written(start..start + len, &mut written) {
                    Ok(()) => self
                        .track_growth(kernel, memory, registered)
                        .unwrap_or(Base::Digests(digests)),
                    Err(_) => self.engage(memory, || digests),
                }
            }
            _ if engage => self.engage(memory, || digests),
            _ => Base::Digests(digests),
        };
    }

    /// Memory is about to be overwritten as a whole (a restore): the base goes, and the
    /// kernel's protection is lifted first so that the writes do not fault page by page.
    pub fn release(&mut self, memory: &[u8]) {
        self.carried.clear();
        if let Base::Kernel {
            kernel,
            start,
            registered,
            ..
        } = self.base
        {
            if start == memory.as_ptr() as usize {
                let _ = kernel.unprotect(start..start + registered.min(memory.len()));
            }
        }
        self.base = Base::None;
    }

    /// `memory` was just restored; `digests` are its pages' digests when the restore knew
    /// them all. The next delta compares digests, then engages the kernel's tracking.
    pub fn restored(&mut self, memory: &[u8], digests: Option<Vec<u64>>) {
        self.carried.clear();
        self.base = Base::Digests(digests.unwrap_or_else(|| page_digests(memory)));
    }

    /// How changes are found.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The pages changed since the base (None without one), for carrying them across a
    /// hibernation; `now` are `memory`'s page digests. With the kernel's tracking, reading
    /// the changes moves the base, so they are kept as carried: the tracking stays right
    /// if the instance goes on running instead.
    pub fn carry(&mut self, memory: &[u8], now: &[u64]) -> Option<Vec<PageRun>> {
        let changed = match &self.base {
            Base::None => return None,
            Base::Digests(base) => {
                let differ = (0..now.len()).filter(|&p| base.get(p) != Some(&now[p]));
                merge(runs(differ), &self.carried)
            }
            Base::Kernel { .. } => self.take_changes(memory)?,
        };
        self.carried = changed.clone();
        Some(changed)
    }

    /// The tracking of a revived memory: `digests` are its pages' now, and `carried` the
    /// pages changed since the base before the hibernation (from [`DirtyPages::carry`]).
    pub fn revived(policy: Policy, digests: Vec<u64>, carried: Vec<PageRun>) -> DirtyPages {
        DirtyPages {
            policy,
            base: Base::Digests(digests),
            carried,
        }
    }

    /// The pages of `memory` that changed since the base, as ascending, disjoint runs
    /// (pages past the base's size included); None without a base. Memory as it is now
    /// becomes the base, under the kernel's tracking when it can be.
    pub fn take_changes(&mut self, memory: &[u8]) -> Option<Vec<PageRun>> {
        let pages = memory.len() / PAGE;
        let (changed, base) = match std::mem::replace(&mut self.base, Base::None) {
            Base::None => return None,
            Base::Digests(base) => {
                let now = page_digests(memory);
                let differ = (0..pages).filter(|&p| base.get(p) != Some(&now[p]));
                (runs(differ), self.engage(memory, || now))
            }
            Base::Kernel {
                kernel,
                start,
                len,
                registered,
            } => {
                let mut written = Vec::new();
                let scanned = (start == memory.as_ptr() as usize && memory.len() >= len)
                    .then(|| kernel.take_written(start..start + len, &mut written).ok())
                    .flatten();
                match scanned.and_then(|()| self.track_growth(kernel, memory, registered)) {
                    Some(base) => {
                        let written = written
                            .iter()
                            .flat_map(|r| (r.start - start) / PAGE..(r.end - start) / PAGE);
                        (runs(written.chain(len / PAGE..pages)), base)
                    }
                    None => (runs(0..pages), self.engage(memory, || page_digests(memory))),
                }
            }
        };
        self.base = base;
        Some(merge(changed, &std::mem::take(&mut self.carried)))
    }

    /// The kernel's tracking of `memory` as it is now, or the digests `digests()` when
    /// the policy or the kernel says no.
    fn engage(&self, memory: &[u8], digests: impl FnOnce() -> Vec<u64>) -> Base {
        let start = memory.as_ptr() as usize;
        let tracked = match uffd::kernel() {
            Some(kernel) if self.policy == Policy::Auto && !memory.is_empty() => {
                let range = start..start + memory.len();
                kernel
                    .register(range.clone())
                    .and_then(|()| kernel.write_protect(range))
                    .ok()
                    .map(|()| kernel)
            }
            _ => None,
        };
        match tracked {
            Some(kernel) => Base::Kernel {
                kernel,
                start,
                len: memory.len(),
                registered: memory.len(),
            },
            None => Base::Digests(digests()),
        }
    }

    /// Memory grew since the base (or did not): the grown part comes under tracking.
    fn track_growth(
        &self,
        kernel: &'static uffd::Kernel,
        memory: &[u8],
        registered: usize,
    ) -> Option<Base> {
        let start = memory.as_ptr() as usize;
        if memory.len() > registered {
            let grown = start + registered..start + memory.len();
            kernel
                .register(grown.clone())
                .and_then(|()| kernel.write_protect(grown))
                .ok()?;
        }
        Some(Base::Kernel {
            kernel,
            start,
            len: memory.len(),
            registered: registered.max(memory.len()),
        })
    }
}

/// Ascending page numbers as runs.
pub(crate) fn runs(pages: impl Iterator<Item = usize>) -> Vec<PageRun> {
    let mut runs: Vec<PageRun> = Vec::new();
    for page in pages {
        match runs.last_mut() {
            Some(run) if (run.first + run.count) as usize == page => run.count += 1,
            _ => runs.push(PageRun {
                first: page as u32,
                count: 1,
            }),
        }
    }
    runs
}

/// The bytes of `range` of a mapping, for the tests (as wasm memory is to the executor).
#[cfg(test)]
fn bytes(range: std::ops::Range<usize>) -> &'static [u8] {
    // SAFETY: the tests keep their mappings alive while they use these slices.
    unsafe { std::slice::from_raw_parts(range.start as *const u8, range.len()) }
}

#[cfg(test)]
mod tests;

/// The union of two sets of ascending, disjoint runs, as such runs.
fn merge(a: Vec<PageRun>, b: &[PageRun]) -> Vec<PageRun> {
    if b.is_empty() {
        return a;
    }
    let mut pages: Vec<usize> = a
        .iter()
        .chain(b)
        .flat_map(|run| run.first as usize..(run.first + run.count) as usize)
        .collect();
    pages.sort_unstable();
    pages.dedup();
    runs(pages.into_iter())
}
