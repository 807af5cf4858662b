use super::super::test_support::*;
use super::super::{prepare, PrepareOptions};
use wasmer::sys::vm::TrapCode;
use wasmer::Value;

const MEMORY: &str = r#"(module
    (memory (export "mem") i64 1 4)
    (data (i64.const 16) "\01\02\03\04\05\06\07\08")
    (func (export "load64") (param i64) (result i64) (i64.load (local.get 0)))
    (func (export "load8") (param i64) (result i32) (i32.load8_u offset=1 (local.get 0)))
    (func (export "store64") (param i64 i64) (i64.store (local.get 0) (local.get 1)))
    (func (export "store8") (param i64 i32) (i32.store8 (local.get 0) (local.get 1)))
    (func (export "storef") (param i64 f64) (f64.store offset=8 (local.get 0) (local.get 1)))
    (func (export "loadf") (param i64) (result f64) (f64.load offset=8 (local.get 0)))
    (func (export "size") (result i64) (memory.size))
    (func (export "grow") (param i64) (result i64) (memory.grow (local.get 0)))
    (func (export "fill") (param i64 i32 i64) (memory.fill (local.get 0) (local.get 1)
      (local.get 2)))
    (func (export "copy") (param i64 i64 i64) (memory.copy (local.get 0) (local.get 1)
      (local.get 2))))"#;

#[track_caller]
fn oob(result: Result<Box<[Value]>, wasmer::RuntimeError>) {
    assert_eq!(trap_code(result), Some(TrapCode::HeapAccessOutOfBounds));
}

#[test]
fn loads_and_stores_round_trip() {
    let (mut store, instance) = instantiate(MEMORY);
    let s = &mut store;
    call(s, &instance, "store64", &[Value::I64(1000), Value::I64(-2)]).unwrap();
    assert_eq!(
        call(s, &instance, "load64", &[Value::I64(1000)]).unwrap()[0],
        Value::I64(-2)
    );
    call(
        s,
        &instance,
        "store8",
        &[Value::I64(65535), Value::I32(0x1ff)],
    )
    .unwrap();
    assert_eq!(
        call(s, &instance, "load8", &[Value::I64(65534)]).unwrap()[0],
        Value::I32(0xff)
    );
    call(s, &instance, "storef", &[Value::I64(40), Value::F64(2.5)]).unwrap();
    assert_eq!(
        call(s, &instance, "loadf", &[Value::I64(40)]).unwrap()[0],
        Value::F64(2.5)
    );
    // The data segment landed at 16.
    assert_eq!(
        call(s, &instance, "load64", &[Value::I64(16)]).unwrap()[0],
        Value::I64(0x0807060504030201)
    );
    assert_eq!(
        call(s, &instance, "load8", &[Value::I64(15)]).unwrap()[0],
        Value::I32(1)
    );
}

#[test]
fn addresses_at_or_above_4_gib_trap_out_of_bounds() {
    let (mut store, instance) = instantiate(MEMORY);
    let s = &mut store;
    for address in [
        0x1_0000_0000i64,
        0x1_0000_0001,
        0x1_0000_0010,
        -1,
        131072,
        131065,
        0xFFFF_FFFF,
    ] {
        oob(call(s, &instance, "load64", &[Value::I64(address)]));
        oob(call(
            s,
            &instance,
            "store64",
            &[Value::I64(address), Value::I64(1)],
        ));
        oob(call(
            s,
            &instance,
            "storef",
            &[Value::I64(address), Value::F64(1.0)],
        ));
    }
    // Had the address wrapped to 0 or 16, these would have read or clobbered the data.
    oob(call(s, &instance, "load8", &[Value::I64(0x1_0000_000F)]));
    oob(call(
        s,
        &instance,
        "store8",
        &[Value::I64(0x1_0000_0010), Value::I32(9)],
    ));
    assert_eq!(
        call(s, &instance, "load8", &[Value::I64(15)]).unwrap()[0],
        Value::I32(1)
    );
}

