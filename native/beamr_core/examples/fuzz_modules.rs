//! Modules for `make fuzz` (test/hb_beamr_fuzz_run.erl): writes `<seed>.wasm` for every
//! seed of a range into a directory. The same seed always gives the same bytes.
//!
//! Three seeds in four are `wasm-smith` modules with every feature wasmer accepts
//! (memory64, multi-memory, several tables, bulk memory, reference types, exceptions,
//! threads and atomics, SIMD), start functions, deep nesting and wasm-smith's own limits
//! (memories and tables without a maximum, initial sizes up to what the index type allows).
//! The fourth is a hostile module assembled from the shapes wasm-smith rarely reaches by
//! chance: `table.grow`/`memory.grow` by huge deltas, atomic waits, bulk operations on large
//! lengths in loops, nesting thousands deep, a start function that loops, big initial sizes.
//! The hostile modules export `hostile_*` functions whose constants come from the seed and
//! whose parameters the driver fills with boundary values.
//!
//! usage: fuzz_modules DIR FIRST_SEED COUNT

use std::fmt::Write;

use arbitrary::Unstructured;
use wasm_smith::Config;

// The generated-module tests' configuration: an example cannot import the library's
// `cfg(test)` modules, so it compiles the same file as a module of its own.
#[path = "../src/prepare/tests/smith_config.rs"]
mod smith_config;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: fuzz_modules DIR FIRST_SEED COUNT";
    let dir = std::path::PathBuf::from(args.next().expect(usage));
    let first: u64 = args.next().expect(usage).parse().expect(usage);
    let count: u64 = args.next().expect(usage).parse().expect(usage);
    std::fs::create_dir_all(&dir).expect("cannot create the output directory");
    for seed in first..first + count {
        let wasm = module(seed);
        std::fs::write(dir.join(format!("{seed}.wasm")), wasm).expect("cannot write a module");
    }
}

fn module(seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03);
    if seed % 4 == 3 {
        return wat::parse_str(hostile(&mut rng)).expect("a hostile template does not assemble");
    }
    // wasm-smith gives up on some inputs (too few bytes for its choices): retry with others.
    loop {
        let len = 1024 + rng.below(32 * 1024) as usize;
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if let Ok(module) = wasm_smith::Module::new(config(&mut rng), &mut Unstructured::new(&data))
        {
            return module.to_bytes();
        }
    }
}

/// Everything wasmer accepts on, the rest off; sizes from small to wasm-smith's maximum.
fn config(rng: &mut Rng) -> Config {
    let mut config = Config {
        // Half of the time: wasm-smith then often gives tables and globals exnref, which
        // hb_beamr refuses (wasmer cannot compile them), so fewer of those modules run.
        exceptions_enabled: rng.below(2) == 0,
        allow_start_export: true,
        max_memories: 1 + rng.below(4) as usize,
        max_tables: 1 + rng.below(4) as usize,
        max_nesting_depth: [10, 50, 200][rng.below(3) as usize],
        min_funcs: 2,
        max_funcs: 20,
        max_instructions: [50, 200, 1000][rng.below(3) as usize],
        // Function imports only: the driver answers those; it cannot give memories,
        // tables or globals, so a module importing one could not start.
        available_imports: Some(
            wat::parse_str(AVAILABLE_IMPORTS).expect("the import list assembles"),
        ),
        generate_custom_sections: rng.below(8) == 0,
        ..smith_config::wasmer_features()
    };
    // Half of the modules keep sizes that run; the others get wasm-smith's limits.
    if rng.below(2) == 0 {
        smith_config::keep_runnable(&mut config, 10_000);
    }
    config
}

const AVAILABLE_IMPORTS: &str = r#"(module
  (import "env" "i_i" (func (param i32) (result i32)))
  (import "env" "v_v" (func))
  (import "env" "ijfd_j" (func (param i32 i64 f32 f64) (result i64)))
  (import "env" "j_ii" (func (param i64) (result i32 i32)))
  (import "env" "v128" (func (param v128) (result v128)))
  (import "env" "ref" (func (param externref funcref) (result externref)))
  (import "env" "invoke_vi" (func (param i32 i32)))
  (import "env" "invoke_iii" (func (param i32 i32 i32) (result i32)))
  (import "env" "invoke_jij" (func (param i32 i32 i32 i32) (result i32)))
  (import "env" "__cxa_throw" (func (param i32 i32 i32)))
  (import "env" "__cxa_rethrow" (func))
  (import "env" "__resumeException" (func (param i32)))
  (import "env" "__cxa_find_matching_catch_3" (func (param i32) (result i32)))
  (import "env" "__cxa_begin_catch" (func (param i32) (result i32)))
  (import "env" "__cxa_end_catch" (func))
  (import "env" "__cxa_allocate_exception" (func (param i32) (result i32)))
  (import "env" "__cxa_decrement_exception_refcount" (func (param i32)))
  (import "env" "_emscripten_throw_longjmp" (func))
  (import "env" "getTempRet0" (func (result i32))))"#;

