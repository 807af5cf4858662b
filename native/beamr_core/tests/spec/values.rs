//! Conversions between script values and wasmer values, and the matching of results
//! against expectations (exact float bits, NaN classes, lane-wise v128, reference kinds).

use wasmer::{ExternRef, Store, Value};

use super::script::{Arg, Expected, Float, RefKind, V128Expected};

pub fn to_value(store: &mut Store, arg: &Arg) -> Value {
    match *arg {
        Arg::I32(v) => Value::I32(v),
        Arg::I64(v) => Value::I64(v),
        Arg::F32(bits) => Value::F32(f32::from_bits(bits)),
        Arg::F64(bits) => Value::F64(f64::from_bits(bits)),
        Arg::V128(bits) => Value::V128(bits),
        Arg::Null(RefKind::Func) => Value::FuncRef(None),
        Arg::Null(RefKind::Extern) => Value::ExternRef(None),
        Arg::Null(RefKind::Exn) => Value::ExceptionRef(None),
        Arg::Extern(n) => Value::ExternRef(Some(ExternRef::new(store, n))),
    }
}

/// Checks results against expectations; the error describes the first difference.
pub fn check_results(store: &Store, expected: &[Expected], actual: &[Value]) -> Result<(), String> {
    if expected.len() != actual.len() {
        return Err(format!(
            "returned {} values, expected {}: {}",
            actual.len(),
            expected.len(),
            describe_all(store, actual)
        ));
    }
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        if !matches(store, e, a) {
            return Err(format!(
                "result {i} is {}, expected {}",
                describe(store, a),
                describe_expected(e)
            ));
        }
    }
    Ok(())
}

fn matches(store: &Store, expected: &Expected, actual: &Value) -> bool {
    match (expected, actual) {
        (Expected::Either(cases), _) => cases.iter().any(|case| matches(store, case, actual)),
        (Expected::I32(e), Value::I32(a)) => e == a,
        (Expected::I64(e), Value::I64(a)) => e == a,
        (Expected::F32(e), Value::F32(a)) => float_matches(e, a.to_bits(), &F32),
        (Expected::F64(e), Value::F64(a)) => float_matches(e, a.to_bits(), &F64),
        (Expected::V128(e), Value::V128(a)) => v128_matches(e, *a),
        (Expected::Null(kind), value) => {
            let actual_kind = match value {
                Value::FuncRef(None) => RefKind::Func,
                Value::ExternRef(None) => RefKind::Extern,
                Value::ExceptionRef(None) => RefKind::Exn,
                _ => return false,
            };
            kind.is_none_or(|kind| kind == actual_kind)
        }
        (Expected::Extern(None), Value::ExternRef(Some(_))) => true,
        (Expected::Extern(Some(n)), Value::ExternRef(Some(r))) => {
            r.downcast::<u32>(store) == Some(n)
        }
        (Expected::Func, Value::FuncRef(Some(_))) => true,
        _ => false,
    }
}

/// Where a float's NaN bits live; `canonical` is also the arithmetic-NaN mask (exponent
/// all ones plus the quiet bit).
struct FloatShape {
    abs_mask: u64,
    canonical: u64,
}

const F32: FloatShape = FloatShape {
    abs_mask: 0x7fff_ffff,
    canonical: 0x7fc0_0000,
};
const F64: FloatShape = FloatShape {
    abs_mask: 0x7fff_ffff_ffff_ffff,
    canonical: 0x7ff8_0000_0000_0000,
};

fn float_matches<Bits: Copy + Into<u64>>(
    expected: &Float<Bits>,
    actual: Bits,
    shape: &FloatShape,
) -> bool {
    let actual = actual.into();
    match expected {
        Float::Bits(bits) => (*bits).into() == actual,
        Float::CanonicalNan => actual & shape.abs_mask == shape.canonical,
        Float::ArithmeticNan => actual & shape.canonical == shape.canonical,
    }
}

fn v128_matches(expected: &V128Expected, actual: u128) -> bool {
    match expected {
        V128Expected::Bits(bits) => *bits == actual,
        V128Expected::F32x4(lanes) => lanes
            .iter()
            .enumerate()
            .all(|(i, lane)| float_matches(lane, (actual >> (32 * i)) as u32, &F32)),
        V128Expected::F64x2(lanes) => lanes
            .iter()
            .enumerate()
            .all(|(i, lane)| float_matches(lane, (actual >> (64 * i)) as u64, &F64)),
    }
}

pub fn describe_all(store: &Store, values: &[Value]) -> String {
    let parts: Vec<_> = values.iter().map(|v| describe(store, v)).collect();
    format!("[{}]", parts.join(", "))
}

fn describe(store: &Store, value: &Value) -> String {
    match value {
        Value::I32(v) => format!("i32 {v}"),
        Value::I64(v) => format!("i64 {v}"),
        Value::F32(v) => format!("f32 {v} ({:#010x})", v.to_bits()),
        Value::F64(v) => format!("f64 {v} ({:#018x})", v.to_bits()),
        Value::V128(v) => format!("v128 {v:#034x}"),
        Value::FuncRef(r) => format!("funcref {}", if r.is_some() { "non-null" } else { "null" }),
        Value::ExternRef(None) => "externref null".into(),
        Value::ExternRef(Some(r)) => match r.downcast::<u32>(store) {
            Some(n) => format!("externref {n}"),
            None => "externref (foreign)".into(),
        },
        Value::ExceptionRef(r) => {
            format!("exnref {}", if r.is_some() { "non-null" } else { "null" })
        }
    }
}

fn describe_expected(expected: &Expected) -> String {
    fn float<Bits: std::fmt::LowerHex>(f: &Float<Bits>) -> String {
        match f {
            Float::Bits(b) => format!("bits {b:#x}"),
            Float::CanonicalNan => "nan:canonical".into(),
            Float::ArithmeticNan => "nan:arithmetic".into(),
        }
    }
    match expected {
        Expected::I32(v) => format!("i32 {v}"),
        Expected::I64(v) => format!("i64 {v}"),
        Expected::F32(f) => format!("f32 {}", float(f)),
        Expected::F64(f) => format!("f64 {}", float(f)),
        Expected::V128(V128Expected::Bits(b)) => format!("v128 {b:#034x}"),
        Expected::V128(V128Expected::F32x4(l)) => {
            format!(
                "v128 f32x4 [{}]",
                l.iter().map(float).collect::<Vec<_>>().join(", ")
            )
        }
        Expected::V128(V128Expected::F64x2(l)) => {
            format!(
                "v128 f64x2 [{}]",
                l.iter().map(float).collect::<Vec<_>>().join(", ")
            )
        }
        Expected::Null(kind) => {
            format!(
                "ref.null {}",
                kind.map_or("(any)".into(), |k| format!("{k:?}").to_lowercase())
            )
        }
        Expected::Extern(n) => {
            format!("ref.extern {}", n.map_or("(any)".into(), |n| n.to_string()))
        }
        Expected::Func => "ref.func".into(),
        Expected::Either(cases) => {
            format!(
                "either({})",
                cases
                    .iter()
                    .map(describe_expected)
                    .collect::<Vec<_>>()
                    .join(" | ")
            )
        }
    }
}
