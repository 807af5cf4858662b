//! A hibernation base's memory in a sealed memfd, mapped copy-on-write over the wasm
//! memory of every instance restored from that base or revived against it.
//!
//! Instances then share the pages they only read: the kernel keeps one copy of the file,
//! and a page becomes an instance's own only when it writes to it. Putting the base into
//! memory costs one `mmap` instead of a copy (and a page fault) for every page that holds
//! data: an AOS memory of 12 MiB holds about 2 MiB of data, 500 pages.
//!
//! The file is sealed (it can no longer be written, grown or shrunk) before anything maps
//! it, so what a mapping reads where it was not written is the base, for as long as the
//! mapping lives. Its pages of zeros are holes, which hold no memory until a mapping reads
//! them: the kernel then fills the hole in the file (once, shared by every mapping), so a
//! file grows at most to its base's memory size, what the base's snapshot already holds.
//!
//! Each file holds a descriptor while its base lives, and the VM needs descriptors for its
//! sockets and files: at most a quarter of the process's limit (and 1,024) are memory
//! files at once; beyond, bases are written page by page as without one.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use once_cell::sync::Lazy;

use super::zero_pages::ZeroPages;
use crate::dirty_pages::runs;
use crate::snapshot::PAGE;

/// A sealed memfd holding a memory's bytes.
pub struct MemoryFile {
    file: File,
    len: usize,
    _counted: Slot<'static>,
}

/// Memory files open now, and how many may be.
static OPEN: AtomicUsize = AtomicUsize::new(0);
static MAX_OPEN: Lazy<usize> = Lazy::new(|| {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    // rlim_t is 32 bits wide on some targets.
    #[allow(clippy::unnecessary_cast)]
    let descriptors = if got == 0 {
        limit.rlim_cur as u64
    } else {
        1024
    };
    (descriptors / 4).min(1024) as usize
});

/// One of at most `max` counted by `open`, while held.
struct Slot<'a>(&'a AtomicUsize);

impl Slot<'_> {
    fn take(open: &AtomicUsize, max: usize) -> Option<Slot<'_>> {
        let slot = Slot(open);
        (open.fetch_add(1, Ordering::Relaxed) < max).then_some(slot)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl MemoryFile {
    /// A file holding `memory` (a whole number of pages), whose pages of zeros are
    /// `zero`. Fails when the OS refuses the file or its memory.
    pub fn new(memory: &[u8], zero: &ZeroPages) -> io::Result<MemoryFile> {
        if !memory.len().is_multiple_of(PAGE) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let counted =
            Slot::take(&OPEN, *MAX_OPEN).ok_or(io::Error::from(io::ErrorKind::QuotaExceeded))?;
        let file = memfd()?;
        file.set_len(memory.len() as u64)?;
        let data = (0..memory.len() / PAGE).filter(|&page| !zero.get(page));
        for run in runs(data) {
            file.write_all_at(&memory[run.bytes()], run.bytes().start as u64)?;
        }
        let seals =
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on a descriptor this File owns.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(MemoryFile {
            file,
            len: memory.len(),
            _counted: counted,
        })
    }

    /// The bytes the file holds.
    pub fn size(&self) -> usize {
        self.len
    }

    /// Makes the first `len()` bytes of `memory` read as the file: replaces their pages
    /// with a private copy-on-write mapping of it (a write then copies the page it writes
    /// to, as for any private mapping, and never reaches the file).
    ///
    /// On an error memory is either as it was or, where the kernel had already taken the
    /// old pages away (kernels before 6.12 may, under memory pressure), zeros: the error
    /// says which ([`Unmapped::Zeros`]); it is never left without pages.
    ///
    /// # Safety
    /// `memory` must be a readable and writable private mapping (or part of one) starting
    /// on a page boundary, at least `len()` bytes long, that nothing else reads or writes
    /// during the call, and no reference into it may assume its contents stay as they were.
    pub unsafe fn map_over(&self, memory: &mut [u8]) -> Result<(), Unmapped> {
        let start = memory.as_mut_ptr();
        if !(start as usize).is_multiple_of(PAGE) || memory.len() < self.len {
            return Err(Unmapped::AsItWas);
        }
        if self.len == 0 {
            return Ok(());
        }
        let at = start.cast::<libc::c_void>();
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: replaces pages of a mapping the caller hands over (see above) with a
        // mapping of the same size and protection.
        unsafe {
            let fixed = libc::MAP_PRIVATE | libc::MAP_FIXED;
            let mapped = libc::mmap(at, self.len, rw, fixed, self.file.as_raw_fd(), 0);
            if mapped != libc::MAP_FAILED {
                return Ok(());
            }
            // Still mapped: mincore succeeds only on mapped ranges.
            let mut residency = vec![0u8; self.len / PAGE];
            if libc::mincore(at, self.len, residency.as_mut_ptr()) == 0 {
                return Err(Unmapped::AsItWas);
            }
            let anonymous = fixed | libc::MAP_ANONYMOUS;
            if libc::mmap(at, self.len, rw, anonymous, -1, 0) != libc::MAP_FAILED {
                return Err(Unmapped::Zeros);
            }
        }
        // A hole in a wasm memory would fault on the next access, outside any trap
        // handler's reach: nothing can go on safely.
        panic!("wasm memory pages lost: the OS refused both its mappings")
    }
}

