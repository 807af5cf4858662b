//! The on-CPU time of the NIFs that wait for an executor (calls, import replies, memory
//! operations), for `make bench-load`.
//!
//! A NIF's wall time on a loaded machine includes the OS running other threads on the
//! scheduler's core, which no code can bound: a loop of trivial BIFs sees the same gaps.
//! What the NIF itself controls is the time it keeps the core, so that is what is counted
//! here, and the NIFs that took over 100 µs by the wall clock are sorted by why: the OS
//! preempted the thread (an involuntary context switch), the thread blocked (a voluntary
//! one; the waiting NIFs never should), or neither, which leaves time the kernel or the
//! hypervisor took without switching threads. Off unless a benchmark switches it on:
//! reading a thread's CPU clock and its context switches are system calls.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use beamr_core::handoff::spin::Spin;

use crate::instance::HANDOVER_SPIN;

const LONG_NS: u64 = 100_000;

static ENABLED: AtomicBool = AtomicBool::new(false);
static TIMED: AtomicU64 = AtomicU64::new(0);
static MAX_CPU_NS: AtomicU64 = AtomicU64::new(0);
static LONG_ON_CPU: AtomicU64 = AtomicU64::new(0);
static LONG_BY_WALL: AtomicU64 = AtomicU64::new(0);
static PREEMPTED: AtomicU64 = AtomicU64::new(0);
static BLOCKED: AtomicU64 = AtomicU64::new(0);

/// What was counted since the last `switch`.
#[derive(rustler::NifMap, Debug, PartialEq)]
pub struct Totals {
    /// NIFs timed.
    timed: u64,
    /// The longest time one NIF kept its core.
    max_cpu_ns: u64,
    /// NIFs that kept their core over 100 µs.
    over_100us_cpu: u64,
    /// NIFs that took over 100 µs by the wall clock, and of those, the ones the OS
    /// preempted and the ones that blocked.
    over_100us_wall: u64,
    preempted: u64,
    blocked: u64,
}

/// Turns the counting on or off, resetting the totals; returns those counted until now.
pub fn switch(on: bool) -> Totals {
    ENABLED.store(on, Ordering::Relaxed);
    let take = |total: &AtomicU64| total.swap(0, Ordering::Relaxed);
    Totals {
        timed: take(&TIMED),
        max_cpu_ns: take(&MAX_CPU_NS),
        over_100us_cpu: take(&LONG_ON_CPU),
        over_100us_wall: take(&LONG_BY_WALL),
        preempted: take(&PREEMPTED),
        blocked: take(&BLOCKED),
    }
}

/// The control: a NIF that only spins for `ns` nanoseconds (at most as long as a NIF
/// waits for an executor), timed as the waiting NIFs are. It can neither wait for anything
/// nor block, so whatever the totals show for it under a load is what that load does to
/// any NIF of that length.
pub fn spin_for_control(ns: u64) {
    let _timed = Timed::start();
    let mut spin = Spin::pure(Duration::from_nanos(ns).min(HANDOVER_SPIN));
    while spin.step() {}
}

/// Times the NIF until it is dropped (at the end of the NIF).
pub struct Timed(Option<Start>);

struct Start {
    cpu_ns: u64,
    wall: Instant,
    switches: Switches,
}

impl Timed {
    pub fn start() -> Timed {
        Timed(ENABLED.load(Ordering::Relaxed).then(|| Start {
            switches: Switches::now(),
            wall: Instant::now(),
            cpu_ns: thread_cpu_ns(),
        }))
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        let Some(start) = &self.0 else { return };
        let on_cpu = thread_cpu_ns().saturating_sub(start.cpu_ns);
        let wall = start.wall.elapsed().as_nanos() as u64;
        TIMED.fetch_add(1, Ordering::Relaxed);
        MAX_CPU_NS.fetch_max(on_cpu, Ordering::Relaxed);
        if on_cpu > LONG_NS {
            LONG_ON_CPU.fetch_add(1, Ordering::Relaxed);
        }
        if wall > LONG_NS {
            LONG_BY_WALL.fetch_add(1, Ordering::Relaxed);
            let now = Switches::now();
            if now.involuntary > start.switches.involuntary {
                PREEMPTED.fetch_add(1, Ordering::Relaxed);
            }
            if now.voluntary > start.switches.voluntary {
                BLOCKED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The calling thread's context switches so far.
struct Switches {
    voluntary: i64,
    involuntary: i64,
}

impl Switches {
    fn now() -> Switches {
        // SAFETY: an all-zero rusage is valid, and getrusage only writes into it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above; RUSAGE_THREAD exists on every Linux.
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
        Switches {
            voluntary: usage.ru_nvcsw,
            involuntary: usage.ru_nivcsw,
        }
    }
}

fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write; this clock exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
