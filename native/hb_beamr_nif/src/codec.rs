//! Erlang terms <-> wasm values.
//!
//! Arguments accept both signed and unsigned spellings of integers (i32: -2^31..2^32-1,
//! i64: -2^63..2^64-1), floats or integers for f32/f64 and the atoms `nan`, `infinity`,
//! `neg_infinity`; results always come back signed, with the same atoms for non-finite
//! floats. Values cross threads as [`WasmValue`] because wasmer's `Value` is tied to a Store.

use rustler::{Encoder, Env, ListIterator, OwnedEnv, Term, TermType};
use smallvec::SmallVec;
use wasmer::{Type, Value};

use crate::atoms;
use crate::trap::CallFailure;

/// Argument and result lists: almost always a handful, kept inline so that a call's
/// values cost no allocation on one thread and free on the other.
pub type Values = SmallVec<[WasmValue; 4]>;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WasmValue {
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    V128(u128),
    /// A null reference of the given type. Non-null references never cross the boundary.
    NullRef(Type),
}

/// Why an argument list does not fit a signature; becomes `{badarg, Detail}`.
pub enum BadArg<'a> {
    Arity { expected: usize, got: usize },
    NotAList,
    Value { position: usize, value: Term<'a>, ty: Type },
}

impl<'a> BadArg<'a> {
    pub fn encode(&self, env: Env<'a>) -> Term<'a> {
        let detail = match self {
            BadArg::NotAList => atoms::arg().encode(env),
            BadArg::Arity { expected, got } => (atoms::arity(), *expected, *got).encode(env),
            BadArg::Value { position, value, ty } => {
                let ty = charlist(env, &beamr_core::signature::type_char(*ty).to_string());
                (atoms::arg(), *position, *value, ty).encode(env)
            }
        };
        (atoms::badarg(), detail).encode(env)
    }
}

/// A string given as a list of code points, or `None` for anything else: a list that is
/// improper (rustler's `ListIterator` panics at such a tail), holds a non-character, or
/// is longer than `max` characters (walked cell by cell, so no more than `max` are looked at).
pub fn decode_charlist(term: Term, max: usize) -> Option<String> {
    let mut string = String::new();
    let mut rest = term;
    for _ in 0..=max {
        if rest.is_empty_list() {
            return Some(string);
        }
        let (head, tail) = rest.list_get_cell().ok()?;
        string.push(char::from_u32(head.decode::<u32>().ok()?)?);
        rest = tail;
    }
    None
}

/// Decodes an Erlang list of arguments against the parameter types of a function.
pub fn decode_args<'a>(list: Term<'a>, types: &[Type]) -> Result<Values, BadArg<'a>> {
    let got = list.list_length().map_err(|_| BadArg::NotAList)?;
    if got != types.len() {
        return Err(BadArg::Arity { expected: types.len(), got });
    }
    let items: ListIterator<'a> = list.decode().map_err(|_| BadArg::NotAList)?;
    items
        .zip(types)
        .enumerate()
        .map(|(i, (term, ty))| {
            decode_value(term, *ty).ok_or(BadArg::Value { position: i + 1, value: term, ty: *ty })
        })
        .collect()
}

/// An argument list to check against types that only the executor knows (those of a table
/// entry): it crosses threads in the external term format, and [`UncheckedArgs::check`]
/// decodes it with [`decode_args`], so the values and errors are those of any other call.
pub struct UncheckedArgs(Vec<u8>);

impl UncheckedArgs {
    pub fn new(list: Term) -> Result<UncheckedArgs, BadArg> {
        if !list.is_list() {
            return Err(BadArg::NotAList);
        }
        Ok(UncheckedArgs(list.to_binary().as_slice().to_vec()))
    }

    /// The arguments as values of `types`, or `{badarg, Detail}` as a call's failure.
    pub fn check(&self, types: &[Type]) -> Result<Values, CallFailure> {
        OwnedEnv::new().run(|env| {
            let (list, _) = env.binary_to_term(&self.0).expect("encoded by UncheckedArgs::new");
            decode_args(list, types).map_err(|bad| CallFailure::BadArg(bad.encode(env).to_binary().as_slice().to_vec()))
        })
    }
}

