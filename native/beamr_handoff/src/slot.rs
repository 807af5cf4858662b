//! A one-event hand-over from a producer to a waiter that spins for a bounded time.
//!
//! The waiter arms the slot, then spins until the event arrives or its time is up; a
//! producer that finds the slot armed writes the event into it, otherwise it gets the
//! event back (and delivers it some other way, e.g. as a message). Every transition is a
//! compare-and-swap, so whatever any number of threads do, at most one of them owns the
//! event cell at a time, and an event is either taken by a waiter or handed back to its
//! producer, never both, never neither. In particular a waiter that gives up while the
//! producer is writing does not wait for the write: it marks the slot ABANDONED and the
//! producer, failing to publish, takes its event back.

use crate::sync::{AtomicU8, Ordering, UnsafeCell};
use std::time::Duration;

use super::spin::Spin;

/// Nobody waits: offers are refused.
const IDLE: u8 = 0;
/// A waiter spins for the next event.
const WAITING: u8 = 1;
/// A producer claimed the slot and is writing the event.
const WRITING: u8 = 2;
/// The event is in the slot.
const FILLED: u8 = 3;
/// A waiter is taking the event out.
const TAKING: u8 = 4;
/// The waiter gave up during a write; the producer takes its event back.
const ABANDONED: u8 = 5;

pub struct Slot<E> {
    state: AtomicU8,
    /// Written by the producer that moved `state` to WRITING (and read back by it after
    /// ABANDONED), read by the waiter that moved it from FILLED to TAKING.
    event: UnsafeCell<Option<E>>,
}

// SAFETY: `event` is only accessed under the ownership protocol of `state` (see above),
// which hands it from thread to thread with release/acquire transitions.
unsafe impl<E: Send> Sync for Slot<E> {}

impl<E> Slot<E> {
    pub fn new() -> Slot<E> {
        Slot {
            state: AtomicU8::new(IDLE),
            event: UnsafeCell::new(None),
        }
    }

