//! Bounded busy-waiting.
//!
//! A waiter spins (a `pause` per poll) and, when asked to, yields the core between polls
//! after a while, so it cannot starve the thread it waits for when both share a core.
//! `sched_yield` can give away a whole time slice (milliseconds) when other threads are
//! runnable, so the clock is read on every poll: the bound is overshot by at most one
//! poll. Threads that must return quickly (NIFs on a BEAM scheduler) never yield.

use std::time::{Duration, Instant};

pub struct Spin {
    started: Instant,
    yield_after: Option<Duration>,
    give_up_after: Duration,
}

impl Spin {
    /// Spins with `spin_loop` only, for at most `give_up_after`.
    pub fn pure(give_up_after: Duration) -> Spin {
        Spin { started: Instant::now(), yield_after: None, give_up_after }
    }

    /// Spins, yields the core between polls after `yield_after`, gives up after
    /// `give_up_after`.
    pub fn yielding(yield_after: Duration, give_up_after: Duration) -> Spin {
        Spin { started: Instant::now(), yield_after: Some(yield_after), give_up_after }
    }

    /// Waits one poll; false once the wait should end (without waiting).
    pub fn step(&mut self) -> bool {
        let elapsed = self.started.elapsed();
        if elapsed >= self.give_up_after {
            return false;
        }
        match self.yield_after {
            Some(after) if elapsed >= after => std::thread::yield_now(),
            _ => std::hint::spin_loop(),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The old spin read the clock once per 32 polls, so a zero bound still granted 31
    /// polls (31 time slices when yielding).
    #[test]
    fn an_expired_bound_ends_the_wait_at_the_first_poll() {
        assert!(!Spin::yielding(Duration::ZERO, Duration::ZERO).step());
        assert!(!Spin::pure(Duration::ZERO).step());
    }
}
