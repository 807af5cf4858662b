//! A one-value hand-over from any thread to one consumer, which can be closed.
//!
//! Closing is atomic with respect to `put`: a value is taken by the consumer, drained by
//! `close`, or handed back to the one thread that put it, exactly one of the three. A
//! pusher never takes back a value it did not put.
//!
//! The state is a phase (EMPTY, WRITING, FULL, TAKING) plus a CLOSED bit that `close`
//! sets with one `fetch_or`. Whoever holds the value at that moment stays responsible for
//! it: `close` drains a FULL lane, a writer (WRITING) finds the bit when it tries to
//! publish and takes its own value back, a taker (TAKING) keeps what it took.

use crate::sync::{AtomicU8, Ordering, UnsafeCell};

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const FULL: u8 = 2;
const TAKING: u8 = 3;
const CLOSED: u8 = 4;

pub struct Lane<T> {
    state: AtomicU8,
    /// Touched only by the thread that moved `state` into WRITING or TAKING, or by the
    /// closer that found it FULL: the state machine serialises access.
    value: UnsafeCell<Option<T>>,
}

// SAFETY: `value` is only accessed under the ownership protocol of `state` (see above),
// which hands it from thread to thread with release/acquire transitions.
unsafe impl<T: Send> Sync for Lane<T> {}

/// Why `put` handed the value back.
#[derive(Debug, PartialEq, Eq)]
pub enum PutError<T> {
    /// The lane holds another value; the caller may queue its value elsewhere.
    Busy(T),
    /// The lane is closed: nobody will take the value.
    Closed(T),
}

impl<T> Lane<T> {
    pub fn new() -> Lane<T> {
        Lane {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(None),
        }
    }

    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        if let Err(state) =
            self.state
                .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
        {
            return Err(if state & CLOSED != 0 {
                PutError::Closed(value)
            } else {
                PutError::Busy(value)
            });
        }
        // SAFETY: WRITING gives this thread exclusive access to `value`.
        unsafe { self.value.with_mut(|cell| *cell = Some(value)) };
        // Acquire too, for `sync_with_pushers` (the same instruction on x86).
        if self
            .state
            .compare_exchange(WRITING, FULL, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(());
        }
        // `close` set its bit while we wrote (WRITING | CLOSED): the value is still ours.
        reached!(LaneClosedWhileWriting);
        // SAFETY: no other thread moves the state out of WRITING | CLOSED.
        let value = unsafe { self.value.with_mut(|cell| (*cell).take()) }
            .expect("a written lane holds its value");
        self.state.store(CLOSED, Ordering::Release);
        Err(PutError::Closed(value))
    }

    pub fn take(&self) -> Option<T> {
        // A plain load first: polling must not write the line the pusher is about to use.
        if self.state.load(Ordering::Relaxed) != FULL
            || self
                .state
                .compare_exchange(FULL, TAKING, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        // SAFETY: TAKING gives this thread exclusive access to `value`.
        let value = unsafe { self.value.with_mut(|cell| (*cell).take()) };
        if self
            .state
            .compare_exchange(TAKING, EMPTY, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            // Closed while taking: the value was taken before, so it is ours to return.
            reached!(LaneClosedWhileTaking);
            self.state.store(CLOSED, Ordering::Release);
        }
        value
    }

    /// Consumer side: orders what the calling thread did before against every `put`.
    /// A read-modify-write reads the latest state, never a stale one: a value published
    /// before is seen by the next `take`, and a `put` that publishes (or starts) after
    /// sees what the caller did before (both its compare-and-swaps acquire).
    pub fn sync_with_pushers(&self) {
        self.state.fetch_or(0, Ordering::AcqRel);
    }

    /// Whether no value is in the lane or being put there (a read-modify-write: it sees
    /// the latest state).
    pub fn is_empty(&self) -> bool {
        self.state.fetch_or(0, Ordering::AcqRel) & !CLOSED == EMPTY
    }

    /// Refuses further values and drains the one that was put but not taken, if any.
    /// Idempotent.
    pub fn close(&self) -> Option<T> {
        if self.state.fetch_or(CLOSED, Ordering::AcqRel) != FULL {
            return None;
        }
        // SAFETY: FULL | CLOSED is a state only this call leaves.
        let value = unsafe { self.value.with_mut(|cell| (*cell).take()) };
        self.state.store(CLOSED, Ordering::Release);
        value
    }
}

impl<T> Default for Lane<T> {
    fn default() -> Self {
        Lane::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Barrier, Mutex};

    #[test]
    fn put_take_close() {
        let lane = Lane::new();
        assert_eq!(lane.take(), None);
        lane.put(1).unwrap();
        assert_eq!(lane.put(2), Err(PutError::Busy(2)));
        assert_eq!(lane.take(), Some(1));
        lane.put(3).unwrap();
        assert_eq!(lane.close(), Some(3));
        assert_eq!(lane.close(), None);
        assert_eq!(lane.put(4), Err(PutError::Closed(4)));
        assert_eq!(lane.take(), None);
    }

    /// Pushers race a taker and a close; every value must end in exactly one place:
    /// taken, drained by close, or handed back to the pusher that put it.
    #[test]
    fn every_value_ends_in_exactly_one_place_when_close_races_put() {
        const PUSHERS: usize = 4;
        const VALUES: usize = 200;
        for round in 0..300 {
            let lane = Lane::new();
            let taken = Mutex::new(Vec::new());
            let returned = Mutex::new(Vec::new());
            let done = AtomicBool::new(false);
            let start = Barrier::new(PUSHERS + 2);
            let drained = std::thread::scope(|s| {
                for p in 0..PUSHERS {
                    let (lane, returned, start) = (&lane, &returned, &start);
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        start.wait();
                        for v in (0..VALUES).map(|i| p * VALUES + i) {
                            let mut value = v;
                            loop {
                                match lane.put(value) {
                                    Ok(()) => break,
                                    Err(PutError::Busy(back)) => {
                                        assert_eq!(back, v, "got back another pusher's value");
                                        value = back;
                                        std::hint::spin_loop();
                                    }
                                    Err(PutError::Closed(back)) => {
                                        assert_eq!(back, v, "got back another pusher's value");
                                        mine.push(back);
                                        break;
                                    }
                                }
                            }
                        }
                        returned.lock().unwrap().extend(mine);
                    });
                }
                let taker = s.spawn(|| {
                    let mut mine = Vec::new();
                    start.wait();
                    while !done.load(Ordering::Acquire) {
                        mine.extend(lane.take());
                    }
                    taken.lock().unwrap().extend(mine);
                });
                start.wait();
                // Close at a different moment each round.
                for _ in 0..round * 7 {
                    std::hint::spin_loop();
                }
                let drained = lane.close();
                done.store(true, Ordering::Release);
                taker.join().unwrap();
                drained
            });
            let mut all: Vec<usize> = taken.into_inner().unwrap();
            all.extend(drained);
            all.extend(returned.into_inner().unwrap());
            all.sort_unstable();
            assert_eq!(
                all,
                (0..PUSHERS * VALUES).collect::<Vec<_>>(),
                "round {round}"
            );
        }
    }
}
