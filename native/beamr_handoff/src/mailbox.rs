//! A multi-producer queue to one consumer thread that sleeps when idle, and can be
//! closed.
//!
//! Round trips must take microseconds, so the consumer spins briefly before parking
//! (`std::thread::park` is futex-based on Linux), and a value that finds the queue empty
//! skips it: it goes through a one-value [`Lane`] that the consumer polls, which costs
//! fewer cache-line transfers between cores than a lock, a length and a ring buffer, and
//! no allocation.
//!
//! Closing is atomic with respect to `push`: every value pushed is popped, drained by
//! `close`, or refused (`Err(Closed)`) to its own pusher, exactly one of the three.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::sync::thread::{self, Thread};
use crate::sync::{AtomicUsize, Mutex, Ordering};

use super::lane::{Lane, PutError};
use super::spin::Spin;
use crate::cpu::{self, LastCpu};

/// How long an idle consumer polls without yielding, and before it parks.
const SPIN_BEFORE_YIELDING: Duration = Duration::from_micros(20);
const SPIN_BEFORE_PARKING: Duration = Duration::from_micros(50);

/// The consumer has closed the mailbox; the value was not queued.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

/// Padded so the lines producers and the consumer both write (lane, queue, length) do
/// not share a line with each other or with neighbouring fields.
pub struct Mailbox<T> {
    lane: CachePadded<Lane<T>>,
    queue: CachePadded<Mutex<Queue<T>>>,
    /// The queue's length, readable without the lock.
    len: CachePadded<AtomicUsize>,
    /// The thread popping values, which pushes wake; it changes when another thread takes
    /// over (an instance revived from hibernation).
    consumer: Mutex<Option<Thread>>,
    /// Where the consumer and the latest producer were last seen (see [`cpu`]).
    consumer_cpu: CachePadded<LastCpu>,
    producer_cpu: CachePadded<LastCpu>,
}

struct Queue<T> {
    values: VecDeque<T>,
    closed: bool,
}

impl<T> Mailbox<T> {
    pub fn new() -> Self {
        Mailbox {
            lane: CachePadded::new(Lane::new()),
            queue: CachePadded::new(Mutex::new(Queue {
                values: VecDeque::new(),
                closed: false,
            })),
            len: CachePadded::new(AtomicUsize::new(0)),
            consumer: Mutex::new(None),
            consumer_cpu: CachePadded::new(LastCpu::new()),
            producer_cpu: CachePadded::new(LastCpu::new()),
        }
    }

    /// Called by the consumer thread before it pops: once, and again by each thread that
    /// takes over as consumer after the previous one stopped popping.
    ///
    /// A push racing the binding could otherwise miss it (and wake nobody) while the
    /// consumer misses the pushed value and parks for ever: store buffering, which the
    /// memory model allows between the release/acquire operations on both sides (found by
    /// loom, tests/loom.rs). Rather than a fence in every push, the consumer orders its
    /// binding against pushers here, once: through the lane's state and the queue's lock.
    pub fn bind_executor(&self) {
        *self.consumer.lock() = Some(thread::current());
        self.lane.sync_with_pushers();
        drop(self.queue.lock());
    }

    pub fn push(&self, value: T) -> Result<(), Closed> {
        self.producer_cpu.record(cpu::current());
        // The lane only when nothing is queued, so a value never overtakes queued ones.
        let value = if self.len.load(Ordering::Acquire) == 0 {
            match self.lane.put(value) {
                Ok(()) => {
                    self.wake();
                    return Ok(());
                }
                Err(PutError::Closed(_)) => return Err(Closed),
                Err(PutError::Busy(value)) => value,
            }
        } else {
            value
        };
        {
            let mut queue = self.queue.lock();
            if queue.closed {
                return Err(Closed);
            }
            queue.values.push_back(value);
            self.len.store(queue.values.len(), Ordering::Release);
        }
        self.wake();
        Ok(())
    }

    fn wake(&self) {
        // Unparking a thread that is not parked only sets its token: cheap, and it makes
        // the consumer's check-then-park free of lost wake-ups.
        if let Some(thread) = self.consumer.lock().as_ref() {
            thread.unpark();
        }
    }

    /// The next value if one is there. Consumer thread only.
    pub fn try_pop(&self) -> Option<T> {
        if let Some(value) = self.lane.take() {
            return Some(value);
        }
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut queue = self.queue.lock();
        let value = queue.values.pop_front();
        self.len.store(queue.values.len(), Ordering::Release);
        value
    }

    /// The next value, waiting as long as it takes: spinning briefly, then parked.
    /// Consumer thread only (after `bind_executor`), and not after `close`.
    pub fn pop(&self) -> T {
        loop {
            if let Some(value) = self.pop_until(None) {
                return value;
            }
        }
    }