/// A new memfd that can be sealed.
#[cfg(target_os = "linux")]
fn memfd() -> io::Result<File> {
    // SAFETY: a plain system call with a NUL-terminated name; the descriptor it returns is
    // owned by the File from here on.
    unsafe {
        let fd = libc::memfd_create(
            c"hb_beamr_base".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(File::from_raw_fd(fd))
    }
}

#[cfg(not(target_os = "linux"))]
fn memfd() -> io::Result<File> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// How `map_over` left memory when it could not map the file.
#[derive(Debug, PartialEq, Eq)]
pub enum Unmapped {
    AsItWas,
    Zeros,
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::snapshot::test_support::FreshMapping;
    use crate::state::resident::touched_pages;

    fn base(pages: usize) -> Vec<u8> {
        let mut memory = vec![0u8; pages * PAGE];
        for page in (0..pages).step_by(2) {
            memory[page * PAGE..(page + 1) * PAGE].fill(page as u8 + 1);
        }
        memory
    }

    #[test]
    fn a_mapped_file_reads_as_the_memory_it_holds_and_writes_stay_private() {
        let bytes = base(8);
        let file = MemoryFile::new(&bytes, &ZeroPages::of(&bytes)).expect("memfd");
        let mut first = FreshMapping::new(10 * PAGE);
        let mut second = FreshMapping::new(8 * PAGE);
        first.bytes()[9 * PAGE] = 7;
        // SAFETY: fresh mappings of ours, nothing else refers to them.
        unsafe {
            file.map_over(first.bytes()).expect("mapped");
            file.map_over(second.bytes()).expect("mapped");
        }
        assert_eq!(&first.bytes()[..8 * PAGE], &bytes[..]);
        // Past the file, memory is as it was.
        assert_eq!(first.bytes()[9 * PAGE], 7);
        first.bytes()[2 * PAGE + 5] = 99;
        assert_eq!(second.bytes(), &bytes[..]);
        assert_eq!(first.bytes()[2 * PAGE + 5], 99);
        // Only the written page (and the one before the file's end) belong to `first`.
        let touched = touched_pages(first.bytes(), file.size()).expect("pagemap");
        let mine: Vec<usize> = (0..10).filter(|&p| touched[p]).collect();
        assert_eq!(mine, [2, 9]);
    }

    #[test]
    fn slots_are_limited_and_given_back() {
        let open = AtomicUsize::new(0);
        let held: Vec<Slot> = (0..5).map_while(|_| Slot::take(&open, 3)).collect();
        assert_eq!(held.len(), 3);
        assert!(Slot::take(&open, 3).is_none());
        assert_eq!(open.load(Ordering::Relaxed), 3);
        drop(held);
        assert_eq!(open.load(Ordering::Relaxed), 0);
        assert!(*MAX_OPEN >= 1 && *MAX_OPEN <= 1024);
    }

    #[test]
    fn the_file_is_sealed() {
        let bytes = base(2);
        let file = MemoryFile::new(&bytes, &ZeroPages::of(&bytes)).expect("memfd");
        assert!(file.file.write_all_at(b"x", 0).is_err());
        assert!(file.file.set_len(0).is_err());
    }

    #[test]
    fn memory_too_short_or_unaligned_is_left_alone() {
        let bytes = base(4);
        let file = MemoryFile::new(&bytes, &ZeroPages::of(&bytes)).expect("memfd");
        let mut short = FreshMapping::new(2 * PAGE);
        short.bytes()[0] = 3;
        // SAFETY: as above.
        unsafe {
            assert_eq!(file.map_over(short.bytes()), Err(Unmapped::AsItWas));
            assert_eq!(
                file.map_over(&mut short.bytes()[1..]),
                Err(Unmapped::AsItWas)
            );
        }
        assert_eq!(short.bytes()[0], 3);
    }
}
