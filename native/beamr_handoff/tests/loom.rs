//! loom models of the hand-over protocols: every interleaving of a few threads (up to a
//! preemption bound) and every value the memory model lets each atomic load see.
//!
//! RUSTFLAGS="--cfg loom" cargo test --release -p beamr_handoff --test loom
//! (in a target directory of its own: the flag rebuilds every dependency).
//!
//! Under loom a wait's bound is a number of polls (see `Spin`): `Duration::from_nanos(n)`
//! allows n polls, at most `LOOM_MAX_POLLS`.
#![cfg(loom)]

use std::time::Duration;

use beamr_handoff::reached::{self, Path};
use beamr_handoff::{Closed, Lane, Mailbox, PutError, Slot};
use loom::sync::Arc;
use loom::thread;

/// Checks `f` in every execution loom explores with at most `preemption_bound`
/// preemptions, and prints how many that was.
fn model(name: &str, preemption_bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&executions);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemption_bound);
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    let executions = executions.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{name}: {executions} executions (preemption bound {preemption_bound})");
}

/// One waiter (arm, then wait for `polls` polls) against one producer that offers one
/// event, started before or after the arm: the event is taken by the waiter or handed
/// back to the producer, exactly once, and the slot is idle afterwards.
fn slot_waiter_against_producer(polls: u64) {
    model(&format!("slot, {polls} polls"), 3, move || {
        let slot = Arc::new(Slot::new());
        let producer = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || slot.offer(7u32))
        };
        assert!(slot.arm(), "a fresh slot is idle");
        let taken = slot.wait(Duration::from_nanos(polls), || true);
        let offered = producer.join().unwrap();
        match (taken, offered) {
            (Some(7), Ok(())) | (None, Err(7)) => {}
            other => panic!("the event went astray: {other:?}"),
        }
        assert!(slot.arm(), "the slot is idle after the hand-over");
    });
}

#[test]
fn slot_waiter_gives_up_at_once() {
    slot_waiter_against_producer(0);
    // A waiter with no time left lands in every state of the producer's, WRITING
    // included: it abandons the write and the producer takes its event back.
    assert!(
        reached::count(Path::SlotAbandoned) > 0,
        "the ABANDONED path was not explored"
    );
}

#[test]
fn slot_waiter_polls_once() {
    slot_waiter_against_producer(1);
}

#[test]
fn slot_waiter_polls_longer() {
    slot_waiter_against_producer(3);
}

/// Misuse: a second thread tries to arm the slot the first armed and waits whether or
/// not it could, while a producer offers: the two waiters never both get the event, and
/// it is still taken or handed back exactly once.
#[test]
fn slot_two_waiters_never_both_take_the_event() {
    model("slot, two waiters", 3, || {
        let slot = Arc::new(Slot::new());
        assert!(slot.arm());
        let intruder = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || {
                let _ = slot.arm();
                slot.wait(Duration::from_nanos(1), || true)
            })
        };
        let producer = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || slot.offer(7u32))
        };
        let mine = slot.wait(Duration::from_nanos(1), || true);
        let theirs = intruder.join().unwrap();
        let offered = producer.join().unwrap();
        let taken = [mine, theirs].into_iter().flatten().collect::<Vec<_>>();
        match (taken.as_slice(), offered) {
            ([7], Ok(())) | ([], Err(7)) => {}
            other => panic!("the event went astray: {other:?}"),
        }
        assert!(slot.arm(), "the slot is idle after the hand-over");
    });
}

/// A waiter that gives up at once and arms again, against two producers: each event is
/// taken or handed back exactly once, and no producer writes into a write it did not
/// claim (a waiter that gave up mid-write must not make the slot armable before the
/// writer has taken its event back: the ABANDONED state).
#[test]
fn slot_rearmed_against_two_producers() {
    model("slot, re-armed, two producers", 3, || {
        let slot = Arc::new(Slot::new());
        let producers: Vec<_> = [1u32, 2]
            .into_iter()
            .map(|e| {
                let slot = Arc::clone(&slot);
                thread::spawn(move || slot.offer(e).err())
            })
            .collect();
        let mut ends = Vec::new();
        for polls in [0, 1] {
            if slot.arm() {
                ends.extend(slot.wait(Duration::from_nanos(polls), || true));
            }
        }
        ends.extend(producers.into_iter().filter_map(|p| p.join().unwrap()));
        ends.sort_unstable();
        assert_eq!(ends, [1, 2]);
    });
}

/// Where a value put into a lane ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Taken(u32),
    Drained(u32),
    Busy(u32),
    Refused(u32),
}

impl End {
    fn value(self) -> u32 {
        match self {
            End::Taken(v) | End::Drained(v) | End::Busy(v) | End::Refused(v) => v,
        }
    }
}

