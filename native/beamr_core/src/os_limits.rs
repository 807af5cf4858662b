//! The OS's limits on mappings and address space, shared by every instance and by the
//! Erlang VM.
//!
//! Each live instance holds a few mappings (its wasm memory, its executor and wasm stacks
//! with their guard pages) and their address space. When the kernel refuses new mappings
//! (`vm.max_map_count`) or address space (`ulimit -v`), not only instances fail: the VM's
//! own allocators do, and the VM aborts ("eheap_alloc: Cannot allocate"). So an instance is
//! refused, before and after it is made, while too little would be left for the VM.
//! Counting the mappings (a read of /proc/self/maps) costs milliseconds near the limit (20
//! ms at 50,000 mappings), so it is only done once the live instances alone could use half
//! of it, and then at most once a second ([`Counted`]) unless the estimate comes within 64
//! instances of the limit; the address space in use is one short read (/proc/self/statm).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;
use parking_lot::Mutex;

/// What one live instance maps at most in the common case (memory 0, executor and wasm
/// stacks, guards), with room to spare for a second memory or a nested call's stack.
pub const MAPPINGS_PER_INSTANCE: usize = 8;

/// What a wasm stack a nested call takes maps: the stack and its guard page.
pub const MAPPINGS_PER_STACK: usize = 2;
/// The address space a wasm stack takes (the executor's `WASM_STACK_SIZE`).
const STACK_BYTES: u64 = 16 << 20;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static NESTED: AtomicUsize = AtomicUsize::new(0);

/// Counts an executor thread as a live instance while it exists.
pub struct LiveInstance(());

impl LiveInstance {
    pub fn count() -> LiveInstance {
        LIVE.fetch_add(1, Ordering::Relaxed);
        LiveInstance(())
    }
}

impl Drop for LiveInstance {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a nested call's wasm stack while the call runs.
pub struct NestedStack(());

impl NestedStack {
    /// `None` when one more would leave the VM too little: nested calls (each on a wasm
    /// stack of its own) are refused once the instances' and nested calls' mappings could
    /// reach half of the mapping limit, and when the address space runs short. Nesting is
    /// rare and shallow in real modules (Lua stops at 200 C levels); a hundred instances
    /// nesting `invoke_*` a thousand deep would otherwise take every mapping there is.
    pub fn take() -> Option<NestedStack> {
        let nested = NESTED.fetch_add(1, Ordering::Relaxed) + 1;
        let stack = NestedStack(());
        let estimate =
            nested * MAPPINGS_PER_STACK + LIVE.load(Ordering::Relaxed) * MAPPINGS_PER_INSTANCE;
        // Address space is read only once nested stacks alone could take a quarter of the
        // limit: `invoke_*` nests on every call, and reading it costs a system call.
        let reserved = (nested as u64).saturating_mul(STACK_BYTES);
        let fits = MAX_MAP_COUNT.is_none_or(|max| estimate < max / 2)
            && ADDRESS_SPACE_LIMIT
                .is_none_or(|limit| reserved < limit / 4 || room_in_address_space());
        fits.then_some(stack)
    }
}

impl Drop for NestedStack {
    fn drop(&mut self) {
        NESTED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The kernel's limit, read once (`None` where there is no such file).
static MAX_MAP_COUNT: Lazy<Option<usize>> = Lazy::new(|| {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
});

/// The address space the VM keeps for itself under a limit: an eighth of it, at least.
const ADDRESS_SPACE_RESERVE: u64 = 256 << 20;

/// Whether the VM keeps enough mappings and address space beside the instances (and one
/// more instance's mappings): checked before an instance is made and once it is.
pub fn room_for_instance() -> bool {
    room_in_mappings() && room_in_address_space()
}

fn room_in_mappings() -> bool {
    let Some(max) = *MAX_MAP_COUNT else {
        return true;
    };
    let live = LIVE.load(Ordering::Relaxed);
    if live.saturating_mul(MAPPINGS_PER_INSTANCE) < max / 2 {
        return true;
    }
    let mut counted = COUNTED.lock();
    match counted.and_then(|c| c.estimate(live, Instant::now())) {
        Some(used) if fits(used + NEAR_THE_LIMIT, max) => true,
        _ => match mappings_in_use() {
            Some(used) => {
                *counted = Some(Counted {
                    used,
                    live,
                    at: Instant::now(),
                });
                fits(used, max)
            }
            None => true,
        },
    }
}

/// The last count of the process's mappings: how many, how many instances were live then,
/// and when. Until it is a second old, each instance live since adds
/// `MAPPINGS_PER_INSTANCE` to it (the VM's own mappings do not grow by thousands in a
/// second, and the limit leaves it an eighth).
#[derive(Clone, Copy)]
struct Counted {
    used: usize,
    live: usize,
    at: Instant,
}

static COUNTED: Mutex<Option<Counted>> = Mutex::new(None);

const RECOUNT_AFTER: Duration = Duration::from_secs(1);

/// Within this many mappings of the limit the estimate is not trusted: they are counted.
const NEAR_THE_LIMIT: usize = 64 * MAPPINGS_PER_INSTANCE;

impl Counted {
    /// The mappings in use estimated from this count, with `live` instances live at
    /// `now`; None once it is too old.
    fn estimate(&self, live: usize, now: Instant) -> Option<usize> {
        (now.saturating_duration_since(self.at) < RECOUNT_AFTER)
            .then(|| self.used + live.saturating_sub(self.live) * MAPPINGS_PER_INSTANCE)
    }
}

fn room_in_address_space() -> bool {
    let Some(limit) = *ADDRESS_SPACE_LIMIT else {
        return true;
    };
    match address_space_in_use() {
        Some(used) => used.saturating_add(ADDRESS_SPACE_RESERVE.max(limit / 8)) <= limit,
        None => true,
    }
}

/// RLIMIT_AS, when there is one, as it was when first asked for (operators set it before
/// the VM starts).
static ADDRESS_SPACE_LIMIT: Lazy<Option<u64>> = Lazy::new(address_space_limit);

fn address_space_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) };
    // rlim_t is 32 bits wide on some targets.
    #[allow(clippy::unnecessary_cast)]
    let current = limit.rlim_cur as u64;
    (got == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(current)
}

/// The process's address space now (VmSize).
fn address_space_in_use() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().next()?.parse().ok()?;
    Some(pages * 4096)
}

