//! `call/3,4`: run an export, or (an integer) an entry of table 0, as HyperBEAM's seed
//! allowed.

use std::borrow::Cow;

use beamr_core::failure::{CallFailure, TrapKind};
use rustler::{Binary, Env, LocalPid, Term, TermType};

use super::{instance, request};
use crate::codec::{bounded_length, decode_args, decode_charlist, UncheckedArgs};
use crate::error::{Error, Reply};
use crate::instance::{Command, Shared};
use crate::nif_cpu_time;
use crate::options::{decode_limits, Limits};
use crate::request::Callee;

#[rustler::nif]
fn call<'a>(env: Env<'a>, owner: LocalPid, func: Term<'a>, args: Term<'a>) -> Reply<'a> {
    Reply(call_export(env, owner, func, args, Limits::default()))
}

/// `call/3` with call/6's options.
#[rustler::nif(name = "call")]
fn call_limited<'a>(
    env: Env<'a>,
    owner: LocalPid,
    func: Term<'a>,
    arguments: Term<'a>,
    opts: Term<'a>,
) -> Reply<'a> {
    // (Not named `args`: rustler's generated code uses that name for the NIF's arguments.)
    Reply(decode_limits(opts).and_then(|limits| call_export(env, owner, func, arguments, limits)))
}

fn call_export<'a>(
    env: Env<'a>,
    owner: LocalPid,
    func: Term<'a>,
    args: Term<'a>,
    limits: Limits,
) -> Result<Term<'a>, Error<'a>> {
    let _timed = nif_cpu_time::Timed::start();
    let instance = instance(&owner)?;
    let func = callee(&instance.shared, func, args)?;
    request(env, &instance.shared, |caller, slot| Command::Call {
        caller,
        slot,
        func,
        limits,
        handle: None,
    })
}

/// The function `func` names (an export, or an integer: a table entry) with its
/// arguments.
pub(super) fn callee<'a>(
    shared: &Shared,
    func: Term<'a>,
    args: Term<'a>,
) -> Result<Callee, Error<'a>> {
    if func.get_type() == TermType::Integer {
        return table_entry(func, args);
    }
    let name = match decode_name(func, shared.interface.longest_export_name) {
        Name::Text(name) => name,
        Name::TooLong => return Err(Error::NotFound(func)),
        Name::Invalid => return Err(Error::BadFunction(func)),
    };
    let Some(&index) = shared.interface.export_index.get(name.as_ref()) else {
        return Err(Error::NotFound(func));
    };
    let args = decode_args(args, shared.interface.exports[index].ty.params())?;
    Ok(Callee::Export(index, args))
}

/// A call of entry `func` (an integer) of table 0. The entry's type is known only to the
/// executor, which checks the arguments against it; an integer that cannot index any
/// table traps here.
fn table_entry<'a>(func: Term<'a>, args: Term<'a>) -> Result<Callee, Error<'a>> {
    let Ok(index) = func.decode::<u32>() else {
        return Err(Error::Call(CallFailure::Trap {
            kind: TrapKind::TableOutOfBounds,
            message: format!("table index {func:?} is out of bounds of table 0"),
        }));
    };
    Ok(Callee::TableEntry(index, UncheckedArgs::new(args)?))
}

/// What a function name given as a binary (borrowed, no copy) or a string is.
enum Name<'a> {
    Text(Cow<'a, str>),
    /// Longer than any export's name, so no export's (not read further).
    TooLong,
    Invalid,
}

/// Reads at most `longest` bytes' worth of a name.
fn decode_name<'a>(term: Term<'a>, longest: usize) -> Name<'a> {
    match term.get_type() {
        TermType::Binary => match Binary::from_term(term) {
            Ok(binary) if binary.len() > longest => Name::TooLong,
            Ok(binary) => std::str::from_utf8(binary.as_slice())
                .map_or(Name::Invalid, |name| Name::Text(Cow::Borrowed(name))),
            Err(_) => Name::Invalid,
        },
        TermType::List => match bounded_length(term, longest) {
            Ok(_) => decode_charlist(term, longest)
                .map_or(Name::Invalid, |name| Name::Text(Cow::Owned(name))),
            Err(Some(_)) => Name::TooLong,
            Err(None) => Name::Invalid,
        },
        _ => Name::Invalid,
    }
}