/// Two pushers, a taker and a closer: every value is taken, drained by close, or handed
/// back (busy or closed) to the pusher that put it, exactly one of these.
#[test]
fn lane_put_take_close() {
    model("lane, two pushers, taker, close", 3, || {
        let lane = Arc::new(Lane::new());
        let pushers: Vec<_> = [1u32, 2]
            .into_iter()
            .map(|v| {
                let lane = Arc::clone(&lane);
                thread::spawn(move || match lane.put(v) {
                    Ok(()) => None,
                    Err(PutError::Busy(back)) => {
                        assert_eq!(back, v, "got back another pusher's value");
                        Some(End::Busy(back))
                    }
                    Err(PutError::Closed(back)) => {
                        assert_eq!(back, v, "got back another pusher's value");
                        Some(End::Refused(back))
                    }
                })
            })
            .collect();
        let taker = {
            let lane = Arc::clone(&lane);
            thread::spawn(move || lane.take().map(End::Taken))
        };
        let drained = lane.close().map(End::Drained);
        let mut ends: Vec<End> = pushers
            .into_iter()
            .filter_map(|p| p.join().unwrap())
            .collect();
        ends.extend(taker.join().unwrap());
        ends.extend(drained);
        let mut values: Vec<u32> = ends.iter().map(|e| e.value()).collect();
        values.sort_unstable();
        assert_eq!(values, [1, 2], "{ends:?}");
        // Closed for good.
        assert_eq!(lane.put(3), Err(PutError::Closed(3)));
        assert_eq!(lane.take(), None);
        assert_eq!(lane.close(), None);
    });
}

/// One pusher and one taker racing close, so that close lands during the write and
/// during the take.
#[test]
fn lane_close_during_write_and_take() {
    model("lane, pusher, taker, close", 3, || {
        let lane = Arc::new(Lane::new());
        let pusher = {
            let lane = Arc::clone(&lane);
            thread::spawn(move || match lane.put(1u32) {
                Ok(()) => None,
                Err(PutError::Closed(back)) => Some(back),
                Err(PutError::Busy(_)) => panic!("nothing else was put"),
            })
        };
        let taker = {
            let lane = Arc::clone(&lane);
            thread::spawn(move || lane.take())
        };
        let drained = lane.close();
        let refused = pusher.join().unwrap();
        let taken = taker.join().unwrap();
        let ends = [taken, drained, refused];
        assert_eq!(
            ends.iter().flatten().collect::<Vec<_>>(),
            [&1],
            "taken, drained, refused: {ends:?}"
        );
    });
    assert!(
        reached::count(Path::LaneClosedWhileWriting) > 0,
        "close during a write was not explored"
    );
    assert!(
        reached::count(Path::LaneClosedWhileTaking) > 0,
        "close during a take was not explored"
    );
}

/// One thread per value, pushing it: each gives back its value if the mailbox refused it.
fn spawn_pushers(
    mailbox: &Arc<Mailbox<u32>>,
    values: [u32; 2],
) -> Vec<thread::JoinHandle<Option<u32>>> {
    values
        .into_iter()
        .map(|v| {
            let mailbox = Arc::clone(mailbox);
            thread::spawn(move || mailbox.push(v).err().map(|Closed| v))
        })
        .collect()
}

/// Two pushers against a consumer that pops once (spinning, then parked) and then
/// closes: every value is popped, drained by close or refused to its pusher, exactly
/// once, and the consumer is always woken (a lost wake-up leaves it parked for ever,
/// which loom reports as a deadlock).
#[test]
fn mailbox_push_pop_close() {
    model("mailbox, two pushers, pop, close", 3, || {
        let mailbox = Arc::new(Mailbox::new());
        mailbox.bind_executor();
        let pushers = spawn_pushers(&mailbox, [1, 2]);
        let popped = mailbox.pop();
        let drained = mailbox.close();
        let refused: Vec<u32> = pushers
            .into_iter()
            .filter_map(|p| p.join().unwrap())
            .collect();
        let mut values: Vec<u32> = std::iter::once(popped)
            .chain(drained.iter().copied())
            .chain(refused.iter().copied())
            .collect();
        values.sort_unstable();
        assert_eq!(
            values,
            [1, 2],
            "popped {popped}, drained {drained:?}, refused {refused:?}"
        );
        assert_eq!(mailbox.push(3), Err(Closed));
    });
    assert!(
        reached::count(Path::MailboxParked) > 0,
        "the consumer never parked"
    );
}

/// Two pushers, a consumer that pops both values: through the lane and the queue, and
/// woken each time it parks.
#[test]
fn mailbox_pop_both_values() {
    model("mailbox, two pushers, two pops", 3, || {
        let mailbox = Arc::new(Mailbox::new());
        mailbox.bind_executor();
        let pushers = spawn_pushers(&mailbox, [1, 2]);
        let mut popped = [mailbox.pop(), mailbox.pop()];
        for p in pushers {
            assert_eq!(p.join().unwrap(), None, "nothing refused before close");
        }
        popped.sort_unstable();
        assert_eq!(popped, [1, 2]);
        assert_eq!(mailbox.close(), Vec::<u32>::new());
    });
}

/// A value pushed while the consumer binds itself (as when an instance is stopped while
/// its executor thread starts): the consumer still gets it, parked or not.
#[test]
fn mailbox_push_races_bind() {
    model("mailbox, push racing bind", 3, || {
        let mailbox = Arc::new(Mailbox::new());
        let pusher = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || mailbox.push(1u32))
        };
        mailbox.bind_executor();
        assert_eq!(mailbox.pop(), 1);
        assert_eq!(pusher.join().unwrap(), Ok(()));
    });
}

/// As above, with the racing push going to the queue (the lane holds an earlier value).
#[test]
fn mailbox_queued_push_races_bind() {
    model("mailbox, queued push racing bind", 3, || {
        let mailbox = Arc::new(Mailbox::new());
        assert_eq!(mailbox.push(0u32), Ok(()));
        let pusher = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || mailbox.push(1))
        };
        mailbox.bind_executor();
        assert_eq!(mailbox.pop(), 0);
        assert_eq!(mailbox.pop(), 1);
        assert_eq!(pusher.join().unwrap(), Ok(()));
    });
}