#[test]
fn memory_size_and_grow_are_widened() {
    let (mut store, instance) = instantiate(MEMORY);
    let s = &mut store;
    // WAMR layout gives this module one extra page (it uses memory.grow/size), and one
    // more page to its maximum: 2 of at most 5.
    assert_eq!(call(s, &instance, "size", &[]).unwrap()[0], Value::I64(2));
    assert_eq!(
        call(s, &instance, "grow", &[Value::I64(1)]).unwrap()[0],
        Value::I64(2)
    );
    assert_eq!(
        call(s, &instance, "grow", &[Value::I64(3)]).unwrap()[0],
        Value::I64(-1)
    );
    assert_eq!(
        call(s, &instance, "grow", &[Value::I64(0x1_0000_0000)]).unwrap()[0],
        Value::I64(-1)
    );
    assert_eq!(
        call(s, &instance, "grow", &[Value::I64(-1)]).unwrap()[0],
        Value::I64(-1)
    );
    assert_eq!(
        call(s, &instance, "grow", &[Value::I64(2)]).unwrap()[0],
        Value::I64(3)
    );
    assert_eq!(call(s, &instance, "size", &[]).unwrap()[0], Value::I64(5));
}

#[test]
fn bulk_operations_with_huge_operands_trap_out_of_bounds() {
    let (mut store, instance) = instantiate(MEMORY);
    let s = &mut store;
    let huge = [0x1_0000_0000i64, 0x1_0000_0010, -1];
    for n in huge {
        oob(call(
            s,
            &instance,
            "fill",
            &[Value::I64(0), Value::I32(7), Value::I64(n)],
        ));
        oob(call(
            s,
            &instance,
            "copy",
            &[Value::I64(0), Value::I64(16), Value::I64(n)],
        ));
        // Zero-length operations at an address beyond the memory trap too.
        oob(call(
            s,
            &instance,
            "fill",
            &[Value::I64(n), Value::I32(7), Value::I64(0)],
        ));
        oob(call(
            s,
            &instance,
            "copy",
            &[Value::I64(n), Value::I64(0), Value::I64(0)],
        ));
        oob(call(
            s,
            &instance,
            "copy",
            &[Value::I64(0), Value::I64(n), Value::I64(0)],
        ));
    }
    call(
        s,
        &instance,
        "fill",
        &[Value::I64(100), Value::I32(7), Value::I64(4)],
    )
    .unwrap();
    call(
        s,
        &instance,
        "copy",
        &[Value::I64(200), Value::I64(100), Value::I64(4)],
    )
    .unwrap();
    assert_eq!(
        call(s, &instance, "load8", &[Value::I64(202)]).unwrap()[0],
        Value::I32(7)
    );
    // Nothing was written by the trapping fills (the data at 16 is intact).
    assert_eq!(
        call(s, &instance, "load8", &[Value::I64(15)]).unwrap()[0],
        Value::I32(1)
    );
    assert_eq!(
        call(s, &instance, "load64", &[Value::I64(0)]).unwrap()[0],
        Value::I64(0)
    );
}

#[test]
fn static_offsets_beyond_4_gib_trap() {
    let (mut store, instance) = instantiate(
        r#"(module (memory i64 1)
            (func (export "load") (result i32) (i32.load offset=0x1_0000_0000 (i64.const 0)))
            (func (export "store") (i32.store offset=0xFFFF_FFFF (i64.const 1)
              (i32.const 1))))"#,
    );
    oob(call(&mut store, &instance, "load", &[]));
    oob(call(&mut store, &instance, "store", &[]));
}

#[test]
fn atomics_and_simd_are_lowered() {
    let (mut store, instance) = instantiate(
        r#"(module (memory i64 1 1 shared)
            (func (export "rmw") (param i64 i64) (result i64) (i64.atomic.rmw.add
              (local.get 0) (local.get 1)))
            (func (export "cas") (param i64 i32 i32) (result i32)
                (i32.atomic.rmw.cmpxchg (local.get 0) (local.get 1) (local.get 2)))
            (func (export "splat") (param i64) (result i32) (i32x4.extract_lane 3
              (v128.load32_splat (local.get 0))))
            (func (export "lane") (param i64) (v128.store32_lane 1 (local.get 0)
              (v128.const i32x4 0 9 0 0))))"#,
    );
    let s = &mut store;
    assert_eq!(
        call(s, &instance, "rmw", &[Value::I64(8), Value::I64(5)]).unwrap()[0],
        Value::I64(0)
    );
    assert_eq!(
        call(s, &instance, "rmw", &[Value::I64(8), Value::I64(5)]).unwrap()[0],
        Value::I64(5)
    );
    assert_eq!(
        call(
            s,
            &instance,
            "cas",
            &[Value::I64(8), Value::I32(10), Value::I32(3)]
        )
        .unwrap()[0],
        Value::I32(10)
    );
    call(s, &instance, "lane", &[Value::I64(32)]).unwrap();
    assert_eq!(
        call(s, &instance, "splat", &[Value::I64(32)]).unwrap()[0],
        Value::I32(9)
    );
    oob(call(
        s,
        &instance,
        "rmw",
        &[Value::I64(0x1_0000_0008), Value::I64(1)],
    ));
    oob(call(
        s,
        &instance,
        "cas",
        &[Value::I64(0x1_0000_0008), Value::I32(0), Value::I32(1)],
    ));
    oob(call(s, &instance, "splat", &[Value::I64(0x1_0000_0000)]));
    oob(call(s, &instance, "lane", &[Value::I64(0x1_0000_0000)]));
}

