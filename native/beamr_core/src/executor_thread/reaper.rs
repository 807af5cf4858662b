//! The reaper: one thread per process that joins exited executor threads, unmaps their
//! stacks and, once exits (and threads going idle) settle, gives back what they left
//! elsewhere.

use std::io;
use std::ptr;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::Duration;

use super::arena;
use super::mapping::Mapping;

/// What a thread leaves to the reaper.
pub(super) enum Retired {
    /// An exited (or exiting) thread, the stacks to unmap once it is joined, and a block
    /// of its malloc arena (see `arena`).
    Exited {
        thread: libc::pthread_t,
        stacks: Mapping,
        block: arena::Block,
    },
    /// A block of the arena of a thread gone idle (see `pool`).
    Idle(arena::Block),
}

static REAPER: Mutex<Option<Sender<Retired>>> = Mutex::new(None);

/// The reaper's queue, starting the reaper on first use.
pub(super) fn reaper() -> io::Result<Sender<Retired>> {
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

/// Joins exited threads and unmaps their stacks; once no thread has exited or gone idle
/// for `SETTLE`, or `MAX_HELD` have, gives back the rest of what they left (`release`).
fn reap(retired: Receiver<Retired>) {
    let mut held = Vec::new();
    loop {
        let next = if held.is_empty() {
            retired.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            retired.recv_timeout(SETTLE)
        };
        match next {
            Ok(retired) => {
                let block = match retired {
                    Retired::Exited {
                        thread,
                        stacks,
                        block,
                    } => {
                        // SAFETY: a joinable thread, joined once, here; it runs on
                        // `stacks` until pthread_join returns, so they are unmapped only
                        // after.
                        unsafe { libc::pthread_join(thread, ptr::null_mut()) };
                        drop(stacks);
                        block
                    }
                    Retired::Idle(block) => block,
                };
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
/// Constant churn never settles: blocks held are released after this many exits (or
/// threads gone idle).
const MAX_HELD: usize = 64;
