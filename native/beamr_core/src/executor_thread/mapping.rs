//! The one mapping that holds an executor thread's guard page, signal stack and thread stack.

use std::io;
use std::ptr;

/// Smallest signal stack wasmer keeps instead of mapping its own (`MIN_STACK_SIZE` in
/// wasmer-vm's `lazy_per_thread_init`).
pub(super) const SIGNAL_STACK_SIZE: usize = 64 << 10;

/// An anonymous mapping, unmapped on drop.
pub(super) struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory; whoever holds a `Mapping` decides when it goes.
unsafe impl Send for Mapping {}

impl Mapping {
    /// `[guard page][signal stack][stack_size bytes]`, all readable and writable but
    /// the guard.
    pub(super) fn stacks(stack_size: usize) -> io::Result<Mapping> {
        let page = page_size();
        let len = (page + SIGNAL_STACK_SIZE + stack_size).next_multiple_of(page);
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                // MAP_STACK also keeps transparent huge pages off it (Linux 6.7+): a
                // stack that touches a few KiB must not become 2 MiB resident.
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mapping = Mapping {
            base: base.cast(),
            len,
        };
        // SAFETY: the first page of the mapping made above.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(mapping)
    }

    pub(super) fn signal_stack(&self) -> *mut u8 {
        // SAFETY: within the mapping (see `stacks`).
        unsafe { self.base.add(page_size()) }
    }

    pub(super) fn thread_stack(&self) -> (*mut u8, usize) {
        let offset = page_size() + SIGNAL_STACK_SIZE;
        // SAFETY: within the mapping (see `stacks`).
        (unsafe { self.base.add(offset) }, self.len - offset)
    }
}

impl Mapping {
    /// Gives back the pages of the signal stack and of the thread stack below `keep_from`
    /// (their contents are lost: the next touch finds zeros). For a thread going idle,
    /// with `keep_from` below its own frames; no signal handler runs on it meanwhile.
    pub(super) fn release_below(&self, keep_from: usize) {
        let start = self.signal_stack() as usize;
        let end = keep_from.min(self.base as usize + self.len) & !(page_size() - 1);
        if end <= start {
            return;
        }
        // SAFETY: pages of this mapping that hold no live frame (see above); MADV_DONTNEED
        // on private anonymous memory only drops their contents.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `stacks`; its thread, if any, has been joined.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}