#[track_caller]
fn unaligned(result: Result<Box<[Value]>, wasmer::RuntimeError>) {
    let code = trap_code(result);
    assert!(
        matches!(
            code,
            Some(TrapCode::HeapMisaligned | TrapCode::UnalignedAtomic)
        ),
        "{code:?}"
    );
}

/// The threads proposal decides on the effective address `address + offset`: unaligned
/// traps first, then out of bounds; narrowing must not change which one an atomic gets.
#[test]
fn atomics_beyond_4_gib_trap_by_their_real_effective_address() {
    let (mut store, instance) = instantiate(
        r#"(module (memory i64 1 1 shared)
            (func (export "load") (param i64) (result i32) (i32.atomic.load (local.get 0)))
            (func (export "load_off3") (param i64) (result i32) (i32.atomic.load offset=3
              (local.get 0)))
            (func (export "load_off_huge") (param i64) (result i32)
                (i32.atomic.load offset=0x1_0000_0001 (local.get 0)))
            (func (export "rmw_off4") (param i64) (result i64) (i64.atomic.rmw.add offset=4
              (local.get 0) (i64.const 1)))
            (func (export "cas") (param i64) (result i32)
                (i32.atomic.rmw.cmpxchg (local.get 0) (i32.const 0) (i32.const 1)))
            (func (export "notify") (param i64) (result i32) (memory.atomic.notify
              (local.get 0) (i32.const 0)))
            (func (export "wait") (param i64) (result i32)
                (memory.atomic.wait32 (local.get 0) (i32.const 1) (i64.const 0))))"#,
    );
    let s = &mut store;
    let at = |address: i64| [Value::I64(address)];
    // In bounds: as a 32-bit memory would.
    assert_eq!(
        call(s, &instance, "load_off3", &at(1)).unwrap()[0],
        Value::I32(0)
    );
    unaligned(call(s, &instance, "load", &at(1)));
    // Aligned effective addresses beyond 4 GiB are out of bounds, however the address
    // and the offset split them...
    oob(call(s, &instance, "load_off3", &at(0x1_0000_0001)));
    oob(call(s, &instance, "load", &at(0x1_0000_0004)));
    oob(call(s, &instance, "load_off_huge", &at(3)));
    oob(call(s, &instance, "load_off3", &at(0xFFFF_FFFD)));
    oob(call(s, &instance, "rmw_off4", &at(0x1_0000_0004)));
    oob(call(s, &instance, "cas", &at(-4)));
    oob(call(s, &instance, "notify", &at(0x2_0000_0000)));
    oob(call(s, &instance, "wait", &at(0x1_0000_0000)));
    // ...and unaligned ones are unaligned, even beyond 4 GiB.
    unaligned(call(s, &instance, "load", &at(0x1_0000_0001)));
    unaligned(call(s, &instance, "load_off3", &at(0x1_0000_0002)));
    unaligned(call(s, &instance, "load_off_huge", &at(0)));
    unaligned(call(s, &instance, "load_off3", &at(0xFFFF_FFFE)));
    unaligned(call(s, &instance, "rmw_off4", &at(0x1_0000_0002)));
    unaligned(call(s, &instance, "cas", &at(-1)));
    // wasmer checks notify and wait for bounds first, as it does on 32-bit memories.
    unaligned(call(s, &instance, "notify", &at(2)));
    unaligned(call(s, &instance, "wait", &at(6)));
    oob(call(s, &instance, "notify", &at(0x2_0000_0003)));
    oob(call(s, &instance, "wait", &at(0x1_0000_000E)));
}

