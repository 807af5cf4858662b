//! Threads whose stacks cost as few memory mappings as possible, for executors.
//!
//! Linux allows 65,530 mappings per process by default (`vm.max_map_count`) and every
//! instance keeps a thread, so mappings per thread cap the number of instances. A thread
//! from `std::thread` takes four: its stack and glibc's guard page, then the 64 KiB signal
//! stack and guard page that wasmer maps on the thread's first wasm call. Here one mapping
//! holds all of it, laid out (low to high address) as
//!
//! ```text
//! [guard page][signal stack][thread stack ...................... glibc's TLS]
//! ```
//!
//! which the guard's protection splits into two. The signal stack is installed before the
//! closure runs, so wasmer finds one large enough and maps none. An overflowing thread
//! stack runs through the signal stack (unused unless a handler is running on it, and then
//! the thread is not overflowing its own stack) into the guard, as does an overflowing
//! signal handler: either way the process gets a SIGSEGV, as it would from glibc's guard.
//!
//! A thread cannot unmap the stack it runs on, so an exiting thread hands its mapping to a
//! reaper thread (one per process, started with the first thread), which joins it and only
//! then unmaps. Once exits settle it also gives back what they left elsewhere: their wasm
//! stacks, which wasmer pools but never frees, and the memory they freed into glibc's
//! arenas (see `arena`). A thread that glibc attaches to its main arena moves to another
//! before it runs anything, since the main arena cannot return what it took under
//! address-space pressure (`arena::leave_main_arena`). On platforms other than Linux
//! threads come from `std::thread`.

use std::io;

/// Smallest signal stack wasmer keeps instead of mapping its own (`MIN_STACK_SIZE` in
/// wasmer-vm's `lazy_per_thread_init`).
const SIGNAL_STACK_SIZE: usize = 64 << 10;

/// Runs `f` on a new thread named `name` with a stack of `stack_size` bytes. Fails only
/// when the OS refuses the mapping or the thread (or the reaper, the first time).
#[cfg(target_os = "linux")]
pub fn spawn(
    name: &'static std::ffi::CStr,
    stack_size: usize,
    f: impl FnOnce() + Send + 'static,
) -> io::Result<()> {
    linux::spawn(name, stack_size, Box::new(f))
}

