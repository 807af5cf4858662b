//! Which CPU each side of a hand-over was last seen on, so that neither spins on the core
//! the other needs.
//!
//! A waiter that spins on the CPU where the thread it waits for last ran keeps that
//! thread off it. Both sides land on one core easily (the kernel keeps a wakee near its
//! waker, and does so whenever no core is idle), and then each spin ends only by timing
//! out: every round trip cost two spin bounds and a message (~30-50 µs instead of ~1 µs),
//! and once there, a pair stayed there. So a spinner that finds itself on the other
//! side's CPU stops spinning there: the NIF returns at once (its answer comes as a
//! message), and the executor moves to another CPU (`move_off`), or parks when it may use
//! no other. Reading the CPU costs nanoseconds (glibc reads it from the kernel's
//! restartable-sequence area).

use crate::sync::{AtomicU32, Ordering};

/// The side is parked or has not run yet: it may be woken on any CPU.
const NOWHERE: u32 = u32::MAX;

/// The CPU a thread was last seen on.
pub struct LastCpu(AtomicU32);

impl LastCpu {
    pub fn new() -> LastCpu {
        LastCpu(AtomicU32::new(NOWHERE))
    }

    /// The calling thread is on `cpu` (from `current`).
    pub fn record(&self, cpu: u32) {
        // Only on change: the line stays shared while the thread stays put.
        if self.0.load(Ordering::Relaxed) != cpu {
            self.0.store(cpu, Ordering::Relaxed);
        }
    }

    /// The thread is about to sleep.
    pub fn forget(&self) {
        self.0.store(NOWHERE, Ordering::Relaxed);
    }

    /// Whether the thread was last seen on `cpu`: then, seen from `cpu`, it is not
    /// running now.
    pub fn is(&self, cpu: u32) -> bool {
        cpu != NOWHERE && self.0.load(Ordering::Relaxed) == cpu
    }
}

impl Default for LastCpu {
    fn default() -> Self {
        LastCpu::new()
    }
}

/// The CPU the calling thread runs on, or `NOWHERE` where that is unknown (always under
/// loom, whose threads have no CPU).
#[cfg(not(loom))]
pub fn current() -> u32 {
    // SAFETY: no arguments, no memory.
    let cpu = unsafe { libc::sched_getcpu() };
    u32::try_from(cpu).unwrap_or(NOWHERE)
}

#[cfg(loom)]
pub fn current() -> u32 {
    NOWHERE
}

/// Moves the calling thread off `cpu` at once: from now on it may run on every CPU it
/// was first allowed except `cpu` (each call starts again from that first set). False,
/// and nothing changes, when `cpu` is the only one it may use.
#[cfg(not(loom))]
pub fn move_off(cpu: u32) -> bool {
    thread_local! {
        // SAFETY (both blocks): a zeroed cpu_set_t is a valid empty set; the calls get
        // its size and a pointer to it, for the calling thread (pid 0).
        static ALLOWED: libc::cpu_set_t = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
            set
        };
    }
    ALLOWED.with(|allowed| {
        let mut set = *allowed;
        let cpu = cpu as usize;
        // SAFETY: CPU_ISSET/CPU_CLR/CPU_COUNT only read and write `set`.
        unsafe {
            if cpu >= libc::CPU_SETSIZE as usize || !libc::CPU_ISSET(cpu, &set) {
                return false;
            }
            libc::CPU_CLR(cpu, &mut set);
            libc::CPU_COUNT(&set) > 0
                && libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        }
    })
}

#[cfg(loom)]
pub fn move_off(_cpu: u32) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_moved_off_its_cpu_runs_elsewhere_or_is_told_it_cannot() {
        std::thread::spawn(|| {
            let here = current();
            assert_ne!(here, NOWHERE, "sched_getcpu works on Linux");
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            if move_off(here) {
                assert!(cpus > 1);
                for _ in 0..1000 {
                    assert_ne!(current(), here);
                    std::thread::yield_now();
                }
                // Each move starts from the first set, so the thread may go back.
                let there = current();
                assert!(move_off(there));
                assert_ne!(current(), there);
            } else {
                assert_eq!(cpus, 1);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_is_not_seen_where_it_never_was() {
        let last = LastCpu::new();
        assert!(!last.is(current()));
        assert!(!last.is(NOWHERE));
        last.record(3);
        assert!(last.is(3) && !last.is(4));
        last.forget();
        assert!(!last.is(3));
    }
}
