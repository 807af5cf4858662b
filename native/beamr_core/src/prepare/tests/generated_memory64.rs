//! Differential tests of the memory64 lowering: generated programs of memory accesses,
//! each built twice, over 32-bit memories and over 64-bit ones (its *twin*).
//!
//! A program is a list of operations on two memories, one exported function each: loads and
//! stores of every width (integer, float, SIMD, lanes, atomics, read-modify-write), fills,
//! copies (within and across memories), `memory.init`, `memory.size` and `memory.grow`,
//! at random static offsets and at addresses near 0, near the end of the memory, just below
//! 2^32 and beyond the end. The twin declares one or both memories `i64` and takes the same
//! addresses as i64 values. Both are prepared (the twin is lowered) and their operations run
//! in order on one instance each: every result and every trap kind must be the same, and so
//! must both memories' contents at the end.
//!
//! The twin also has operations of its own, interleaved with the others, that an i32 cannot
//! express: addresses, offsets, lengths and `memory.grow` deltas ≥ 2^32 (2^32 + small, which
//! would land in bounds if narrowing wrapped, the end + 2^32, 2^63, 2^64 - small). Each must
//! trap out of bounds (`memory.grow` returns -1) and change nothing, so the memories still
//! end up equal.

use std::fmt::Write;

use wasmer::sys::vm::TrapCode;
use wasmer::{imports, Instance, Module, Store};

use crate::prepare::test_support::{with_check, Rng};
use crate::prepare::*;

const PROGRAMS: u64 = 300;
const OPERATIONS: u64 = 40;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ty {
    I32,
    I64,
    F32,
    F64,
    V128,
}

