//! Bounded busy-waiting.
//!
//! A waiter spins (a `pause` per poll) and, when asked to, yields the core between polls
//! after a while, so it cannot starve the thread it waits for when both share a core.
//! `sched_yield` can give away a whole time slice (milliseconds) when other threads are
//! runnable, so the clock is read on every poll: the bound is overshot by at most one
//! poll. Threads that must return quickly (NIFs on a BEAM scheduler) never yield.
//!
//! Under loom (tests/loom.rs) time does not pass, so the bound is a number of polls
//! instead: a bound of n nanoseconds allows n polls, at most [`LOOM_MAX_POLLS`]. The polls
//! do not call loom's `yield_now`, which would make loom run the other threads at every
//! poll and never explore a consumer that parks before a value comes; the atomic load in
//! each poll is where loom may switch threads.

use std::time::Duration;
#[cfg(not(loom))]
use std::time::Instant;

#[cfg(not(loom))]
pub struct Spin {
    started: Instant,
    yield_after: Option<Duration>,
    give_up_after: Duration,
}

#[cfg(not(loom))]
impl Spin {
    /// Spins with `spin_loop` only, for at most `give_up_after`.
    pub fn pure(give_up_after: Duration) -> Spin {
        Spin {
            started: Instant::now(),
            yield_after: None,
            give_up_after,
        }
    }

    /// Spins, yields the core between polls after `yield_after`, gives up after
    /// `give_up_after`.
    pub fn yielding(yield_after: Duration, give_up_after: Duration) -> Spin {
        Spin {
            started: Instant::now(),
            yield_after: Some(yield_after),
            give_up_after,
        }
    }

    /// Waits one poll; false once the wait should end (without waiting).
    pub fn step(&mut self) -> bool {
        let elapsed = self.started.elapsed();
        if elapsed >= self.give_up_after {
            return false;
        }
        match self.yield_after {
            Some(after) if elapsed >= after => crate::sync::thread::yield_now(),
            _ => std::hint::spin_loop(),
        }
        true
    }
}

/// The most polls a wait makes under loom: enough to take an event that comes during the
/// wait, few enough that models stay small.
#[cfg(loom)]
pub const LOOM_MAX_POLLS: u32 = 3;

#[cfg(loom)]
pub struct Spin {
    polls_left: u32,
}

#[cfg(loom)]
impl Spin {
    fn polls(give_up_after: Duration) -> Spin {
        Spin {
            polls_left: give_up_after.as_nanos().min(LOOM_MAX_POLLS as u128) as u32,
        }
    }

    /// At most `give_up_after` in nanoseconds polls.
    pub fn pure(give_up_after: Duration) -> Spin {
        Spin::polls(give_up_after)
    }

    /// As `pure`.
    pub fn yielding(_yield_after: Duration, give_up_after: Duration) -> Spin {
        Spin::polls(give_up_after)
    }

    /// Waits one poll; false once the wait should end (without waiting).
    pub fn step(&mut self) -> bool {
        if self.polls_left == 0 {
            return false;
        }
        self.polls_left -= 1;
        true
    }
}

#[cfg(all(test, not(loom)))]
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
