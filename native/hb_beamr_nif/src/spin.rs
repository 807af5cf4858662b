//! Bounded busy-waiting, for the executor waiting for commands and NIFs waiting for a
//! call's next event.
//!
//! A waiter first spins (a `pause` per poll); after `yield_after` it yields the core
//! between polls, so it cannot starve the thread it waits for when both share a core
//! (two schedulers and an executor on a 2-core machine); after `give_up_after` it stops.

use std::time::{Duration, Instant};

/// The clock is read once per this many polls.
const POLLS_PER_CLOCK_READ: u32 = 32;

pub struct Spin {
    started: Instant,
    polls: u32,
    yielding: bool,
    yield_after: Duration,
    give_up_after: Duration,
}

impl Spin {
    pub fn new(yield_after: Duration, give_up_after: Duration) -> Spin {
        Spin { started: Instant::now(), polls: 0, yielding: false, yield_after, give_up_after }
    }

    /// Waits one poll; false once the wait should end.
    pub fn step(&mut self) -> bool {
        self.polls += 1;
        if self.polls % POLLS_PER_CLOCK_READ == 0 {
            let elapsed = self.started.elapsed();
            if elapsed >= self.give_up_after {
                return false;
            }
            self.yielding = elapsed >= self.yield_after;
        }
        if self.yielding {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
        true
    }
}