#[test]
fn mixed_memories_only_lower_the_64_bit_ones() {
    let (mut store, instance) = instantiate(
        r#"(module
            (memory $m32 1)
            (memory $m64 i64 1)
            (data (memory $m32) (i32.const 4) "\aa")
            (data (memory $m64) (i64.const 4) "\bb")
            (func (export "to32") (param i32 i64 i32) (memory.copy $m32 $m64 (local.get 0)
              (local.get 1) (local.get 2)))
            (func (export "to64") (param i64 i32 i32) (memory.copy $m64 $m32 (local.get 0)
              (local.get 1) (local.get 2)))
            (func (export "load32") (param i32) (result i32) (i32.load8_u $m32 (local.get 0)))
            (func (export "load64") (param i64) (result i32) (i32.load8_u $m64
              (local.get 0))))"#,
    );
    let s = &mut store;
    call(
        s,
        &instance,
        "to32",
        &[Value::I32(10), Value::I64(4), Value::I32(1)],
    )
    .unwrap();
    assert_eq!(
        call(s, &instance, "load32", &[Value::I32(10)]).unwrap()[0],
        Value::I32(0xbb)
    );
    call(
        s,
        &instance,
        "to64",
        &[Value::I64(20), Value::I32(4), Value::I32(1)],
    )
    .unwrap();
    assert_eq!(
        call(s, &instance, "load64", &[Value::I64(20)]).unwrap()[0],
        Value::I32(0xaa)
    );
    oob(call(
        s,
        &instance,
        "to32",
        &[Value::I32(0), Value::I64(0x1_0000_0000), Value::I32(0)],
    ));
    oob(call(
        s,
        &instance,
        "to64",
        &[Value::I64(0x1_0000_0000), Value::I32(0), Value::I32(0)],
    ));
}

#[test]
fn tables_are_lowered() {
    let (mut store, instance) = instantiate(
        r#"(module
            (type $r (func (result i32)))
            (table $t i64 2 10 funcref)
            (elem (table $t) (i64.const 1) func $seven)
            (func $seven (result i32) (i32.const 7))
            (func (export "call") (param i64) (result i32) (call_indirect $t (type $r)
              (local.get 0)))
            (func (export "size") (result i64) (table.size $t))
            (func (export "grow") (param i64) (result i64) (table.grow $t (ref.null func)
              (local.get 0)))
            (func (export "copy") (param i64 i64 i64) (table.copy $t $t (local.get 0)
              (local.get 1) (local.get 2)))
            (func (export "fill") (param i64 i64) (table.fill $t (local.get 0)
              (ref.func $seven) (local.get 1)))
            (func (export "is_null") (param i64) (result i32) (ref.is_null (table.get $t
              (local.get 0)))))"#,
    );
    let s = &mut store;
    assert_eq!(
        call(s, &instance, "call", &[Value::I64(1)]).unwrap()[0],
        Value::I32(7)
    );
    assert_eq!(call(s, &instance, "size", &[]).unwrap()[0], Value::I64(2));
    assert_eq!(
        call(s, &instance, "grow", &[Value::I64(3)]).unwrap()[0],
        Value::I64(2)
    );
    assert_eq!(
        call(s, &instance, "grow", &[Value::I64(6)]).unwrap()[0],
        Value::I64(-1)
    );
    assert_eq!(
        call(s, &instance, "grow", &[Value::I64(0x1_0000_0000)]).unwrap()[0],
        Value::I64(-1)
    );
    call(
        s,
        &instance,
        "copy",
        &[Value::I64(4), Value::I64(1), Value::I64(1)],
    )
    .unwrap();
    assert_eq!(
        call(s, &instance, "call", &[Value::I64(4)]).unwrap()[0],
        Value::I32(7)
    );
    call(s, &instance, "fill", &[Value::I64(2), Value::I64(1)]).unwrap();
    assert_eq!(
        call(s, &instance, "is_null", &[Value::I64(2)]).unwrap()[0],
        Value::I32(0)
    );
    assert_eq!(
        call(s, &instance, "is_null", &[Value::I64(3)]).unwrap()[0],
        Value::I32(1)
    );
    for index in [6i64, 0x1_0000_0001, -1] {
        assert!(call(s, &instance, "call", &[Value::I64(index)]).is_err());
        assert!(call(s, &instance, "is_null", &[Value::I64(index)]).is_err());
        assert!(call(s, &instance, "fill", &[Value::I64(index), Value::I64(0)]).is_err());
        assert!(call(s, &instance, "fill", &[Value::I64(0), Value::I64(index)]).is_err());
    }
}

