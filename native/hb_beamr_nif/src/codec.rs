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
use beamr_core::failure::CallFailure;

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

/// No wasm function takes more parameters or returns more results than this (wasmer's
/// own limit), so no argument or result list longer than it is walked.
pub const MAX_VALUES: usize = 1000;

/// The length of a proper list of at most `max` elements: `Err(None)` when `term` is not a
/// proper list, `Err(Some(max))` when it is longer. Walks at most `max + 1` cells, so a
/// NIF's work does not grow with what a careless caller passes.
pub fn bounded_length(term: Term, max: usize) -> Result<usize, Option<usize>> {
    let mut rest = term;
    for length in 0..=max {
        if rest.is_empty_list() {
            return Ok(length);
        }
        rest = rest.list_get_cell().map_err(|_| None)?.1;
    }
    Err(if rest.is_list() { Some(max) } else { None })
}

/// Why an argument list does not fit a signature; becomes `{badarg, Detail}`.
pub enum BadArg<'a> {
    Arity {
        expected: usize,
        got: usize,
    },
    /// More than `MAX_VALUES` values.
    TooMany {
        expected: usize,
    },
    /// A term too large to be a value of any type (not copied to be checked later).
    NotAValue {
        position: usize,
        value: Term<'a>,
    },
    NotAList,
    Value {
        position: usize,
        value: Term<'a>,
        ty: Type,
    },
}

impl<'a> BadArg<'a> {
    pub fn encode<'b>(&self, env: Env<'b>) -> Term<'b> {
        let detail = match self {
            BadArg::NotAList => atoms::arg().encode(env),
            BadArg::Arity { expected, got } => (atoms::arity(), *expected, *got).encode(env),
            BadArg::NotAValue { position, value } => {
                (atoms::arg(), *position, *value, charlist(env, "")).encode(env)
            }
            BadArg::TooMany { expected } => {
                (atoms::arity(), *expected, (atoms::more_than(), MAX_VALUES)).encode(env)
            }
            BadArg::Value {
                position,
                value,
                ty,
            } => {
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
    let got = checked_length(list, types.len())?;
    if got != types.len() {
        return Err(BadArg::Arity {
            expected: types.len(),
            got,
        });
    }
    let items: ListIterator<'a> = list.decode().map_err(|_| BadArg::NotAList)?;
    items
        .zip(types)
        .enumerate()
        .map(|(i, (term, ty))| {
            decode_value(term, *ty).ok_or(BadArg::Value {
                position: i + 1,
                value: term,
                ty: *ty,
            })
        })
        .collect()
}

/// An argument list to check against types that only the executor knows (those of a table
/// entry): it crosses threads in the external term format, and [`UncheckedArgs::check`]
/// decodes it with [`decode_args`], so the values and errors are those of any other call.
pub struct UncheckedArgs(Vec<u8>);

impl UncheckedArgs {
    pub fn new(list: Term) -> Result<UncheckedArgs, BadArg> {
        checked_length(list, MAX_VALUES)?;
        // Copied to be checked later: a term that could not be a value of any type for its
        // size alone is refused first (a bignum or binary of megabytes, a huge tuple).
        let items: ListIterator = list.decode().map_err(|_| BadArg::NotAList)?;
        for (position, term) in items.enumerate() {
            if is_large(term) {
                return Err(BadArg::NotAValue {
                    position: position + 1,
                    value: term,
                });
            }
        }
        Ok(UncheckedArgs(list.to_binary().as_slice().to_vec()))
    }

    /// The arguments as values of `types`, or `{badarg, Detail}` as a call's failure.
    pub fn check(&self, types: &[Type]) -> Result<Values, CallFailure> {
        OwnedEnv::new().run(|env| {
            let (list, _) = env
                .binary_to_term(&self.0)
                .expect("encoded by UncheckedArgs::new");
            decode_args(list, types)
                .map_err(|bad| CallFailure::BadArg(bad.encode(env).to_binary().as_slice().to_vec()))
        })
    }
}

/// The length of an argument or result list for a function expecting `expected` values,
/// or why it is refused.
fn checked_length<'a>(list: Term<'a>, expected: usize) -> Result<usize, BadArg<'a>> {
    bounded_length(list, MAX_VALUES).map_err(|too_long| match too_long {
        Some(_) => BadArg::TooMany { expected },
        None => BadArg::NotAList,
    })
}

/// Whether `term` is larger than any wasm value's term (at most a 128-bit integer) by
/// far.
fn is_large(term: Term) -> bool {
    !fits_in(term, 256)
}

/// The largest reason an import handler gives (a failure's, an exception's) that is kept
/// for a call's result, in nodes and binary bytes.
pub const MAX_REASON: usize = 64 * 1024;

/// `reason` in the external term format, or `{too_large, MAX_REASON}` when it is too large
/// to copy on a normal scheduler.
pub fn bounded_reason(reason: Term) -> Vec<u8> {
    let env = reason.get_env();
    let reason = if fits_in(reason, MAX_REASON) {
        reason
    } else {
        (atoms::too_large(), MAX_REASON).encode(env)
    };
    reason.to_binary().as_slice().to_vec()
}

/// Whether `term` has at most `budget` nodes and bytes of binaries, found without walking
/// more of it than the budget allows.
pub fn fits_in(term: Term, mut budget: usize) -> bool {
    fits(term, &mut budget)
}

fn fits(term: Term, budget: &mut usize) -> bool {
    let Some(left) = budget.checked_sub(1) else {
        return false;
    };
    *budget = left;
    match term.get_type() {
        TermType::Integer => term.decode::<i128>().is_ok() || term.decode::<u128>().is_ok(),
        TermType::Binary => term
            .decode::<rustler::Binary>()
            .is_ok_and(|b| take(budget, b.len())),
        TermType::Tuple => rustler::types::tuple::get_tuple(term).is_ok_and(|items| {
            take(budget, items.len()) && items.iter().all(|item| fits(*item, budget))
        }),
        TermType::List => match bounded_length(term, *budget) {
            Ok(_) => term
                .decode::<ListIterator>()
                .is_ok_and(|mut items| items.all(|item| fits(item, budget))),
            Err(_) => false,
        },
        TermType::Map => {
            term.map_size().is_ok_and(|n| take(budget, 2 * n))
                && rustler::types::map::MapIterator::new(term).is_some_and(|mut pairs| {
                    pairs.all(|(key, value)| fits(key, budget) && fits(value, budget))
                })
        }
        _ => true,
    }
}

fn take(budget: &mut usize, n: usize) -> bool {
    match budget.checked_sub(n) {
        Some(left) => {
            *budget = left;
            true
        }
        None => false,
    }
}

fn decode_value(term: Term, ty: Type) -> Option<WasmValue> {
    match ty {
        Type::I32 => {
            let n: i64 = term.decode().ok()?;
            (-(1i64 << 31)..(1i64 << 32))
                .contains(&n)
                .then_some(WasmValue::I32(n as u32 as i32))
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
        TermType::Integer => term
            .decode::<i64>()
            .ok()
            .map(|n| n as f64)
            .or_else(|| term.decode::<u64>().ok().map(|n| n as f64)),
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
    s.chars()
        .map(|c| c as u32)
        .collect::<Vec<u32>>()
        .encode(env)
}
