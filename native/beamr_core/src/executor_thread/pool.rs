//! Threads whose closure has returned, kept for the next `spawn` with the same stack size.
//!
//! A new thread costs its mapping, `pthread_create`, the first touch of its stack pages,
//! leaving glibc's main arena, a wasm stack from wasmer (mapped, or taken from its pool),
//! and at its exit the reaper's join and unmap. So a thread whose closure returns waits
//! here for another, at most `IDLE_TIMEOUT` and never more than `MAX_IDLE` at once; the
//! others exit as before, through the reaper. A thread whose closure panicked exits at
//! once, taking along whatever the closure left in its thread-locals.
//!
//! Before it waits, a thread gives back what it can without exiting (`super::go_idle`):
//! the pages of its stacks below the top `KEEP` bytes, and a block of its malloc arena to
//! the reaper, which frees it with the exits' blocks (see `arena`). It keeps its wasm
//! stack (wasmer keeps one per thread, for that thread's next call: the next closure
//! reuses it) and glibc's small per-thread cache of freed chunks, both given back when it
//! exits. It also takes back the CPUs it was first allowed (an executor moves itself off
//! its caller's CPU, see `beamr_handoff::cpu`), so the next closure starts as on a new
//! thread.

use std::ffi::CStr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What `spawn` hands a thread: its name and closure.
pub(super) type Task = (&'static CStr, Box<dyn FnOnce() + Send>);

/// At most this many threads wait at once: enough for a burst of stops followed by a
/// burst of starts (the same burst the reaper holds arena blocks for, `MAX_HELD`), while
/// what they keep stays small: each holds 4 mappings (its stacks, split by their guard
/// page, and its wasm stack with its guard: 256 in all, of Linux's default 65,530), 32 MiB
/// of address space, and resident at most `KEEP` of its stack and what its last calls
/// touched of its wasm stack (~65 KiB each after AOS instances, measured).
pub(super) const MAX_IDLE: usize = 64;
/// A thread that waited this long exits. Starts that come in bursts or at a steady rate
/// find a thread; a VM whose starts stopped gets everything back soon after.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// The top of a thread's stack stays resident while it waits: its own frames, and the
/// ones the next closure will likely touch again (instantiating and serving a small
/// module stays within a few pages of the top). Below, pages are given back.
pub(super) const KEEP: usize = 64 << 10;

/// The name of a waiting thread: only threads running a closure have the name `spawn`
/// gave (the NIF's executors are counted by theirs).
pub(super) const IDLE_NAME: &CStr = c"hb_beamr_idle";

/// What a waiting thread is handed.
enum Handed {
    Run(Task),
    /// Exit now (see `release`).
    Exit,
}

/// Where a waiting thread receives its next task.
#[derive(Default)]
pub(super) struct Slot {
    handed: Mutex<Option<Handed>>,
    wake: Condvar,
}

struct Waiting {
    stack_size: usize,
    slot: Arc<Slot>,
}

/// The waiting threads, the most recent last.
static IDLE: Mutex<Vec<Waiting>> = Mutex::new(Vec::new());

fn idle() -> MutexGuard<'static, Vec<Waiting>> {
    IDLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn handed(slot: &Slot) -> MutexGuard<'_, Option<Handed>> {
    slot.handed
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Puts `what` in the slot of a thread just taken out of the pool; under the pool's lock,
/// so that a thread timing out finds it (see `wait`).
fn hand(_pool: &MutexGuard<'static, Vec<Waiting>>, slot: &Slot, what: Handed) {
    *handed(slot) = Some(what);
}

/// Hands `task` to the thread with this stack size that began waiting last (its stack
/// and caches are the warmest); gives the task back when no such thread waits.
pub(super) fn hand_over(stack_size: usize, task: Task) -> Result<(), Task> {
    let mut idle = idle();
    let Some(position) = idle.iter().rposition(|w| w.stack_size == stack_size) else {
        return Err(task);
    };
    let Waiting { slot, .. } = idle.remove(position);
    hand(&idle, &slot, Handed::Run(task));
    drop(idle);
    slot.wake.notify_one();
    Ok(())
}

/// Makes the waiting threads (of one stack size, or all) exit now, through the reaper.
pub(super) fn release(stack_size: Option<usize>) {
    let mut idle = idle();
    let (leaving, staying) = std::mem::take(&mut *idle)
        .into_iter()
        .partition(|w| stack_size.is_none_or(|size| w.stack_size == size));
    *idle = staying;
    let leaving: Vec<Waiting> = leaving;
    for waiting in &leaving {
        hand(&idle, &waiting.slot, Handed::Exit);
    }
    drop(idle);
    for waiting in leaving {
        waiting.slot.wake.notify_one();
    }
}

/// Whether a thread going idle would be kept (checked again in `wait`).
pub(super) fn has_room() -> bool {
    idle().len() < MAX_IDLE
}

/// Waits in the pool for the next task, at most `IDLE_TIMEOUT`. `None`: the thread is to
/// exit (the pool was full, or no task came).
pub(super) fn wait(stack_size: usize, slot: &Arc<Slot>) -> Option<Task> {
    {
        let mut idle = idle();
        if idle.len() >= MAX_IDLE {
            return None;
        }
        idle.push(Waiting {
            stack_size,
            slot: Arc::clone(slot),
        });
    }
    let deadline = Instant::now() + IDLE_TIMEOUT;
    let mut waiting = handed(slot);
    loop {
        if let Some(what) = waiting.take() {
            return run(what);
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        waiting = slot
            .wake
            .wait_timeout(waiting, deadline - now)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
    }
    drop(waiting);
    // Timed out. This thread may have been taken out of the pool meanwhile: what it was
    // handed was put in its slot under the pool's lock, so with that lock held it is
    // either there already or the thread is still in the pool, and leaves it.
    let mut idle = idle();
    if let Some(what) = handed(slot).take() {
        return run(what);
    }
    idle.retain(|w| !Arc::ptr_eq(&w.slot, slot));
    None
}

fn run(handed: Handed) -> Option<Task> {
    match handed {
        Handed::Run(task) => Some(task),
        Handed::Exit => None,
    }
}

/// Waiting threads: all of them, or those of one stack size.
#[cfg(test)]
pub(super) fn waiting(stack_size: Option<usize>) -> usize {
    idle()
        .iter()
        .filter(|w| stack_size.is_none_or(|size| w.stack_size == size))
        .count()
}

/// The CPUs a thread may run on, as it was when first read.
pub(super) struct Affinity(Option<libc::cpu_set_t>);

impl Affinity {
    /// The calling thread's.
    pub(super) fn current() -> Affinity {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; the call gets its size and a
        // pointer to it, for the calling thread (pid 0).
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            let read = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
            Affinity((read == 0).then_some(set))
        }
    }

    /// Gives the calling thread this set again.
    pub(super) fn restore(&self) {
        if let Some(set) = &self.0 {
            // SAFETY: as in `current`.
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
        }
    }
}