#[cfg(not(target_os = "linux"))]
pub fn spawn(
    name: &'static std::ffi::CStr,
    stack_size: usize,
    f: impl FnOnce() + Send + 'static,
) -> io::Result<()> {
    let name = name.to_string_lossy().into_owned();
    std::thread::Builder::new()
        .name(name)
        .stack_size(stack_size)
        .spawn(f)
        .map(|_| ())
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::{c_void, CStr};
    use std::io;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::ptr;
    use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
    use std::sync::Mutex;
    use std::time::Duration;

    use super::SIGNAL_STACK_SIZE;

    /// An anonymous mapping, unmapped on drop.
    struct Mapping {
        base: *mut u8,
        len: usize,
    }

    // SAFETY: the mapping is plain memory; whoever holds a `Mapping` decides when it goes.
    unsafe impl Send for Mapping {}

    impl Mapping {
        /// `[guard page][signal stack][stack_size bytes]`, all readable and writable but
        /// the guard.
        fn stacks(stack_size: usize) -> io::Result<Mapping> {
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

        fn signal_stack(&self) -> *mut u8 {
            // SAFETY: within the mapping (see `stacks`).
            unsafe { self.base.add(page_size()) }
        }

        fn thread_stack(&self) -> (*mut u8, usize) {
            let offset = page_size() + SIGNAL_STACK_SIZE;
            // SAFETY: within the mapping (see `stacks`).
            (unsafe { self.base.add(offset) }, self.len - offset)
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

    /// What a new thread needs, boxed through `pthread_create`'s argument.
    struct Start {
        name: &'static CStr,
        f: Box<dyn FnOnce() + Send>,
        stacks: Mapping,
        reaper: Sender<Retired>,
    }

    /// An exited (or exiting) thread, the stacks to unmap once it is joined, and a block
    /// of its malloc arena (see `arena`).
    struct Retired {
        thread: libc::pthread_t,
        stacks: Mapping,
        block: arena::Block,
    }

    pub(super) fn spawn(
        name: &'static CStr,
        stack_size: usize,
        f: Box<dyn FnOnce() + Send>,
    ) -> io::Result<()> {
        let reaper = reaper()?;
        let stacks = Mapping::stacks(stack_size)?;
        let (stack, size) = stacks.thread_stack();
        let start = Box::into_raw(Box::new(Start {
            name,
            f,
            stacks,
            reaper,
        }));
        let mut thread: libc::pthread_t = 0;
        // SAFETY: `attr` is initialised before use and destroyed after; the stack given to
        // the thread is the mapping's, which stays mapped until the reaper has joined it.
        // On success the thread owns `start`; on failure it is reclaimed here.
        let error = unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            libc::pthread_attr_init(&mut attr);
            let mut error = libc::pthread_attr_setstack(&mut attr, stack.cast(), size);
            if error == 0 {
                error = libc::pthread_create(&mut thread, &attr, run, start.cast());
            }
            libc::pthread_attr_destroy(&mut attr);
            error
        };
        if error != 0 {
            // SAFETY: no thread was created, so `start` is still ours.
            drop(unsafe { Box::from_raw(start) });
            return Err(io::Error::from_raw_os_error(error));
        }
        Ok(())
    }

    extern "C" fn run(start: *mut c_void) -> *mut c_void {
        // SAFETY: `spawn` passed a `Box<Start>` and gave up ownership of it.
        let Start {
            name,
            f,
            stacks,
            reaper,
        } = *unsafe { Box::from_raw(start.cast::<Start>()) };
        // SAFETY: the signal stack lies in `stacks`, which outlives this thread; the name
        // is a C string under the 16 bytes Linux allows (else it is refused, harmlessly).
        unsafe {
            let signal_stack = libc::stack_t {
                ss_sp: stacks.signal_stack().cast(),
                ss_flags: 0,
                ss_size: SIGNAL_STACK_SIZE,
            };
            libc::sigaltstack(&signal_stack, ptr::null_mut());
            libc::pthread_setname_np(libc::pthread_self(), name.as_ptr());
        }
        arena::leave_main_arena();
        // A panic must not unwind out of a C entry point; `f` reports its own.
        let _ = catch_unwind(AssertUnwindSafe(f));
        // SAFETY: pthread_self has no preconditions.
        let thread = unsafe { libc::pthread_self() };
        // The reaper lives as long as the process, so this cannot fail.
        let _ = reaper.send(Retired {
            thread,
            stacks,
            block: arena::Block::take(),
        });
        ptr::null_mut()
    }

    static REAPER: Mutex<Option<Sender<Retired>>> = Mutex::new(None);

    /// The reaper's queue, starting the reaper on first use.
    fn reaper() -> io::Result<Sender<Retired>> {
        let mut reaper = REAPER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sender) = reaper.as_ref() {
            return Ok(sender.clone());
        }
        let (sender, retired) = channel();
        std::thread::Builder::new()
            .name("hb_beamr_reap".into())
            .stack_size(64 << 10)
            .spawn(move || reap(retired))?;
        *reaper = Some(sender.clone());
        Ok(sender)
    }

    /// Joins exited threads and unmaps their stacks; once no thread has exited for
    /// `SETTLE`, or `MAX_HELD` have, gives back the rest of what they left (`release`).
    fn reap(retired: Receiver<Retired>) {
        let mut held = Vec::new();
        loop {
            let next = if held.is_empty() {
                retired.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                retired.recv_timeout(SETTLE)
            };
            match next {
                Ok(Retired {
                    thread,
                    stacks,
                    block,
                }) => {
                    // SAFETY: a joinable thread, joined once, here; it runs on `stacks`
                    // until pthread_join returns, so they are unmapped only after.
                    unsafe { libc::pthread_join(thread, ptr::null_mut()) };
                    drop(stacks);
                    held.push(block);
                    if held.len() == MAX_HELD {
                        release(&mut held);
                    }
                }
                Err(RecvTimeoutError::Timeout) => release(&mut held),
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Gives back what exited threads left behind. wasmer moves an exiting thread's wasm
    /// stack to a global pool, where the next thread's first call finds it, but never frees
    /// the pool: after a burst of stops it would keep 16 MiB of address space, two mappings
    /// and the touched pages of every instance stopped.
    fn release(blocks: &mut Vec<arena::Block>) {
        wasmer::sys::vm::drain_stack_pool();
        arena::release(blocks);
    }

    /// Long enough for a burst of stops to be over, and for what the VM frees after an
    /// instance's thread has gone (its resource).
    const SETTLE: Duration = Duration::from_millis(100);
    /// Constant churn never settles: blocks held are released after this many exits.
    const MAX_HELD: usize = 64;

    /// glibc gives the free top of a thread arena back to the OS only inside `free`, when
    /// the chunk freed (merged with its free neighbours) is 64 KiB or more; `malloc_trim`
    /// releases free chunks inside every arena but never that top. Executors allocate tens
    /// of KiB each in whichever of glibc's arenas (8 per core) they land in, and their last
    /// frees are small, so after stopping 10,000 AOS instances every arena kept ~40 MB
    /// resident (~500 MB in all, measured). So each exiting thread leaves a 64 KiB block of
    /// its arena to the reaper, which frees the blocks once exits have settled (trimming
    /// each arena's top) and then calls `malloc_trim` for the rest.
    #[cfg(target_env = "gnu")]
    mod arena {
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
                let found =
                    unsafe { libc::dladdr(opaque_malloc() as *const c_void, &mut info) } != 0;
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
                    super::super::super::spawn(c"beamr_test", 256 << 10, move || {
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
    }

    #[cfg(not(target_env = "gnu"))]
    mod arena {
        pub struct Block;

        impl Block {
            pub fn take() -> Block {
                Block
            }
        }

        pub fn release(blocks: &mut Vec<Block>) {
            blocks.clear();
        }

        pub fn leave_main_arena() {}
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::{Duration, Instant};

    /// The mappings of this process as (start, end, permissions).
    fn mappings() -> Vec<(usize, usize, String)> {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .map(|line| {
                let mut fields = line.split_whitespace();
                let (start, end) = fields.next().unwrap().split_once('-').unwrap();
                let parse = |hex| usize::from_str_radix(hex, 16).unwrap();
                (parse(start), parse(end), fields.next().unwrap().to_string())
            })
            .collect()
    }

    fn stack_address() -> usize {
        let marker = 0u8;
        std::hint::black_box(&marker) as *const u8 as usize
    }

    /// What a thread sees of itself after running wasm: its stack pointer, its signal
    /// stack and its name.
    struct Seen {
        sp: usize,
        signal_stack: usize,
        name: String,
        maps: Vec<(usize, usize, String)>,
    }

    fn run_wasm() {
        let mut store = wasmer::Store::default();
        let wasm =
            wat::parse_str(r#"(module (func (export "f") (result i32) i32.const 7))"#).unwrap();
        let module = wasmer::Module::new(&store, wasm).unwrap();
        let instance = wasmer::Instance::new(&mut store, &module, &wasmer::imports! {}).unwrap();
        let f = instance.exports.get_function("f").unwrap();
        assert_eq!(f.call(&mut store, &[]).unwrap()[0], wasmer::Value::I32(7));
    }

    fn spawn_and_see(stack_size: usize) -> Seen {
        let (tell, seen) = channel();
        spawn(c"beamr_test", stack_size, move || {
            run_wasm();
            let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
            // SAFETY: reading this thread's signal stack into a local.
            assert_eq!(
                unsafe { libc::sigaltstack(std::ptr::null(), &mut current) },
                0
            );
            let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
            let _ = tell.send(Seen {
                sp: stack_address(),
                signal_stack: current.ss_sp as usize,
                name: name.trim_end().to_string(),
                maps: mappings(),
            });
        })
        .unwrap();
        seen.recv_timeout(Duration::from_secs(30)).unwrap()
    }

    /// The bounds of the mapping that holds `address`.
    fn mapping_of(maps: &[(usize, usize, String)], address: usize) -> (usize, usize) {
        let &(start, end, _) = maps
            .iter()
            .find(|&&(start, end, _)| start <= address && address < end)
            .unwrap();
        (start, end)
    }

    /// Waits until no mapping has exactly these bounds. Tests running alongside may map
    /// memory at the same place, hence exact bounds, and a stack size no other test uses.
    fn wait_unmapped(bounds: (usize, usize)) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while mappings()
            .iter()
            .any(|&(start, end, _)| (start, end) == bounds)
        {
            assert!(Instant::now() < deadline, "the stack is still mapped");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn thread_and_signal_stack_share_one_mapping_below_a_guard_page() {
        let seen = spawn_and_see(1 << 20);
        assert_eq!(seen.name, "beamr_test");
        let index = seen
            .maps
            .iter()
            .position(|&(start, end, _)| start <= seen.sp && seen.sp < end)
            .unwrap();
        let (start, end, perms) = &seen.maps[index];
        assert!(perms.starts_with("rw"), "{perms}");
        // wasmer kept the signal stack installed before it ran, in the same mapping.
        assert!(*start <= seen.signal_stack && seen.signal_stack + SIGNAL_STACK_SIZE <= *end);
        assert_eq!(seen.signal_stack, *start);
        let (guard_start, guard_end, guard_perms) = &seen.maps[index - 1];
        assert_eq!(guard_end, start);
        assert_eq!(guard_end - guard_start, 4096);
        assert_eq!(guard_perms, "---p");
    }

    #[test]
    fn stacks_are_unmapped_once_the_thread_has_exited() {
        let seen = spawn_and_see((1 << 20) + 5 * 4096);
        wait_unmapped(mapping_of(&seen.maps, seen.sp));
    }

    #[test]
    fn a_panicking_thread_is_reaped_too() {
        let (tell, told) = channel();
        spawn(c"beamr_test", (1 << 20) + 9 * 4096, move || {
            tell.send(mapping_of(&mappings(), stack_address())).unwrap();
            panic!("on purpose");
        })
        .unwrap();
        wait_unmapped(told.recv_timeout(Duration::from_secs(30)).unwrap());
    }
}
