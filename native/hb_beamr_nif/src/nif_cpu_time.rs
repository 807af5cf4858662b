//! The on-CPU time of the NIFs that wait for an executor (calls, import replies, memory
//! operations), for `make bench-load`.
//!
//! A NIF's wall time on a loaded machine includes the OS running other threads on the
//! scheduler's core, which no code can bound: a loop of trivial BIFs sees the same gaps.
//! What the NIF itself controls is the time it keeps the core, so that is what is counted
//! here. Off unless a benchmark switches it on: reading a thread's CPU clock is a system
//! call.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicU64 = AtomicU64::new(0);
static MAX_NS: AtomicU64 = AtomicU64::new(0);
static OVER_100_US: AtomicU64 = AtomicU64::new(0);

/// What was counted since the last `switch`: NIFs timed, the longest on-CPU time (ns), and
/// how many NIFs were on the CPU for more than 100 µs.
pub type Totals = (u64, u64, u64);

/// Turns the counting on or off, resetting the totals; returns those counted until now.
pub fn switch(on: bool) -> Totals {
    ENABLED.store(on, Ordering::Relaxed);
    (COUNT.swap(0, Ordering::Relaxed), MAX_NS.swap(0, Ordering::Relaxed), OVER_100_US.swap(0, Ordering::Relaxed))
}

/// Times the NIF until it is dropped (at the end of the NIF).
pub struct Timed(Option<u64>);

impl Timed {
    pub fn start() -> Timed {
        Timed(ENABLED.load(Ordering::Relaxed).then(thread_cpu_ns))
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        if let Some(started) = self.0 {
            let on_cpu = thread_cpu_ns().saturating_sub(started);
            COUNT.fetch_add(1, Ordering::Relaxed);
            MAX_NS.fetch_max(on_cpu, Ordering::Relaxed);
            if on_cpu > 100_000 {
                OVER_100_US.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec to write; this clock exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
