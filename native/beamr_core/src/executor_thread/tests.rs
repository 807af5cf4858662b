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

/// Waits until no mapping has exactly these bounds. Tests running alongside may map
/// memory at the same place, hence exact bounds, and a stack size no other test uses.
fn wait_unmapped(bounds: (usize, usize)) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while mappings()
        .iter()
        .any(|&(start, end, _)| (start, end) == bounds)
    {
        assert!(Instant::now() < deadline, "the stack is still mapped");
        std::thread::sleep(Duration::from_millis(10));
    }
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
fn stacks_are_unmapped_once_the_thread_has_exited() {
    let seen = spawn_and_see((1 << 20) + 5 * 4096);
    wait_unmapped(mapping_of(&seen.maps, seen.sp));
}

#[test]
fn a_panicking_thread_is_reaped_too() {
    let (tell, told) = channel();
    spawn(c"beamr_test", (1 << 20) + 9 * 4096, move || {
        tell.send(mapping_of(&mappings(), stack_address())).unwrap();
        panic!("on purpose");
    })
    .unwrap();
    wait_unmapped(told.recv_timeout(Duration::from_secs(30)).unwrap());
}
