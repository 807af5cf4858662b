//! The command queue between NIFs (any thread) and an instance's executor thread.
//!
//! Round trips must take microseconds, so the executor spins briefly before parking
//! (`std::thread::park` is futex-based on Linux), and a command that finds the executor
//! idle skips the queue: it goes through a one-command lane that the executor polls,
//! which costs fewer cache-line transfers between cores than a lock, a length and a ring
//! buffer, and no allocation. Commands from one process never overtake each other: a process waits for the
//! answer to each command before it sends the next.

use std::collections::VecDeque;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;

use crossbeam_utils::CachePadded;
use once_cell::sync::OnceCell;
use parking_lot::Mutex;

use crate::command::Command;
use crate::spin::Spin;

/// How long an idle executor polls without yielding, and before it parks.
const SPIN_BEFORE_YIELDING: Duration = Duration::from_micros(20);
const SPIN_BEFORE_PARKING: Duration = Duration::from_micros(50);

/// Padded so the lines NIFs and the executor both write (queue, length) do not share a
/// line with neighbouring fields.
pub struct Mailbox {
    /// A lone command for an idle executor.
    fast: CachePadded<Lane>,
    queue: CachePadded<Mutex<Queue>>,
    len: CachePadded<AtomicUsize>,
    closed: AtomicBool,
    executor: OnceCell<Thread>,
}

struct Queue {
    commands: VecDeque<Command>,
}

/// The executor has exited; the command was not queued.
pub struct Closed;

impl Mailbox {
    pub fn new() -> Self {
        Mailbox {
            fast: CachePadded::new(Lane::new()),
            queue: CachePadded::new(Mutex::new(Queue { commands: VecDeque::new() })),
            len: CachePadded::new(AtomicUsize::new(0)),
            closed: AtomicBool::new(false),
            executor: OnceCell::new(),
        }
    }

    /// Called once by the executor thread before it waits on this mailbox.
    pub fn bind_executor(&self) {
        let _ = self.executor.set(std::thread::current());
    }

    pub fn push(&self, command: Command) -> Result<(), Closed> {
        let command = match self.push_fast(command) {
            Ok(()) => return self.wake(),
            Err(command) => command,
        };
        {
            let mut queue = self.queue.lock();
            if self.closed.load(Ordering::SeqCst) {
                return Err(Closed);
            }
            queue.commands.push_back(command);
            self.len.store(queue.commands.len(), Ordering::Release);
        }
        self.wake()
    }

    /// Hands the command over through the lane when nothing is queued before it.
    fn push_fast(&self, command: Command) -> Result<(), Command> {
        if self.len.load(Ordering::Acquire) != 0 {
            return Err(command);
        }
        self.fast.put(command)?;
        // A close that ran concurrently may have missed the command: take it back if it
        // is still there (then nobody else will answer it).
        if self.closed.load(Ordering::SeqCst) {
            if let Some(command) = self.fast.take() {
                return Err(command);
            }
        }
        Ok(())
    }

    fn wake(&self) -> Result<(), Closed> {
        // Unparking a thread that is not parked only sets its token: cheap, and it makes
        // the executor's check-then-park free of lost wake-ups.
        if let Some(thread) = self.executor.get() {
            thread.unpark();
        }
        Ok(())
    }

    fn try_pop(&self) -> Option<Command> {
        if let Some(command) = self.fast.take() {
            return Some(command);
        }
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut queue = self.queue.lock();
        let command = queue.commands.pop_front();
        self.len.store(queue.commands.len(), Ordering::Release);
        command
    }

    /// The next command, waiting as long as it takes. Executor thread only.
    pub fn pop(&self) -> Command {
        let mut spin = Spin::new(SPIN_BEFORE_YIELDING, SPIN_BEFORE_PARKING);
        loop {
            if let Some(command) = self.try_pop() {
                return command;
            }
            if !spin.step() {
                std::thread::park();
            }
        }
    }

    /// Refuses further commands and hands back the ones still queued.
    pub fn close(&self) -> Vec<Command> {
        let mut queue = self.queue.lock();
        self.closed.store(true, Ordering::SeqCst);
        self.len.store(0, Ordering::Release);
        self.fast.take().into_iter().chain(queue.commands.drain(..)).collect()
    }
}

/// A single-command hand-over between any thread and the executor.
struct Lane {
    state: AtomicU8,
    /// Written only by the thread that moved `state` from EMPTY to WRITING, read only by
    /// the thread that moved it from FULL to TAKING: the state machine serialises access.
    command: UnsafeCell<Option<Command>>,
}

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const FULL: u8 = 2;
const TAKING: u8 = 3;

// SAFETY: `command` is only touched under the ownership protocol of `state` (see above).
unsafe impl Sync for Lane {}

impl Lane {
    fn new() -> Lane {
        Lane { state: AtomicU8::new(EMPTY), command: UnsafeCell::new(None) }
    }

    fn put(&self, command: Command) -> Result<(), Command> {
        if self.state.compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return Err(command);
        }
        // SAFETY: WRITING gives this thread exclusive access to `command`.
        unsafe { *self.command.get() = Some(command) };
        // SeqCst: a pusher's publish and a closer's flag must not both go unseen.
        self.state.store(FULL, Ordering::SeqCst);
        Ok(())
    }

    fn take(&self) -> Option<Command> {
        if self.state.load(Ordering::Acquire) != FULL
            || self.state.compare_exchange(FULL, TAKING, Ordering::SeqCst, Ordering::Relaxed).is_err()
        {
            return None;
        }
        // SAFETY: TAKING gives this thread exclusive access to `command`.
        let command = unsafe { (*self.command.get()).take() };
        self.state.store(EMPTY, Ordering::Release);
        command
    }
}