fn fits(used: usize, max: usize) -> bool {
    used + MAPPINGS_PER_INSTANCE + max / 8 <= max
}

/// The process's mappings now: one line of /proc/self/maps each.
fn mappings_in_use() -> Option<usize> {
    let maps = std::fs::read("/proc/self/maps").ok()?;
    Some(maps.iter().filter(|&&byte| byte == b'\n').count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_an_eighth_of_the_limit_to_the_vm() {
        assert!(fits(1000, 65530));
        assert!(fits(65530 - 65530 / 8 - MAPPINGS_PER_INSTANCE, 65530));
        assert!(!fits(65530 - 65530 / 8 - MAPPINGS_PER_INSTANCE + 1, 65530));
    }

    #[test]
    fn a_count_is_trusted_for_a_second_and_grows_with_the_instances() {
        let at = Instant::now();
        let counted = Counted {
            used: 1000,
            live: 10,
            at,
        };
        assert_eq!(counted.estimate(10, at), Some(1000));
        assert_eq!(counted.estimate(5, at), Some(1000));
        assert_eq!(
            counted.estimate(13, at + Duration::from_millis(999)),
            Some(1000 + 3 * MAPPINGS_PER_INSTANCE)
        );
        assert_eq!(counted.estimate(10, at + RECOUNT_AFTER), None);
    }

    #[test]
    fn nested_stacks_are_counted_while_held() {
        let held: Vec<NestedStack> = (0..10).map_while(|_| NestedStack::take()).collect();
        assert_eq!(held.len(), 10);
        assert!(NESTED.load(Ordering::Relaxed) >= 10);
        drop(held);
    }

    #[test]
    fn reads_the_address_space_in_use() {
        assert!(address_space_in_use().expect("/proc/self/statm") > 1 << 20);
    }

    #[test]
    fn counts_this_process_mappings() {
        let used = mappings_in_use().expect("/proc/self/maps");
        assert!(used > 10, "{used}");
        assert!(room_for_instance());
    }
}