    /// Announces a waiter for the next event (before it triggers the event). False when
    /// the slot is not idle: an earlier hand-over has not finished, so the caller must
    /// not wait.
    pub fn arm(&self) -> bool {
        self.state
            .compare_exchange(IDLE, WAITING, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Producer side: hands `event` to the waiter, or gives it back when nobody waits
    /// (any more).
    pub fn offer(&self, event: E) -> Result<(), E> {
        if !self.claim() {
            return Err(event);
        }
        self.fill(event)
    }

    fn claim(&self) -> bool {
        self.state
            .compare_exchange(WAITING, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// After a successful `claim`.
    fn fill(&self, event: E) -> Result<(), E> {
        // SAFETY: WRITING gives the producer exclusive access to `event`.
        unsafe { self.event.with_mut(|cell| *cell = Some(event)) };
        if self
            .state
            .compare_exchange(WRITING, FILLED, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(());
        }
        // ABANDONED: the waiter left during the write and will not touch the cell.
        reached!(SlotAbandoned);
        // SAFETY: only the producer leaves ABANDONED.
        let event = unsafe { self.event.with_mut(|cell| (*cell).take()) }
            .expect("a written slot holds its event");
        self.state.store(IDLE, Ordering::Release);
        Err(event)
    }

    /// Waiter side, after a successful `arm`: the event if it comes within `bound`
    /// while `producer_may_run` holds (pure spinning, no yielding: the bound holds
    /// whatever the load). Returns within the bound plus a few compare-and-swaps;
    /// afterwards, offers are refused until the next `arm`.
    pub fn wait(&self, bound: Duration, producer_may_run: impl Fn() -> bool) -> Option<E> {
        let mut spin = Spin::pure(bound);
        loop {
            if self.state.load(Ordering::Relaxed) == FILLED {
                if let Some(event) = self.try_take() {
                    return Some(event);
                }
            }
            if !producer_may_run() || !spin.step() {
                return self.give_up();
            }
        }
    }

    fn try_take(&self) -> Option<E> {
        if self
            .state
            .compare_exchange(FILLED, TAKING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        // SAFETY: TAKING gives this waiter exclusive access to `event`.
        let event = unsafe { self.event.with_mut(|cell| (*cell).take()) };
        self.state.store(IDLE, Ordering::Release);
        event
    }

    /// Ends the wait without blocking: each retry follows a state change by the
    /// producer, which makes at most two (claim, publish) per offer.
    fn give_up(&self) -> Option<E> {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let next = match state {
                WAITING => IDLE,
                WRITING => ABANDONED,
                FILLED => return self.try_take().or_else(|| self.give_up()),
                // Not ours to end (nobody armed, or another waiter is ending it).
                _ => return None,
            };
            match self
                .state
                .compare_exchange(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return None,
                Err(now) => state = now,
            }
        }
    }
}

impl<E> Default for Slot<E> {
    fn default() -> Self {
        Slot::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::time::Instant;

    #[test]
    fn hand_over_and_refusal() {
        let slot = Slot::new();
        assert_eq!(slot.offer(1), Err(1), "nobody armed");
        assert!(slot.arm());
        assert!(!slot.arm(), "armed twice");
        slot.offer(2).unwrap();
        assert_eq!(slot.offer(3), Err(3), "already filled");
        assert_eq!(slot.wait(Duration::ZERO, || true), Some(2));
        assert!(slot.arm());
        assert_eq!(slot.wait(Duration::from_micros(10), || true), None);
        assert_eq!(slot.offer(4), Err(4), "the waiter left");
    }

    /// A producer that cannot run (it waits for the waiter's CPU) ends the wait at once,
    /// not at the bound; an event already there is still taken.
    #[test]
    fn a_waiter_stops_when_the_producer_cannot_run() {
        let slot = Slot::new();
        assert!(slot.arm());
        let started = Instant::now();
        assert_eq!(slot.wait(Duration::from_secs(60), || false), None);
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(slot.offer(1), Err(1), "the waiter left");
        assert!(slot.arm());
        slot.offer(2).unwrap();
        assert_eq!(slot.wait(Duration::from_secs(60), || false), Some(2));
    }

    /// The old fallback spun until the producer finished writing, however long that
    /// took; now a waiter leaves at once and the producer gets its event back.
    #[test]
    fn a_waiter_does_not_wait_for_a_stalled_writer() {
        let slot = Slot::new();
        assert!(slot.arm());
        assert!(slot.claim());
        let (done, finished) = mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                done.send(slot.wait(Duration::from_micros(20), || true))
                    .unwrap()
            });
            let outcome = finished
                .recv_timeout(Duration::from_secs(5))
                .expect("the waiter hung");
            assert_eq!(outcome, None);
        });
        assert_eq!(slot.fill(7), Err(7));
        assert!(slot.arm(), "idle again");
    }

    #[test]
    fn wait_returns_within_its_bound_when_nothing_comes() {
        let slot = Slot::<u32>::new();
        assert!(slot.arm());
        let started = Instant::now();
        assert_eq!(slot.wait(Duration::from_millis(2), || true), None);
        // Far above the bound: this is about termination, not speed.
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    /// A producer offers events while a waiter arms and waits with bounds so short that
    /// it often gives up mid-write: each event is taken or handed back, exactly once.
    #[test]
    fn every_event_is_taken_or_handed_back_exactly_once() {
        const EVENTS: usize = 50_000;
        let slot = Slot::new();
        let taken = AtomicUsize::new(0);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (mut returned, mut sum_back) = (0, 0);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let (mut count, mut sum) = (0, 0);
                let mut bound = 0;
                while !stop.load(Ordering::Acquire) {
                    if slot.arm() {
                        bound = (bound + 1) % 400;
                        if let Some(e) = slot.wait(Duration::from_nanos(bound), || true) {
                            count += 1;
                            sum += e;
                        }
                    }
                }
                taken.store(count, Ordering::Release);
                sum
            });
            for e in 1..=EVENTS {
                // Offer mostly to an armed slot, so that both outcomes occur whatever
                // the scheduling of the two threads.
                while slot.state.load(Ordering::Relaxed) != WAITING {
                    std::thread::yield_now();
                }
                if slot.offer(e).is_err() {
                    returned += 1;
                    sum_back += e;
                }
            }
            stop.store(true, Ordering::Release);
            let sum_taken = waiter.join().unwrap();
            assert_eq!(sum_taken + sum_back, EVENTS * (EVENTS + 1) / 2);
        });
        assert_eq!(taken.load(Ordering::Acquire) + returned, EVENTS);
        assert!(returned < EVENTS, "no event was ever taken");
    }
}