#[test]
fn segment_offsets_fold_and_overflow_fails_instantiation() {
    let (mut store, instance) = instantiate(
        r#"(module
            (memory i64 1)
            (data (i64.add (i64.const 0x100) (i64.const 2)) "\2a")
            (func (export "load") (param i64) (result i32) (i32.load8_u (local.get 0))))"#,
    );
    assert_eq!(
        call(&mut store, &instance, "load", &[Value::I64(0x102)]).unwrap()[0],
        Value::I32(42)
    );

    let engine = crate::engine::engine();
    let too_far = prepare_wat(r#"(module (memory i64 1) (data (i64.const 0x1_0000_0000) ""))"#);
    let module = wasmer::Module::new(engine, too_far.wasm).unwrap();
    let mut store = wasmer::Store::new(engine.clone());
    let imports = crate::prepare::test_support::with_check(&mut store, wasmer::imports! {});
    assert!(crate::prepare::instantiate_with_start(&mut store, &module, &imports).is_err());

    let imported = wat::parse_str(
        r#"(module (global (import "env" "base") i64) (memory i64 1) (data
          (global.get 0) "x"))"#,
    )
    .unwrap();
    assert!(prepare(&imported, &PrepareOptions::default()).is_err());
}

#[test]
fn limits_are_clamped() {
    let limits = |wat: &str| {
        let wasm = prepare(
            &wat::parse_str(wat).unwrap(),
            &PrepareOptions {
                wamr_compat: false,
                ..Default::default()
            },
        )?
        .wasm;
        let types = wasmparser::Validator::new().validate_all(&wasm).unwrap();
        let memory = types.as_ref().memory_at(0);
        Ok::<_, crate::prepare::PrepareError>((memory.memory64, memory.initial, memory.maximum))
    };
    assert_eq!(
        limits("(module (memory i64 3))").unwrap(),
        (false, 3, Some(65535))
    );
    assert_eq!(
        limits("(module (memory i64 3 0x1_0000_0000_0000))").unwrap(),
        (false, 3, Some(65535))
    );
    assert_eq!(
        limits("(module (memory i64 192 32768))").unwrap(),
        (false, 192, Some(32768))
    );
    assert_eq!(
        limits("(module (memory i64 65535))").unwrap(),
        (false, 65535, Some(65535))
    );
}

/// Prepares and compiles `wat`, which must then fail to instantiate with `imports`, with
/// a message naming `what`.
fn assert_unlinkable(
    wat: &str,
    imports: impl FnOnce(&mut wasmer::Store) -> wasmer::Imports,
    what: &str,
) {
    let prepared = prepare(&wat::parse_str(wat).unwrap(), &PrepareOptions::default()).unwrap();
    let engine = crate::engine::engine();
    let module = wasmer::Module::new(engine, &prepared.wasm).unwrap();
    let mut store = wasmer::Store::new(engine.clone());
    let imports = imports(&mut store);
    let imports = crate::prepare::test_support::with_check(&mut store, imports);
    let error = crate::prepare::instantiate_with_start(&mut store, &module, &imports)
        .expect_err("instantiated");
    let error = error.to_string();
    assert!(error.contains(what), "{error}");
}

#[test]
fn unfittable_memories_and_tables_compile_but_never_instantiate() {
    let none = |_: &mut wasmer::Store| wasmer::imports! {};
    assert_unlinkable(
        "(module (memory i64 0x1_0000_0000_0000))",
        none,
        "memory 0 of 281474976710656 pages does not fit in 32 bits (at most 65535 pages)",
    );
    assert_unlinkable(
        "(module (table i64 0xffff_ffff_ffff_ffff funcref))",
        none,
        "table 0 of 18446744073709551615 elements does not fit in 32 bits \
            (at most 134217728 elements)",
    );
    assert_unlinkable(
        "(module (memory i64 65536 65537 shared) (func (drop (i32.atomic.load \
            (i64.const 0)))))",
        none,
        "memory 0 of 65536 pages",
    );
    // An unfittable import is renamed: whatever provides the original cannot satisfy it.
    let memory = |store: &mut wasmer::Store| {
        let memory = wasmer::Memory::new(store, wasmer::MemoryType::new(1, None, false)).unwrap();
        wasmer::imports! { "env" => { "m" => memory } }
    };
    assert_unlinkable(
        r#"(module (memory (import "env" "m") i64 0x1_0000_0000))"#,
        memory,
        "memory 0 of 4294967296",
    );
}