/// A load or store instruction: its name, the bytes it accesses, its value type, whether it
/// is atomic (natural alignment only, unaligned addresses trap).
type Access = (&'static str, u64, Ty, bool);

const LOADS: &[Access] = &[
    ("i32.load", 4, Ty::I32, false),
    ("i32.load8_s", 1, Ty::I32, false),
    ("i32.load8_u", 1, Ty::I32, false),
    ("i32.load16_s", 2, Ty::I32, false),
    ("i32.load16_u", 2, Ty::I32, false),
    ("i64.load", 8, Ty::I64, false),
    ("i64.load8_s", 1, Ty::I64, false),
    ("i64.load8_u", 1, Ty::I64, false),
    ("i64.load16_s", 2, Ty::I64, false),
    ("i64.load16_u", 2, Ty::I64, false),
    ("i64.load32_s", 4, Ty::I64, false),
    ("i64.load32_u", 4, Ty::I64, false),
    ("f32.load", 4, Ty::F32, false),
    ("f64.load", 8, Ty::F64, false),
    ("v128.load", 16, Ty::V128, false),
    ("v128.load8x8_s", 8, Ty::V128, false),
    ("v128.load16x4_u", 8, Ty::V128, false),
    ("v128.load32x2_s", 8, Ty::V128, false),
    ("v128.load8_splat", 1, Ty::V128, false),
    ("v128.load16_splat", 2, Ty::V128, false),
    ("v128.load32_splat", 4, Ty::V128, false),
    ("v128.load64_splat", 8, Ty::V128, false),
    ("v128.load32_zero", 4, Ty::V128, false),
    ("v128.load64_zero", 8, Ty::V128, false),
    ("i32.atomic.load", 4, Ty::I32, true),
    ("i64.atomic.load", 8, Ty::I64, true),
    ("i32.atomic.load8_u", 1, Ty::I32, true),
    ("i32.atomic.load16_u", 2, Ty::I32, true),
    ("i64.atomic.load32_u", 4, Ty::I64, true),
];

const STORES: &[Access] = &[
    ("i32.store", 4, Ty::I32, false),
    ("i32.store8", 1, Ty::I32, false),
    ("i32.store16", 2, Ty::I32, false),
    ("i64.store", 8, Ty::I64, false),
    ("i64.store8", 1, Ty::I64, false),
    ("i64.store16", 2, Ty::I64, false),
    ("i64.store32", 4, Ty::I64, false),
    ("f32.store", 4, Ty::F32, false),
    ("f64.store", 8, Ty::F64, false),
    ("v128.store", 16, Ty::V128, false),
    ("i32.atomic.store", 4, Ty::I32, true),
    ("i64.atomic.store", 8, Ty::I64, true),
    ("i32.atomic.store8", 1, Ty::I32, true),
    ("i64.atomic.store16", 2, Ty::I64, true),
];

/// Read-modify-write atomics: they store and return the old value.
const RMWS: &[Access] = &[
    ("i32.atomic.rmw.add", 4, Ty::I32, true),
    ("i64.atomic.rmw.xchg", 8, Ty::I64, true),
    ("i32.atomic.rmw8.sub_u", 1, Ty::I32, true),
    ("i64.atomic.rmw32.or_u", 4, Ty::I64, true),
];

const CMPXCHGS: &[Access] = &[
    ("i32.atomic.rmw.cmpxchg", 4, Ty::I32, true),
    ("i64.atomic.rmw16.cmpxchg_u", 2, Ty::I64, true),
];

/// `v128.loadN_lane` / `v128.storeN_lane` by N/8 bytes.
const LANE_BYTES: &[u64] = &[1, 2, 4, 8];

/// An address, length or delta operand.
#[derive(Clone, Copy, Debug)]
enum Addr {
    At(u64),
    /// The memory's current byte size plus this (read with `memory.size`).
    FromEnd(i64),
}

#[derive(Debug)]
enum Body {
    Load(Access),
    Store(Access, u64, u64),
    Rmw(Access, u64),
    Cmpxchg(Access, u64, u64),
    LoadLane(u64, u32),
    StoreLane(u64, u32, u64, u64),
    Fill {
        value: u8,
        len: Addr,
    },
    Copy {
        src_memory: u32,
        src: Addr,
        len: Addr,
    },
    Init {
        src: u32,
        len: u32,
    },
    Size,
    Grow(Addr),
}

#[derive(Debug)]
struct Operation {
    memory: u32,
    /// The address (destination of fill, copy and init); unused by size and grow.
    address: Addr,
    offset: u64,
    /// Alignment hint in bytes (loads and stores).
    align: u64,
    body: Body,
    /// Only in the twin: an operand ≥ 2^32, so it must trap out of bounds (grow: return -1).
    twin_only: bool,
}

struct Program {
    /// Initial pages of memory 0 and 1.
    pages: [u64; 2],
    /// Which memories are 64-bit in the twin (at least one).
    twin64: [bool; 2],
    shared1: bool,
    data: [(u64, Vec<u8>); 2],
    passive: Vec<u8>,
    operations: Vec<Operation>,
}

fn ordinary_address(rng: &mut Rng) -> Addr {
    match rng.below(10) {
        0 => Addr::At(0),
        1..=4 => Addr::At(rng.below(256)),
        5 | 6 => Addr::FromEnd(-(rng.below(40) as i64)),
        7 => Addr::FromEnd(rng.below(8) as i64),
        8 => Addr::At(0xFFFF_FFFF - rng.below(20)),
        _ => Addr::At(*rng.pick(&[0x8000_0000, 0xFFFF_0000, 0xFFFF_FFF0, 0x1_0000 - 8])),
    }
}

/// An address ≥ 2^32 (what narrowing must not wrap).
fn huge_address(rng: &mut Rng) -> Addr {
    match rng.below(6) {
        0 | 1 => Addr::At((1 << 32) + rng.below(64)),
        2 => Addr::FromEnd((1 << 32) - rng.below(64) as i64),
        3 => Addr::At(*rng.pick(&[1 << 33, 1 << 63, 0x1_FFFF_FFF0, 0x1_0000_FFF0])),
        _ => Addr::At(u64::MAX - rng.below(32)),
    }
}

fn ordinary_offset(rng: &mut Rng) -> u64 {
    match rng.below(8) {
        0..=3 => 0,
        4..=6 => rng.below(64),
        _ => *rng.pick(&[65535, 65536, 131072, 0x8000_0000, 0xFFFF_FFF0, 0xFFFF_FFFF]),
    }
}

fn huge_offset(rng: &mut Rng) -> u64 {
    *rng.pick(&[1 << 32, (1 << 32) + 8, 1 << 40, u64::MAX - 15])
}

fn length(rng: &mut Rng) -> Addr {
    match rng.below(4) {
        0 => Addr::At(0),
        1 | 2 => Addr::At(rng.below(100)),
        _ => Addr::At(*rng.pick(&[65536, 0x8000_0000, 0xFFFF_FFFF])),
    }
}

fn huge_length(rng: &mut Rng) -> Addr {
    Addr::At(*rng.pick(&[1 << 32, (1 << 32) + 1, u64::MAX]))
}

/// Rounds a twin-only atomic's address and offset down to its alignment, so that the
/// expected trap is out of bounds rather than unaligned.
fn aligned(addr: Addr, bytes: u64) -> Addr {
    match addr {
        Addr::At(a) => Addr::At(a & !(bytes - 1)),
        Addr::FromEnd(d) => Addr::FromEnd(d & !(bytes as i64 - 1)),
    }
}

fn operation(rng: &mut Rng, twin64: [bool; 2]) -> Operation {
    let memory = rng.below(2) as u32;
    let twin_only = twin64[memory as usize] && rng.chance(25);
    let huge_base = twin_only && rng.chance(70);
    let address = if huge_base {
        huge_address(rng)
    } else {
        ordinary_address(rng)
    };
    let offset = if twin_only && !huge_base {
        huge_offset(rng)
    } else {
        ordinary_offset(rng)
    };
    // A load or store of `bytes`.
    let access = |rng: &mut Rng, body: Body, bytes: u64, atomic: bool| {
        let (address, offset) = if atomic && twin_only {
            (aligned(address, bytes), offset & !(bytes - 1))
        } else {
            (address, offset)
        };
        let align = if atomic {
            bytes
        } else {
            1 << rng.below(bytes.trailing_zeros() as u64 + 1)
        };
        Operation {
            memory,
            address,
            offset,
            align,
            body,
            twin_only,
        }
    };
    // A bulk operation: no offset, and a twin-only one needs a huge operand of its own.
    let bulk = |address: Addr, body: Body| Operation {
        memory,
        address,
        offset: 0,
        align: 1,
        body,
        twin_only,
    };
    let value = |rng: &mut Rng| rng.next_u64();
    match rng.below(100) {
        0..=34 => {
            let load = *rng.pick(LOADS);
            access(rng, Body::Load(load), load.1, load.3)
        }
        35..=39 => {
            let bytes = *rng.pick(LANE_BYTES);
            let lane = rng.below(16 / bytes) as u32;
            access(rng, Body::LoadLane(bytes, lane), bytes, false)
        }
        40..=64 => {
            let store = *rng.pick(STORES);
            let body = Body::Store(store, value(rng), value(rng));
            access(rng, body, store.1, store.3)
        }
        65..=69 => {
            let bytes = *rng.pick(LANE_BYTES);
            let body = Body::StoreLane(bytes, rng.below(16 / bytes) as u32, value(rng), value(rng));
            access(rng, body, bytes, false)
        }
        70..=74 => {
            let rmw = *rng.pick(RMWS);
            let body = Body::Rmw(rmw, value(rng));
            access(rng, body, rmw.1, true)
        }
        75..=77 => {
            let cmpxchg = *rng.pick(CMPXCHGS);
            // Often the expected value is 0 (fresh memory), so the exchange happens.
            let expected = if rng.chance(50) { 0 } else { value(rng) };
            let body = Body::Cmpxchg(cmpxchg, expected, value(rng));
            access(rng, body, cmpxchg.1, true)
        }
        78..=85 => {
            let value = rng.next_u64() as u8;
            let (address, len) = match (twin_only, rng.chance(50)) {
                (false, _) => (address, length(rng)),
                (true, true) => (ordinary_address(rng), huge_length(rng)),
                (true, false) => (huge_address(rng), length(rng)),
            };
            bulk(address, Body::Fill { value, len })
        }
        86..=93 => {
            let src_memory = rng.below(2) as u32;
            let src64 = twin64[src_memory as usize];
            let (mut dst, mut src, mut len) =
                (ordinary_address(rng), ordinary_address(rng), length(rng));
            // The destination memory is 64-bit in the twin; the length is i64 only if both are.
            match rng.below(3) {
                _ if !twin_only => {}
                1 if src64 => len = huge_length(rng),
                2 if src64 => src = huge_address(rng),
                _ => dst = huge_address(rng),
            }
            bulk(
                dst,
                Body::Copy {
                    src_memory,
                    src,
                    len,
                },
            )
        }
        94..=96 => {
            let address = if twin_only {
                huge_address(rng)
            } else {
                ordinary_address(rng)
            };
            bulk(
                address,
                Body::Init {
                    src: rng.below(80) as u32,
                    len: rng.below(80) as u32,
                },
            )
        }
        97 => Operation {
            twin_only: false,
            ..bulk(address, Body::Size)
        },
        _ => {
            let delta = if twin_only {
                huge_length(rng)
            } else {
                Addr::At(*rng.pick(&[0, 1, 2, 65536, 0xFFFF_FFFF]))
            };
            bulk(address, Body::Grow(delta))
        }
    }
}

fn program(seed: u64) -> Program {
    let mut rng = Rng::new(seed);
    let twin64 = *rng.pick(&[[true, true], [true, false], [false, true]]);
    let data = |rng: &mut Rng| {
        let (at, len) = (rng.below(200), 1 + rng.below(40) as usize);
        (at, rng.bytes(len))
    };
    Program {
        pages: [1 + rng.below(2), 1 + rng.below(3)],
        twin64,
        shared1: rng.chance(30),
        data: [data(&mut rng), data(&mut rng)],
        passive: rng.bytes(64),
        operations: (0..OPERATIONS)
            .map(|_| operation(&mut rng, twin64))
            .collect(),
    }
}

fn bytes_literal(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

impl Program {
    /// The module over 32-bit memories (`twin` false), or its twin.
    fn wat(&self, twin: bool) -> String {
        let is64 = |memory: u32| twin && self.twin64[memory as usize];
        let mut wat = String::from("(module\n");
        for memory in 0..2u32 {
            let index = if is64(memory) { "i64 " } else { "" };
            let pages = self.pages[memory as usize];
            let shared = if memory == 1 && self.shared1 {
                " shared"
            } else {
                ""
            };
            let _ = writeln!(
                wat,
                "  (memory $m{memory} (export \"m{memory}\") {index}{pages} {} {shared})",
                pages + 2
            );
            let (at, bytes) = &self.data[memory as usize];
            let at = if is64(memory) {
                format!("i64.const {at}")
            } else {
                format!("i32.const {at}")
            };
            let _ = writeln!(
                wat,
                "  (data (memory $m{memory}) ({at}) \"{}\")",
                bytes_literal(bytes)
            );
        }
        let _ = writeln!(
            wat,
            "  (data $passive \"{}\")",
            bytes_literal(&self.passive)
        );
        for (i, op) in self.operations.iter().enumerate() {
            if op.twin_only && !twin {
                continue;
            }
            let _ = writeln!(
                wat,
                "  (func (export \"op{i}\") (result i64) (local $v v128)\n{}  )",
                body(op, &is64)
            );
        }
        wat.push(')');
        wat
    }
}

/// Pushes an operand of a memory whose index type is i64 when `is64`.
fn push(code: &mut String, addr: Addr, memory: u32, is64: bool) {
    let _ = match (addr, is64) {
        (Addr::At(a), true) => writeln!(code, "    i64.const {}", a as i64),
        (Addr::At(a), false) => writeln!(code, "    i32.const {}", a as u32 as i32),
        (Addr::FromEnd(d), true) => {
            writeln!(
                code,
                "    memory.size {memory} i64.const 16 i64.shl i64.const {d} i64.add"
            )
        }
        (Addr::FromEnd(d), false) => {
            writeln!(
                code,
                "    memory.size {memory} i32.const 16 i32.shl i32.const {} i32.add",
                d as i32
            )
        }
    };
}

fn push_value(code: &mut String, ty: Ty, bits: u64, high: u64) {
    let _ = match ty {
        Ty::I32 => writeln!(code, "    i32.const {}", bits as u32 as i32),
        Ty::I64 => writeln!(code, "    i64.const {}", bits as i64),
        Ty::F32 => writeln!(
            code,
            "    i32.const {} f32.reinterpret_i32",
            bits as u32 as i32
        ),
        Ty::F64 => writeln!(code, "    i64.const {} f64.reinterpret_i64", bits as i64),
        Ty::V128 => writeln!(code, "    v128.const i64x2 {} {}", bits as i64, high as i64),
    };
}

/// Turns the value a load left on the stack into the function's i64 result.
fn to_i64(code: &mut String, ty: Ty) {
    code.push_str(match ty {
        Ty::I32 => "    i64.extend_i32_u\n",
        Ty::I64 => "",
        Ty::F32 => "    i32.reinterpret_f32 i64.extend_i32_u\n",
        Ty::F64 => "    i64.reinterpret_f64\n",
        Ty::V128 => {
            "    local.tee $v i64x2.extract_lane 0 local.get $v i64x2.extract_lane 1 i64.const 1 \
                i64.rotl i64.xor\n"
        }
    });
}

fn body(op: &Operation, is64: &dyn Fn(u32) -> bool) -> String {
    let mut code = String::new();
    let m = op.memory;
    let memarg = format!("{m} offset={} align={}", op.offset, op.align);
    let lane_name = |kind: &str, bytes: u64| format!("v128.{kind}{}_lane", bytes * 8);
    match &op.body {
        Body::Size => {
            let _ = writeln!(code, "    memory.size {m}");
            if !is64(m) {
                code.push_str("    i64.extend_i32_u\n");
            }
            return code;
        }
        Body::Grow(delta) => {
            push(&mut code, *delta, m, is64(m));
            let _ = writeln!(code, "    memory.grow {m}");
            if !is64(m) {
                code.push_str("    i64.extend_i32_s\n");
            }
            return code;
        }
        _ => push(&mut code, op.address, m, is64(m)),
    }
    match &op.body {
        Body::Load((name, _, ty, _)) => {
            let _ = writeln!(code, "    {name} {memarg}");
            to_i64(&mut code, *ty);
        }
        Body::LoadLane(bytes, lane) => {
            push_value(
                &mut code,
                Ty::V128,
                0x0123_4567_89AB_CDEF,
                0x1122_3344_5566_7788,
            );
            let _ = writeln!(code, "    {} {memarg} {lane}", lane_name("load", *bytes));
            to_i64(&mut code, Ty::V128);
        }
        Body::Store((name, _, ty, _), low, high) => {
            push_value(&mut code, *ty, *low, *high);
            let _ = writeln!(code, "    {name} {memarg}\n    i64.const 0");
        }
        Body::StoreLane(bytes, lane, low, high) => {
            push_value(&mut code, Ty::V128, *low, *high);
            let _ = writeln!(
                code,
                "    {} {memarg} {lane}\n    i64.const 0",
                lane_name("store", *bytes)
            );
        }
        Body::Rmw((name, _, ty, _), value) => {
            push_value(&mut code, *ty, *value, 0);
            let _ = writeln!(code, "    {name} {memarg}");
            to_i64(&mut code, *ty);
        }
        Body::Cmpxchg((name, _, ty, _), expected, replacement) => {
            push_value(&mut code, *ty, *expected, 0);
            push_value(&mut code, *ty, *replacement, 0);
            let _ = writeln!(code, "    {name} {memarg}");
            to_i64(&mut code, *ty);
        }
        Body::Fill { value, len } => {
            let _ = writeln!(code, "    i32.const {value}");
            push(&mut code, *len, m, is64(m));
            let _ = writeln!(code, "    memory.fill {m}\n    i64.const 0");
        }
        Body::Copy {
            src_memory,
            src,
            len,
        } => {
            let s = *src_memory;
            push(&mut code, *src, s, is64(s));
            push(&mut code, *len, m, is64(m) && is64(s));
            let _ = writeln!(code, "    memory.copy {m} {s}\n    i64.const 0");
        }
        Body::Init { src, len } => {
            let _ = writeln!(
                code,
                "    i32.const {src} i32.const {len} memory.init {m} $passive\n    i64.const 0"
            );
        }
        Body::Size | Body::Grow(_) => unreachable!(),
    }
    code
}

/// What one operation did.
#[derive(Debug, PartialEq)]
enum Outcome {
    Returned(i64),
    Trapped(Option<TrapCode>),
    Failed(String),
}

struct Run {
    store: Store,
    instance: Instance,
}

impl Run {
    fn new(wat: &str, expect_lowered: bool) -> Run {
        let wasm = wat::parse_str(wat).unwrap_or_else(|e| panic!("{e}\n{wat}"));
        let prepared =
            prepare(&wasm, &PrepareOptions::default()).unwrap_or_else(|e| panic!("{e}\n{wat}"));
        assert_eq!(prepared.memory64_lowered, expect_lowered);
        let engine = crate::engine::engine();
        let module = Module::new(engine, &prepared.wasm).unwrap();
        let mut store = Store::new(engine.clone());
        let imports = with_check(&mut store, imports! {});
        let instance =
            crate::prepare::instantiate_with_start(&mut store, &module, &imports).unwrap();
        Run { store, instance }
    }

    fn call(&mut self, index: usize) -> Outcome {
        let function = self
            .instance
            .exports
            .get_function(&format!("op{index}"))
            .unwrap();
        match function.call(&mut self.store, &[]) {
            Ok(results) => Outcome::Returned(results[0].unwrap_i64()),
            Err(e) => match e.clone().to_trap() {
                Some(code) => Outcome::Trapped(Some(code)),
                None => Outcome::Failed(e.message()),
            },
        }
    }

    fn memory(&self, name: &str) -> Vec<u8> {
        let memory = self.instance.exports.get_memory(name).unwrap();
        memory.view(&self.store).copy_to_vec().unwrap()
    }
}

#[test]
fn memory64_twins_behave_like_their_32_bit_programs() {
    let (mut common, mut twin_only) = (0, 0);
    let mut outcomes: std::collections::BTreeMap<String, u32> = Default::default();
    for seed in 0..PROGRAMS {
        let program = program(seed);
        let (narrow_wat, twin_wat) = (program.wat(false), program.wat(true));
        let mut narrow = Run::new(&narrow_wat, false);
        let mut twin = Run::new(&twin_wat, true);
        for (i, op) in program.operations.iter().enumerate() {
            let context = || format!("seed {seed}, op{i}: {op:?}\ntwin:\n{twin_wat}");
            let outcome = twin.call(i);
            if op.twin_only {
                twin_only += 1;
                let expected = match op.body {
                    Body::Grow(_) => Outcome::Returned(-1),
                    _ => Outcome::Trapped(Some(TrapCode::HeapAccessOutOfBounds)),
                };
                assert_eq!(outcome, expected, "{}", context());
            } else {
                common += 1;
                let kind = match &outcome {
                    Outcome::Trapped(Some(code)) => format!("{code:?}"),
                    other => format!("{other:?}").split('(').next().unwrap().to_string(),
                };
                *outcomes.entry(kind).or_default() += 1;
                assert_eq!(outcome, narrow.call(i), "{}", context());
            }
        }
        for name in ["m0", "m1"] {
            assert!(
                narrow.memory(name) == twin.memory(name),
                "seed {seed}: memory {name} differs\n{twin_wat}"
            );
        }
    }
    eprintln!(
        "memory64 twins: {PROGRAMS} programs, {common} operations compared ({outcomes:?}), \
         {twin_only} twin-only operations beyond 2^32 trapped out of bounds"
    );
}
