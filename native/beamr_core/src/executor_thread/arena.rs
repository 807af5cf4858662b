//! glibc gives the free top of a thread arena back to the OS only inside `free`, when
//! the chunk freed (merged with its free neighbours) is 64 KiB or more; `malloc_trim`
//! releases free chunks inside every arena but never that top. Executors allocate tens
//! of KiB each in whichever of glibc's arenas (8 per core) they land in, and their last
//! frees are small, so after stopping 10,000 AOS instances every arena kept ~40 MB
//! resident (~500 MB in all, measured). So each exiting thread leaves a 64 KiB block of
//! its arena to the reaper, which frees the blocks once exits have settled (trimming
//! each arena's top) and then calls `malloc_trim` for the rest.

use std::ffi::c_void;

const BLOCK_SIZE: usize = 64 << 10;

pub struct Block(*mut c_void);

// SAFETY: memory from malloc may be freed by any thread.
unsafe impl Send for Block {}

impl Block {
    /// A block of the calling thread's arena (null when malloc fails: freeing
    /// null does nothing).
    pub fn take() -> Block {
        // SAFETY: malloc has no preconditions.
        Block(unsafe { libc::malloc(BLOCK_SIZE) })
    }
}

pub fn release(blocks: &mut Vec<Block>) {
    for Block(block) in blocks.drain(..) {
        // SAFETY: from malloc in `take`, freed once.
        unsafe { libc::free(block) };
    }
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}

/// Moves the calling thread to another arena if glibc gave it the main one.
///
/// Past 8 arenas per core glibc shares them round-robin, the main arena among
/// them, so one executor in 16 (on 2 cores) allocates there. The main arena grows
/// with `sbrk` and can only give back the top of that contiguous heap. With
/// thousands of instances, each reserving 8 GiB of address space for its memory
/// (wasmer's static memories), the mappings fill the ~42 TiB between the heap and
/// the mmap base and reach the program break. `sbrk` then fails and the main arena
/// carries on in mappings it never returns. Measured with 10,000 AOS instances:
/// 76 MB of main arena after they had all stopped, 1.7 MB of it in use, ~13 MiB
/// resident in fragments. The other arenas grow in heaps of their own, which they
/// shrink and unmap when freed.
///
/// glibc has no call to choose an arena, but when an allocation fails in the main
/// arena it retries in another and keeps the thread there. An allocation larger
/// than the address space fails in any arena without side effects.
pub fn leave_main_arena() {
    const IMPOSSIBLE: usize = 1 << 47;
    // The round-robin may offer the main arena again: a few tries, then stay.
    for _ in 0..4 {
        if !on_main_arena() {
            return;
        }
        // SAFETY: malloc has no preconditions; a null result needs no free.
        let never = unsafe { opaque_malloc()(IMPOSSIBLE) };
        if !never.is_null() {
            // SAFETY: from malloc just above (no Linux address space is this
            // large, but whatever the libc gave is freed).
            unsafe { opaque_free()(never) };
            return;
        }
    }
}

/// Whether the calling thread allocates from glibc's main arena: a chunk records
/// in its size word whether it came from another (`NON_MAIN_ARENA`, bit 2). The
/// probe is larger than glibc's per-thread cache holds (1,032 bytes), so it comes
/// from the thread's arena and not from a chunk cached before a move. No when
/// another allocator stands in for glibc's (`LD_PRELOAD`): it has no such word.
fn on_main_arena() -> bool {
    const PROBE: usize = 2048;
    const NON_MAIN_ARENA: usize = 4;
    if !malloc_is_glibcs() {
        return false;
    }
    // SAFETY: malloc has no preconditions.
    let probe = unsafe { opaque_malloc()(PROBE) };
    if probe.is_null() {
        return false;
    }
    // SAFETY: glibc keeps a chunk's size word in the 8 bytes before the memory it
    // returns; `probe` is live until the free below.
    let size_word = unsafe { probe.cast::<usize>().sub(1).read_volatile() };
    // SAFETY: from malloc above, freed once.
    unsafe { opaque_free()(probe) };
    size_word & NON_MAIN_ARENA == 0
}

/// Whether `malloc` is glibc's own, found in the object it was resolved to.
fn malloc_is_glibcs() -> bool {
    static GLIBCS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *GLIBCS.get_or_init(|| {
        // SAFETY: dladdr only reads the loader's tables into `info`.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        let found = unsafe { libc::dladdr(opaque_malloc() as *const c_void, &mut info) } != 0;
        // SAFETY: a non-null dli_fname is a C string owned by the loader.
        found
            && !info.dli_fname.is_null()
            && unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }
                .to_bytes()
                .ends_with(b"/libc.so.6")
    })
}

// The compiler knows malloc and free: it deletes a pair whose memory is unused
// and assumes nothing lies before an allocation, which would remove both
// functions above. Called through pointers it cannot see into, they stay calls.
fn opaque_malloc() -> unsafe extern "C" fn(usize) -> *mut c_void {
    std::hint::black_box(libc::malloc)
}

fn opaque_free() -> unsafe extern "C" fn(*mut c_void) {
    std::hint::black_box(libc::free)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    /// Three times as many threads as glibc makes arenas (8 per core), all alive
    /// at once, so that its round-robin hands the main arena out several times.
    #[test]
    fn no_executor_thread_allocates_from_the_main_arena() {
        // Else every thread would be reported off the main arena, moved or not.
        assert!(super::malloc_is_glibcs());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = 3 * 8 * cores;
        let all_started = Arc::new(Barrier::new(threads));
        let (tell, told) = channel();
        for _ in 0..threads {
            let (all_started, tell) = (all_started.clone(), tell.clone());
            super::super::spawn(c"beamr_test", 256 << 10, move || {
                tell.send(super::on_main_arena()).unwrap();
                all_started.wait();
            })
            .unwrap();
        }
        let on_main = (0..threads)
            .filter(|_| told.recv_timeout(Duration::from_secs(30)).unwrap())
            .count();
        assert_eq!(on_main, 0, "of {threads} threads");
    }
}