#[test]
fn unfittable_definitions_become_imports_and_indices_follow() {
    // The unfittable memory and table move after the imported memory, ahead of the other
    // definitions, whose indices all shift by one.
    let wat = r#"(module
        (type $r (func (result i32)))
        (import "env" "m" (memory 1))
        (memory $huge i64 0x1_0000_0000_0000)
        (memory $small (export "small") i64 2 3)
        (table $t i64 0x1_0000_0000 funcref)
        (table $u (export "u") i64 4 funcref)
        (data (memory $small) (i64.const 8) "\2a")
        (elem (table $u) (i64.const 3) func $seven)
        (func $seven (result i32) (i32.const 7))
        (func (export "load") (param i64) (result i32) (i32.load8_u $small (local.get 0)))
        (func (export "grow") (result i64) (memory.grow $small (i64.const 1)))
        (func (export "call") (param i64) (result i32) (call_indirect $u (type $r)
          (local.get 0)))
        (func (export "size") (result i64) (table.size $u)))"#;
    let prepared = prepare(&wat::parse_str(wat).unwrap(), &PrepareOptions::default()).unwrap();
    let engine = crate::engine::engine();
    let module = wasmer::Module::new(engine, &prepared.wasm).unwrap();
    let names: Vec<(String, String)> = module
        .imports()
        .map(|import| (import.module().to_string(), import.name().to_string()))
        .collect();
    assert_eq!(names[0], ("env".to_string(), "m".to_string()));
    assert_eq!(names[1].0, super::entities::UNSATISFIABLE_MODULE);
    assert!(
        names[1].1.starts_with("memory 1 of 281474976710656 pages"),
        "{}",
        names[1].1
    );
    assert!(
        names[2].1.starts_with("table 0 of 4294967296 elements"),
        "{}",
        names[2].1
    );
    assert_eq!(names[3].0, crate::prepare::interrupt::CHECK_MODULE);
    assert_eq!(names.len(), 4);

    // Providing the unsatisfiable imports shows that every reference followed its memory
    // or table.
    let mut store = wasmer::Store::new(engine.clone());
    let env = wasmer::Memory::new(&mut store, wasmer::MemoryType::new(1, None, false)).unwrap();
    let huge =
        wasmer::Memory::new(&mut store, wasmer::MemoryType::new(0, Some(65535), false)).unwrap();
    let table = wasmer::Table::new(
        &mut store,
        wasmer::TableType::new(wasmer::Type::FuncRef, 0, Some(1 << 27)),
        Value::FuncRef(None),
    )
    .unwrap();
    let imports = wasmer::imports! {
        "env" => { "m" => env.clone() },
        super::entities::UNSATISFIABLE_MODULE => { &names[1].1 => huge, &names[2].1 => table },
    };
    let imports = crate::prepare::test_support::with_check(&mut store, imports);
    let instance = crate::prepare::instantiate_with_start(&mut store, &module, &imports).unwrap();
    let s = &mut store;
    assert_eq!(
        call(s, &instance, "load", &[Value::I64(8)]).unwrap()[0],
        Value::I32(42)
    );
    assert_eq!(env.view(s).read_u8(8).unwrap(), 0);
    assert_eq!(call(s, &instance, "grow", &[]).unwrap()[0], Value::I64(2));
    assert_eq!(
        instance
            .exports
            .get_memory("small")
            .unwrap()
            .view(s)
            .size()
            .0,
        3
    );
    assert_eq!(
        call(s, &instance, "call", &[Value::I64(3)]).unwrap()[0],
        Value::I32(7)
    );
    assert_eq!(call(s, &instance, "size", &[]).unwrap()[0], Value::I64(4));
    assert_eq!(instance.exports.get_table("u").unwrap().size(s), 4);
}