fn decode_value(term: Term, ty: Type) -> Option<WasmValue> {
    match ty {
        Type::I32 => {
            let n: i64 = term.decode().ok()?;
            (-(1i64 << 31)..(1i64 << 32)).contains(&n).then_some(WasmValue::I32(n as u32 as i32))
        }
        Type::I64 => match term.decode::<i64>() {
            Ok(n) => Some(WasmValue::I64(n)),
            Err(_) => term.decode::<u64>().ok().map(|n| WasmValue::I64(n as i64)),
        },
        Type::F32 => decode_float(term).map(|f| WasmValue::F32(f as f32)),
        Type::F64 => decode_float(term).map(WasmValue::F64),
        Type::V128 => term.decode::<u128>().ok().map(WasmValue::V128),
        Type::FuncRef | Type::ExternRef | Type::ExceptionRef => {
            (term == atoms::null().encode(term.get_env())).then_some(WasmValue::NullRef(ty))
        }
    }
}

fn decode_float(term: Term) -> Option<f64> {
    match term.get_type() {
        TermType::Float => term.decode().ok(),
        TermType::Integer => term.decode::<i64>().ok().map(|n| n as f64).or_else(|| term.decode::<u64>().ok().map(|n| n as f64)),
        TermType::Atom => {
            let env = term.get_env();
            if term == atoms::nan().encode(env) {
                Some(f64::NAN)
            } else if term == atoms::infinity().encode(env) {
                Some(f64::INFINITY)
            } else if term == atoms::neg_infinity().encode(env) {
                Some(f64::NEG_INFINITY)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn encode_float<'a>(env: Env<'a>, f: f64) -> Term<'a> {
    if f.is_nan() {
        atoms::nan().encode(env)
    } else if f == f64::INFINITY {
        atoms::infinity().encode(env)
    } else if f == f64::NEG_INFINITY {
        atoms::neg_infinity().encode(env)
    } else {
        f.encode(env)
    }
}

impl Encoder for WasmValue {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match *self {
            WasmValue::I32(n) => n.encode(env),
            WasmValue::I64(n) => n.encode(env),
            WasmValue::F32(f) => encode_float(env, f as f64),
            WasmValue::F64(f) => encode_float(env, f),
            WasmValue::V128(n) => n.encode(env),
            WasmValue::NullRef(_) => atoms::null().encode(env),
        }
    }
}

impl WasmValue {
    pub fn to_wasmer(self) -> Value {
        match self {
            WasmValue::I32(n) => Value::I32(n),
            WasmValue::I64(n) => Value::I64(n),
            WasmValue::F32(f) => Value::F32(f),
            WasmValue::F64(f) => Value::F64(f),
            WasmValue::V128(n) => Value::V128(n),
            WasmValue::NullRef(Type::FuncRef) => Value::FuncRef(None),
            WasmValue::NullRef(Type::ExceptionRef) => Value::ExceptionRef(None),
            WasmValue::NullRef(_) => Value::ExternRef(None),
        }
    }

    /// Non-null references come back as `null` too: an opaque reference means nothing
    /// to Erlang code and could not be passed back in.
    pub fn from_wasmer(value: &Value) -> WasmValue {
        match value {
            Value::I32(n) => WasmValue::I32(*n),
            Value::I64(n) => WasmValue::I64(*n),
            Value::F32(f) => WasmValue::F32(*f),
            Value::F64(f) => WasmValue::F64(*f),
            Value::V128(n) => WasmValue::V128(*n),
            other => WasmValue::NullRef(other.ty()),
        }
    }
}

/// HyperBEAM hands module, function and signature names to Erlang as strings (charlists).
pub fn charlist<'a>(env: Env<'a>, s: &str) -> Term<'a> {
    s.chars().map(|c| c as u32).collect::<Vec<u32>>().encode(env)
}
