use super::*;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

/// The mappings of this process as (start, end, permissions).
fn mappings() -> Vec<(usize, usize, String)> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next().unwrap().split_once('-').unwrap();
            let parse = |hex| usize::from_str_radix(hex, 16).unwrap();
            (parse(start), parse(end), fields.next().unwrap().to_string())
        })
        .collect()
}

fn stack_address() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// What a thread sees of itself after running wasm: its stack pointer, its signal
/// stack and its name.
struct Seen {
    sp: usize,
    signal_stack: usize,
    name: String,
    maps: Vec<(usize, usize, String)>,
}

fn run_wasm() {
    let mut store = wasmer::Store::default();
    let wasm = wat::parse_str(r#"(module (func (export "f") (result i32) i32.const 7))"#).unwrap();
    let module = wasmer::Module::new(&store, wasm).unwrap();
    let instance = wasmer::Instance::new(&mut store, &module, &wasmer::imports! {}).unwrap();
    let f = instance.exports.get_function("f").unwrap();
    assert_eq!(f.call(&mut store, &[]).unwrap()[0], wasmer::Value::I32(7));
}

fn spawn_and_see(stack_size: usize) -> Seen {
    let (tell, seen) = channel();
    spawn(c"beamr_test", stack_size, move || {
        run_wasm();
        let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: reading this thread's signal stack into a local.
        assert_eq!(
            unsafe { libc::sigaltstack(std::ptr::null(), &mut current) },
            0
        );
        let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
        let _ = tell.send(Seen {
            sp: stack_address(),
            signal_stack: current.ss_sp as usize,
            name: name.trim_end().to_string(),
            maps: mappings(),
        });
    })
    .unwrap();
    seen.recv_timeout(Duration::from_secs(30)).unwrap()
}

/// The bounds of the mapping that holds `address`.
fn mapping_of(maps: &[(usize, usize, String)], address: usize) -> (usize, usize) {
    let &(start, end, _) = maps
        .iter()
        .find(|&&(start, end, _)| start <= address && address < end)
        .unwrap();
    (start, end)
}

/// Waits until no mapping has exactly these bounds, at most `within`. Tests running
/// alongside may map memory at the same place, hence exact bounds, and a stack size no
/// other test uses.
fn wait_unmapped(bounds: (usize, usize), within: Duration) {
    let deadline = Instant::now() + within;
    while is_mapped(bounds) {
        assert!(Instant::now() < deadline, "the stack is still mapped");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn is_mapped(bounds: (usize, usize)) -> bool {
    mappings()
        .iter()
        .any(|&(start, end, _)| (start, end) == bounds)
}

/// Waits until `condition` holds, at most 30 s.
fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Well beyond the idle timeout, for a loaded machine.
const IDLE_EXIT_WITHIN: Duration = Duration::from_secs(15);

fn thread_id() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

#[test]
fn thread_and_signal_stack_share_one_mapping_below_a_guard_page() {
    let seen = spawn_and_see(1 << 20);
    assert_eq!(seen.name, "beamr_test");
    let index = seen
        .maps
        .iter()
        .position(|&(start, end, _)| start <= seen.sp && seen.sp < end)
        .unwrap();
    let (start, end, perms) = &seen.maps[index];
    assert!(perms.starts_with("rw"), "{perms}");
    // wasmer kept the signal stack installed before it ran, in the same mapping.
    assert!(*start <= seen.signal_stack && seen.signal_stack + SIGNAL_STACK_SIZE <= *end);
    assert_eq!(seen.signal_stack, *start);
    let (guard_start, guard_end, guard_perms) = &seen.maps[index - 1];
    assert_eq!(guard_end, start);
    assert_eq!(guard_end - guard_start, 4096);
    assert_eq!(guard_perms, "---p");
}

#[test]
fn an_idle_thread_exits_after_the_timeout_and_its_stacks_are_unmapped() {
    let stack_size = (1 << 20) + 5 * 4096;
    let seen = spawn_and_see(stack_size);
    let bounds = mapping_of(&seen.maps, seen.sp);
    wait_for("the thread goes idle", || {
        pool::waiting(Some(stack_size)) == 1
    });
    let idle_since = Instant::now();
    wait_unmapped(bounds, IDLE_EXIT_WITHIN);
    assert!(idle_since.elapsed() >= pool::IDLE_TIMEOUT - Duration::from_millis(100));
    assert_eq!(pool::waiting(Some(stack_size)), 0);
}

#[test]
fn the_next_spawn_runs_on_the_idle_thread_under_its_own_name() {
    let stack_size = (1 << 20) + 7 * 4096;
    let (tell, told) = channel();
    let first = tell.clone();
    spawn(c"beamr_first", stack_size, move || {
        run_wasm();
        let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
        first.send((thread_id(), stack_address(), name)).unwrap();
    })
    .unwrap();
    let (first_thread, first_sp, first_name) = told.recv_timeout(Duration::from_secs(30)).unwrap();
    wait_for("the thread goes idle", || {
        pool::waiting(Some(stack_size)) == 1
    });
    let comm = format!("/proc/self/task/{first_thread}/comm");
    assert_eq!(
        std::fs::read_to_string(&comm).unwrap().trim_end(),
        "hb_beamr_idle"
    );
    spawn(c"beamr_second", stack_size, move || {
        // wasmer's thread-locals (its wasm stack, signal handling) serve a second Store.
        run_wasm();
        let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
        tell.send((thread_id(), stack_address(), name)).unwrap();
    })
    .unwrap();
    let (second_thread, second_sp, second_name) =
        told.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(first_name.trim_end(), "beamr_first");
    assert_eq!(second_name.trim_end(), "beamr_second");
    assert_eq!(first_thread, second_thread);
    // The closure starts at the same depth of the same stack.
    assert_eq!(first_sp, second_sp);
}

#[test]
fn released_idle_threads_exit_at_once() {
    let stack_size = (1 << 20) + 15 * 4096;
    let seen = spawn_and_see(stack_size);
    wait_for("the thread goes idle", || {
        pool::waiting(Some(stack_size)) == 1
    });
    // Only this size: other tests' threads wait in the same pool.
    pool::release(Some(stack_size));
    assert_eq!(pool::waiting(Some(stack_size)), 0);
    wait_unmapped(mapping_of(&seen.maps, seen.sp), pool::IDLE_TIMEOUT / 2);
}

/// Threads of a stack size no other test uses, all alive at once, then all done: at most
/// `MAX_IDLE` wait, the others exit at once and are unmapped.
#[test]
fn no_more_than_max_idle_threads_wait() {
    let stack_size = (256 << 10) + 3 * 4096;
    let threads = pool::MAX_IDLE + 8;
    let all_started = std::sync::Arc::new(std::sync::Barrier::new(threads + 1));
    let (tell, told) = channel();
    for _ in 0..threads {
        let (all_started, tell) = (all_started.clone(), tell.clone());
        spawn(c"beamr_test", stack_size, move || {
            tell.send(mapping_of(&mappings(), stack_address())).unwrap();
            all_started.wait();
        })
        .unwrap();
    }
    let stacks: Vec<(usize, usize)> = (0..threads)
        .map(|_| told.recv_timeout(Duration::from_secs(30)).unwrap())
        .collect();
    all_started.wait();
    // Every thread either waits or has been unmapped (none times out this soon).
    wait_for("every thread waits or is gone", || {
        let maps = mappings();
        let gone = stacks
            .iter()
            .filter(|&&bounds| !maps.iter().any(|&(s, e, _)| (s, e) == bounds))
            .count();
        gone + pool::waiting(Some(stack_size)) == threads
    });
    assert!(pool::waiting(None) <= pool::MAX_IDLE);
    assert!(pool::waiting(Some(stack_size)) <= pool::MAX_IDLE);
    for bounds in stacks {
        wait_unmapped(bounds, IDLE_EXIT_WITHIN);
    }
}

#[test]
fn a_panicking_thread_exits_at_once_and_is_reaped() {
    let stack_size = (1 << 20) + 9 * 4096;
    let (tell, told) = channel();
    let first = tell.clone();
    spawn(c"beamr_test", stack_size, move || {
        first
            .send((thread_id(), mapping_of(&mappings(), stack_address())))
            .unwrap();
        panic!("on purpose");
    })
    .unwrap();
    let (panicked, bounds) = told.recv_timeout(Duration::from_secs(30)).unwrap();
    // Long before an idle thread would exit.
    wait_unmapped(bounds, pool::IDLE_TIMEOUT / 2);
    assert_eq!(pool::waiting(Some(stack_size)), 0);
    // The next spawn of that size gets a new thread, which works.
    spawn(c"beamr_test", stack_size, move || {
        tell.send((thread_id(), (0, 0))).unwrap();
    })
    .unwrap();
    let (next, _) = told.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_ne!(next, panicked);
}

/// An idle thread keeps only the top of its stack resident.
#[test]
fn an_idle_thread_gives_its_deep_stack_pages_back() {
    let stack_size = (1 << 20) + 11 * 4096;
    let (tell, told) = channel();
    spawn(c"beamr_test", stack_size, move || {
        let bounds = mapping_of(&mappings(), stack_address());
        // Touch 512 KiB of stack below this frame.
        let mut deep = [0u8; 512 << 10];
        std::hint::black_box(&mut deep).fill(1);
        tell.send((bounds, resident(bounds))).unwrap();
    })
    .unwrap();
    let (bounds, busy) = told.recv_timeout(Duration::from_secs(30)).unwrap();
    wait_for("the thread goes idle", || {
        pool::waiting(Some(stack_size)) == 1
    });
    let idle = resident(bounds);
    assert!(busy >= 512 << 10, "{busy}");
    assert!(
        idle <= pool::KEEP + (64 << 10),
        "{idle} resident while idle"
    );
}

/// A closure that narrowed its thread's CPUs does not narrow the next closure's.
#[test]
fn the_next_closure_may_use_every_cpu_the_thread_first_could() {
    let stack_size = (1 << 20) + 13 * 4096;
    let (tell, told) = channel();
    let first = tell.clone();
    spawn(c"beamr_test", stack_size, move || {
        let before = cpus();
        // SAFETY: a set with one CPU this thread may use, for this thread.
        unsafe {
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(before[0], &mut one);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
        }
        first.send((before, cpus())).unwrap();
    })
    .unwrap();
    let (before, narrowed) = told.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(narrowed, before[..1]);
    wait_for("the thread goes idle", || {
        pool::waiting(Some(stack_size)) == 1
    });
    spawn(c"beamr_test", stack_size, move || {
        tell.send((cpus(), Vec::new())).unwrap();
    })
    .unwrap();
    let (after, _) = told.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(after, before);
}

/// The CPUs the calling thread may use.
fn cpus() -> Vec<usize> {
    // SAFETY: a zeroed set filled in for this thread; CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Resident bytes of the mapping with these bounds (mincore).
fn resident(bounds: (usize, usize)) -> usize {
    let pages = (bounds.1 - bounds.0) / 4096;
    let mut present = vec![0u8; pages];
    // SAFETY: a mapping of this process, and a vector of one byte per page.
    let ok = unsafe {
        libc::mincore(
            bounds.0 as *mut libc::c_void,
            bounds.1 - bounds.0,
            present.as_mut_ptr(),
        )
    };
    assert_eq!(ok, 0);
    present.iter().filter(|&&p| p & 1 == 1).count() * 4096
}