/// Deltas and lengths that are 0, small, at a power-of-two edge or near the top of u32.
const HUGE: [u32; 6] = [
    0xFFFF_FFFA,
    0x7FFF_FFFF,
    0x1000_0000,
    0x0100_0000,
    65_536,
    1,
];

fn hostile(rng: &mut Rng) -> String {
    let mut wat = String::from("(module\n");
    let table_min = [0u32, 1, 1_000, 1 << 20][rng.below(4) as usize];
    let table_max = match rng.below(3) {
        0 => format!(" {}", table_min + rng.below(1_000) as u32),
        _ => String::new(),
    };
    let reftype = ["funcref", "externref"][rng.below(2) as usize];
    let pages = [1u32, 16, 256, 16_384][rng.below(4) as usize];
    let shared = rng.below(3) == 0;
    let memory = if shared {
        format!(
            "(memory {pages} {} shared)",
            pages + rng.below(1_000) as u32
        )
    } else if rng.below(4) == 0 {
        format!("(memory i64 {pages})")
    } else {
        format!("(memory {pages})")
    };
    let addr = if memory.contains("i64") { "i64" } else { "i32" };
    let _ = writeln!(
        wat,
        "  (import \"env\" \"host\" (func $host (param i32) (result i32)))"
    );
    // Emscripten's runtime (see `emscripten`), answered natively.
    let _ = writeln!(
        wat,
        "  (import \"env\" \"invoke_vi\" (func $invoke_vi (param i32 i32)))\n  \
         (import \"env\" \"__cxa_throw\" (func $cxa_throw (param i32 i32 i32)))\n  \
         (import \"env\" \"__cxa_begin_catch\" (func $begin_catch (param i32) (result i32)))\n  \
         (import \"env\" \"__cxa_end_catch\" (func $end_catch))\n  \
         (import \"env\" \"__cxa_find_matching_catch_3\" (func $find_matching_catch (param i32) \
             (result i32)))\n  \
         (import \"env\" \"_emscripten_throw_longjmp\" (func $throw_longjmp))"
    );
    let _ = writeln!(wat, "  (table $t {table_min}{table_max} {reftype})");
    let _ = writeln!(wat, "  {memory}");
    for extra in 0..rng.below(3) {
        let size = [1u32 << 16, 1 << 27][rng.below(2) as usize];
        let _ = writeln!(wat, "  (table $extra{extra} {size} funcref)");
    }
    let delta = HUGE[rng.below(HUGE.len() as u64) as usize];
    let null = format!(
        "(ref.null {})",
        if reftype == "funcref" {
            "func"
        } else {
            "extern"
        }
    );
    let _ = writeln!(
        wat,
        "  (func (export \"hostile_table_grow\") (param i32) (result i32)\n    \
           (drop (table.grow $t {null} (i32.const {delta})))\n    (table.grow $t {null} \
               (local.get 0)))"
    );
    let mem_delta = [1u64, 65_535, 65_536, 0xFFFF_FFFF, 1 << 40][rng.below(5) as usize];
    let grow_arg = if addr == "i64" {
        format!("(i64.const {mem_delta})")
    } else {
        format!("(i32.const {})", mem_delta as u32)
    };
    let _ = writeln!(
        wat,
        "  (func (export \"hostile_memory_grow\") (result i32)\n    (drop \
            (memory.grow {grow_arg})) (i32.const 0))"
    );
    let fill_len = [65_536u32, 0x0100_0000, 0xFFFF_FFFF][rng.below(3) as usize];
    let _ = writeln!(
        wat,
        "  (func (export \"hostile_bulk\") (param $n i32) (result i32)\n    \
           (loop $l\n      (memory.fill ({addr}.const 0) (i32.const 0) ({addr}.mul (memory.size) \
               ({addr}.const 65536)))\n      \
           (memory.copy ({addr}.const 1) ({addr}.const 0) ({addr}.const {fill_len}))\n      \
           (table.fill $t (i32.const 0) {null} (table.size $t))\n      \
           (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))\n    (i32.const 0))"
    );
    if shared {
        let timeout = [-1i64, 0, 1_000_000, i64::MAX][rng.below(4) as usize];
        let _ = writeln!(
            wat,
            "  (func (export \"hostile_wait\") (param i32) (result i32)\n    \
               (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const {timeout})))\n  \
             (func (export \"hostile_notify\") (param i32) (result i32)\n    \
               (memory.atomic.notify (i32.const 0) (local.get 0)))"
        );
    }
    let depth = [100u32, 2_000, 20_000][rng.below(3) as usize];
    let _ = write!(
        wat,
        "  (func (export \"hostile_deep\") (param i32) (result i32)\n    "
    );
    for _ in 0..depth {
        wat.push_str("(block ");
    }
    wat.push_str("(drop (call $host (local.get 0)))");
    for _ in 0..depth {
        wat.push(')');
    }
    let _ = writeln!(wat, "\n    (local.get 0))");
    let _ = writeln!(
        wat,
        "  (func $recurse (export \"hostile_recurse\") (param i32) (result i32)\n    \
           (call $recurse (i32.add (local.get 0) (i32.const 1))))\n  \
         (func (export \"hostile_loop\") (param i32) (result i32)\n    \
           (loop $l (br_if $l (i32.ne (call $host (local.get 0)) (i32.const 12345)))) \
               (i32.const 0))"
    );
    emscripten(&mut wat, rng, reftype == "funcref" && table_min > 0, addr);
    match rng.below(4) {
        0 => wat.push_str("  (func $start (loop $forever (br $forever)))\n  (start $start)\n"),
        1 => {
            let _ = writeln!(
                wat,
                "  (func $start (drop (table.grow $t {null} \
                (i32.const {delta}))))\n  (start $start)"
            );
        }
        _ => {}
    }
    wat.push_str(")\n");
    wat
}

