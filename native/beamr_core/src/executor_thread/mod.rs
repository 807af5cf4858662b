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
//! address-space pressure (`arena::leave_main_arena`).
//!
//! A thread whose closure returns does not exit at once: it waits a while for the next
//! `spawn` with the same stack size, which then runs its closure there instead of making
//! a thread (see `pool`). On platforms other than Linux threads come from `std::thread`.

use std::io;

#[cfg(target_os = "linux")]
use std::ffi::{c_void, CStr};
#[cfg(target_os = "linux")]
use std::panic::{catch_unwind, AssertUnwindSafe};
#[cfg(target_os = "linux")]
use std::ptr;
#[cfg(target_os = "linux")]
use std::sync::mpsc::Sender;
#[cfg(target_os = "linux")]
use std::sync::Arc;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod arena;
/// Other C libraries: nothing to give back.
#[cfg(all(target_os = "linux", not(target_env = "gnu")))]
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

#[cfg(target_os = "linux")]
mod mapping;
#[cfg(target_os = "linux")]
mod pool;
#[cfg(target_os = "linux")]
mod reaper;
#[cfg(all(test, target_os = "linux"))]
mod tests;

#[cfg(target_os = "linux")]
use mapping::{Mapping, SIGNAL_STACK_SIZE};
#[cfg(target_os = "linux")]
use reaper::Retired;

/// Runs `f` on a new thread named `name` with a stack of `stack_size` bytes. Fails only
/// when the OS refuses the mapping or the thread (or the reaper, the first time).
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

/// Makes the threads waiting for a closure (see `pool`) exit now, through the reaper: for
/// when the OS's limits leave too little room, as they hold mappings and address space.
#[cfg(target_os = "linux")]
pub fn release_idle() {
    pool::release(None);
}

/// No thread waits for a closure here.
#[cfg(not(target_os = "linux"))]
pub fn release_idle() {}

/// What a new thread needs, boxed through `pthread_create`'s argument.
#[cfg(target_os = "linux")]
struct Start {
    name: &'static CStr,
    f: Box<dyn FnOnce() + Send>,
    stack_size: usize,
    stacks: Mapping,
    reaper: Sender<Retired>,
}

/// Runs `f` on a thread named `name` with a stack of `stack_size` bytes: one that ran an
/// earlier closure and waits for the next (see `pool`), else a new one. Fails only when
/// the OS refuses the mapping or the thread (or the reaper, the first time).
#[cfg(target_os = "linux")]
pub fn spawn(
    name: &'static CStr,
    stack_size: usize,
    f: impl FnOnce() + Send + 'static,
) -> io::Result<()> {
    let (name, f) = match pool::hand_over(stack_size, (name, Box::new(f))) {
        Ok(()) => return Ok(()),
        Err(task) => task,
    };
    let reaper = reaper::reaper()?;
    let stacks = Mapping::stacks(stack_size)?;
    let (stack, size) = stacks.thread_stack();
    let start = Box::into_raw(Box::new(Start {
        name,
        f,
        stack_size,
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

#[cfg(target_os = "linux")]
extern "C" fn run(start: *mut c_void) -> *mut c_void {
    // SAFETY: `spawn` passed a `Box<Start>` and gave up ownership of it.
    let Start {
        name,
        mut f,
        stack_size,
        stacks,
        reaper,
    } = *unsafe { Box::from_raw(start.cast::<Start>()) };
    // SAFETY: the signal stack lies in `stacks`, which outlives this thread.
    unsafe {
        let signal_stack = libc::stack_t {
            ss_sp: stacks.signal_stack().cast(),
            ss_flags: 0,
            ss_size: SIGNAL_STACK_SIZE,
        };
        libc::sigaltstack(&signal_stack, ptr::null_mut());
    }
    set_name(name);
    arena::leave_main_arena();
    let affinity = pool::Affinity::current();
    let slot = Arc::new(pool::Slot::default());
    // A panic must not unwind out of a C entry point; `f` reports its own. A thread whose
    // closure panicked exits rather than wait for another.
    while catch_unwind(AssertUnwindSafe(f)).is_ok() && pool::has_room() {
        go_idle(&stacks, &reaper, &affinity);
        let Some((name, next)) = pool::wait(stack_size, &slot) else {
            break;
        };
        set_name(name);
        f = next;
    }
    // SAFETY: pthread_self has no preconditions.
    let thread = unsafe { libc::pthread_self() };
    // The reaper lives as long as the process, so this cannot fail.
    let _ = reaper.send(Retired::Exited {
        thread,
        stacks,
        block: arena::Block::take(),
    });
    ptr::null_mut()
}

/// Readies a thread to wait in the pool: gives back the pages of its stacks below its own
/// frames (but for `pool::KEEP`) and, through the reaper, what its closure freed into its
/// malloc arena (see `arena`); takes back the CPUs it was first allowed; takes the name
/// of idle threads.
#[cfg(target_os = "linux")]
#[inline(never)]
fn go_idle(stacks: &Mapping, reaper: &Sender<Retired>, affinity: &pool::Affinity) {
    let marker = 0u8;
    let here = std::hint::black_box(&marker) as *const u8 as usize;
    stacks.release_below(here.saturating_sub(pool::KEEP));
    let _ = reaper.send(Retired::Idle(arena::Block::take()));
    affinity.restore();
    set_name(pool::IDLE_NAME);
}

/// Names the calling thread (a name of 16 bytes or more is refused, harmlessly).
#[cfg(target_os = "linux")]
fn set_name(name: &CStr) {
    // SAFETY: a C string, for the calling thread.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), name.as_ptr()) };
}