    /// The next value, or `None` once `deadline` has passed (`None`: no deadline): spinning
    /// briefly, then parked until a push or the deadline. Consumer thread only.
    ///
    /// A consumer that finds itself on the CPU where the latest producer last ran would
    /// spin on the core that producer needs (see [`cpu`]): it moves to another CPU, or
    /// parks at once when it may use no other.
    pub fn pop_until(&self, deadline: Option<Instant>) -> Option<T> {
        let mut spin = Spin::yielding(SPIN_BEFORE_YIELDING, SPIN_BEFORE_PARKING);
        loop {
            let here = cpu::current();
            self.consumer_cpu.record(here);
            if let Some(value) = self.try_pop() {
                return Some(value);
            }
            let in_the_way = self.producer_cpu.is(here);
            if in_the_way && cpu::move_off(here) {
                continue;
            }
            if in_the_way || !spin.step() {
                self.consumer_cpu.forget();
                reached!(MailboxParked);
                match deadline {
                    None => thread::park(),
                    Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => thread::park_timeout(left),
                        _ => return self.try_pop(),
                    },
                }
            }
        }
    }

    /// Whether the consumer may be running now, seen from the calling thread: false when
    /// it was last seen on the caller's CPU. For producers waiting for its answer.
    pub fn consumer_may_run(&self) -> bool {
        !self.consumer_cpu.is(cpu::current())
    }

    /// Whether no value waits: every `push` that returned before this call (or before
    /// a sequentially consistent fence that precedes it) is seen, because both the lane's
    /// state and the queue are read through a read-modify-write or the queue's lock, which
    /// read the latest value. For a consumer deciding to stop popping while pushers decide
    /// whether to start a new one: each side writes its decision, fences (SeqCst), then reads
    /// the other's, so at least one of them sees the other.
    pub fn is_empty(&self) -> bool {
        self.lane.is_empty() && self.queue.lock().values.is_empty()
    }

    /// Refuses further values and hands back the ones pushed but not popped.
    pub fn close(&self) -> Vec<T> {
        let mut queue = self.queue.lock();
        queue.closed = true;
        self.len.store(0, Ordering::Release);
        self.lane
            .close()
            .into_iter()
            .chain(queue.values.drain(..))
            .collect()
    }
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Barrier;

    #[test]
    fn fifo_then_closed() {
        let mailbox = Mailbox::new();
        mailbox.bind_executor();
        for v in 0..5 {
            mailbox.push(v).unwrap();
        }
        assert_eq!(mailbox.pop(), 0);
        assert_eq!(mailbox.pop(), 1);
        assert_eq!(mailbox.close(), vec![2, 3, 4]);
        assert_eq!(mailbox.push(5), Err(Closed));
        assert_eq!(mailbox.close(), Vec::<i32>::new());
    }

    /// A consumer on the CPU its producer last ran on leaves that CPU (or, allowed no
    /// other, parks) rather than spin on it, and still gets the value.
    #[test]
    fn a_consumer_does_not_wait_on_its_producers_cpu() {
        let mailbox = Mailbox::new();
        std::thread::scope(|s| {
            let consumer = s.spawn(|| {
                mailbox.bind_executor();
                let here = cpu::current();
                mailbox.producer_cpu.record(here);
                (here, mailbox.pop(), cpu::current())
            });
            std::thread::sleep(Duration::from_millis(20));
            mailbox.push(7).unwrap();
            let (was, value, now) = consumer.join().unwrap();
            assert_eq!(value, 7);
            if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
                assert_ne!(was, now, "moved off the producer's CPU");
            }
        });
    }

    #[test]
    fn a_parked_consumer_is_woken() {
        let mailbox = Mailbox::new();
        std::thread::scope(|s| {
            let consumer = s.spawn(|| {
                mailbox.bind_executor();
                (0..100u32).map(|_| mailbox.pop()).sum::<u32>()
            });
            for v in 0..100 {
                if v % 10 == 0 {
                    // Long enough for the consumer to park.
                    std::thread::sleep(Duration::from_micros(200));
                }
                mailbox.push(v).unwrap();
            }
            assert_eq!(consumer.join().unwrap(), (0..100).sum::<u32>());
        });
    }

    /// Many pushers race a consumer that closes the mailbox after a varying number of
    /// pops: each value must be popped, drained by close or refused to its own pusher,
    /// exactly once. (A pusher that took back whatever sat in the lane after a close
    /// could lose another pusher's value and receive a stray one.)
    #[test]
    fn every_value_is_delivered_or_refused_exactly_once_when_close_races_push() {
        const PUSHERS: u32 = 4;
        const VALUES: u32 = 100;
        for round in 0..300u32 {
            let mailbox = Mailbox::new();
            let start = Barrier::new(PUSHERS as usize + 1);
            let closed = AtomicBool::new(false);
            let (delivered, refused) = std::thread::scope(|s| {
                let pushers: Vec<_> = (0..PUSHERS)
                    .map(|p| {
                        let (mailbox, start, closed) = (&mailbox, &start, &closed);
                        s.spawn(move || {
                            start.wait();
                            let mut refused = Vec::new();
                            for v in (0..VALUES).map(|i| p * VALUES + i) {
                                if mailbox.push(v) == Err(Closed) {
                                    assert!(closed.load(Ordering::Acquire), "refused before close");
                                    refused.push(v);
                                }
                            }
                            refused
                        })
                    })
                    .collect();
                mailbox.bind_executor();
                start.wait();
                let pops = round % (PUSHERS * VALUES / 2);
                let mut delivered: Vec<u32> = (0..pops).map(|_| mailbox.pop()).collect();
                closed.store(true, Ordering::Release);
                delivered.extend(mailbox.close());
                let refused: Vec<u32> = pushers
                    .into_iter()
                    .flat_map(|p| p.join().unwrap())
                    .collect();
                (delivered, refused)
            });
            let mut all: Vec<u32> = delivered.iter().chain(&refused).copied().collect();
            all.sort_unstable();
            assert_eq!(
                all,
                (0..PUSHERS * VALUES).collect::<Vec<_>>(),
                "round {round}"
            );
        }
    }
}