/// Emscripten's JavaScript-style runtime, misused: throws at random addresses through
/// `invoke_*` (when table 0 can hold the thrower), catch blocks entered and never left,
/// uncaught throws whose message reads type infos from random bytes, longjmps, and a
/// `setThrew` that may trap.
fn emscripten(wat: &mut String, rng: &mut Rng, funcref_table: bool, addr: &str) {
    let set_threw = if rng.below(4) == 0 {
        "unreachable"
    } else {
        "nop"
    };
    let _ = writeln!(
        wat,
        "  (func (export \"setThrew\") (param i32 i32) {set_threw})"
    );
    let _ = writeln!(
        wat,
        "  (func $thrower (param i32)\n    \
           (if (i32.and (local.get 0) (i32.const 1))\n      \
             (then (call $throw_longjmp))\n      \
             (else (call $cxa_throw (local.get 0) (i32.const {}) (i32.const 0)))))",
        rng.below(1 << 16)
    );
    if funcref_table {
        let _ = writeln!(wat, "  (elem (table $t) (i32.const 0) func $thrower)");
    }
    let bytes: String = (0..64)
        .map(|_| format!("\\{:02x}", rng.below(256)))
        .collect();
    let _ = writeln!(
        wat,
        "  (data (memory 0) ({addr}.const {}) \"{bytes}\")",
        rng.below(1024) * 8
    );
    let _ = writeln!(
        wat,
        "  (func (export \"hostile_throw_storm\") (param $n i32) (result i32)\n    \
           (loop $l\n      \
             (call $invoke_vi (i32.const 0) (local.get $n))\n      \
             (drop (call $begin_catch (call $find_matching_catch (local.get $n))))\n      \
             (call $end_catch)\n      \
             (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))\n    \
                 (i32.const 0))\n  \
         (func (export \"hostile_catch_leak\") (param $n i32) (result i32)\n    \
           (loop $l\n      \
             (drop (call $begin_catch (i32.const {})))\n      \
             (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))\n    \
                 (i32.const 0))\n  \
         (func (export \"hostile_uncaught\") (param i32) (result i32)\n    \
           (call $thrower (local.get 0)) (i32.const 0))",
        rng.below(1 << 16) * 8
    );
}

/// splitmix64: the generator's only source of choices, so a seed always gives one module.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
