//! The command queue between NIFs (any thread) and an instance's executor thread.
//!
//! Round trips must take microseconds, so the executor spins briefly on an atomic
//! before parking; `std::thread::park` is futex-based on Linux.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use once_cell::sync::OnceCell;
use parking_lot::Mutex;

use crate::command::Command;

/// How long an idle executor keeps polling before it parks.
const SPIN: Duration = Duration::from_micros(50);

/// Padded so the lines NIFs and the executor both write (queue, length) do not share a
/// line with neighbouring fields.
pub struct Mailbox {
    queue: CachePadded<Mutex<Queue>>,
    len: CachePadded<AtomicUsize>,
    executor: OnceCell<Thread>,
}

struct Queue {
    commands: VecDeque<Command>,
    closed: bool,
}

/// The executor has exited; the command was not queued.
pub struct Closed;

impl Mailbox {
    pub fn new() -> Self {
        Mailbox {
            queue: CachePadded::new(Mutex::new(Queue { commands: VecDeque::new(), closed: false })),
            len: CachePadded::new(AtomicUsize::new(0)),
            executor: OnceCell::new(),
        }
    }

    /// Called once by the executor thread before it waits on this mailbox.
    pub fn bind_executor(&self) {
        let _ = self.executor.set(std::thread::current());
    }

    pub fn push(&self, command: Command) -> Result<(), Closed> {
        {
            let mut queue = self.queue.lock();
            if queue.closed {
                return Err(Closed);
            }
            queue.commands.push_back(command);
            self.len.store(queue.commands.len(), Ordering::Release);
        }
        // Unparking a thread that is not parked only sets its token: cheap, and it makes
        // the executor's check-then-park free of lost wake-ups.
        if let Some(thread) = self.executor.get() {
            thread.unpark();
        }
        Ok(())
    }

    fn try_pop(&self) -> Option<Command> {
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
        let spin_until = Instant::now() + SPIN;
        let mut polls = 0u32;
        loop {
            if let Some(command) = self.try_pop() {
                return command;
            }
            polls += 1;
            if polls % 64 != 0 || Instant::now() < spin_until {
                relax(polls);
                continue;
            }
            std::thread::park();
        }
    }

    /// Refuses further commands and hands back the ones still queued.
    pub fn close(&self) -> Vec<Command> {
        let mut queue = self.queue.lock();
        queue.closed = true;
        self.len.store(0, Ordering::Release);
        queue.commands.drain(..).collect()
    }
}

/// Polls this many times before yielding between polls.
const PURE_SPINS: u32 = 256;

/// One step of a bounded busy-wait. After a short pure spin it yields the core, so a
/// waiter never starves the thread it waits for when both share a core (two schedulers
/// and an executor on a 2-core machine).
pub fn relax(polls: u32) {
    if polls < PURE_SPINS {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}
