//! Start options (`start/2`, `compile/2`, `inspect`) and call options (`call/6`,
//! `call_async/4`), decoded from their maps.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use beamr_core::dirty_pages::Policy;
use beamr_core::emscripten::invoke::Mode;
use beamr_core::prepare::PrepareOptions;
use rustler::types::map::MapIterator;
use rustler::{Atom, Binary, Encoder, Term, TermType};

use crate::atoms;
use crate::codec::decode_charlist;
use crate::error::Error;

/// Start options (see the README): `wamr_compat`, `mode` (`wasm | aot`; both compile
/// with Cranelift), `gas` (metering is always compiled in, so this only validates),
/// `memory_limit` (bytes), `deterministic`, `cache_dir`, `dirty_tracking` (`auto |
/// digests`), `emscripten` (`native | imports`), `timeout`, `hibernate_after`,
/// `hibernate_dir`, `max_live`. Other keys are left to the Erlang side.
pub struct StartOptions {
    pub prepare: PrepareOptions,
    pub cache_dir: Option<PathBuf>,
    pub dirty_tracking: Policy,
    /// Which preparation options were given (an artifact must have been compiled with them).
    pub given: GivenOptions,
    /// `timeout` and `gas` for instantiation and the module's start function.
    pub start_limits: Limits,
    /// Which of Emscripten's imports are answered natively.
    pub emscripten: Mode,
    /// `hibernate_after => Ms | infinity`: idle this long, the instance hibernates.
    pub hibernate_after: Option<Duration>,
    /// `hibernate_dir => Path`: where its hibernation image goes (memory without).
    pub hibernate_dir: Option<PathBuf>,
    /// `max_live => N` (the application env's, passed by `hb_beamr:start/2`): node-wide.
    pub max_live: Option<usize>,
}

#[derive(Default)]
pub struct GivenOptions {
    pub wamr_compat: bool,
    pub deterministic: bool,
    pub memory_limit: bool,
}

/// What a call may use (call/6 options). Only an outermost call's limits apply: a nested
/// call runs within the call that is waiting for its import.
#[derive(Clone, Copy, Default)]
pub struct Limits {
    pub deadline: Option<Instant>,
    pub gas: Option<u64>,
}

/// The longest `cache_dir` taken as a string: Linux's PATH_MAX.
const MAX_PATH_CHARS: usize = 4096;

pub fn decode_start_options(opts: Term) -> Result<StartOptions, Error> {
    let mut options = StartOptions {
        prepare: PrepareOptions::default(),
        cache_dir: None,
        dirty_tracking: Policy::Auto,
        given: GivenOptions::default(),
        start_limits: Limits::default(),
        emscripten: Mode::default(),
        hibernate_after: None,
        hibernate_dir: None,
        max_live: None,
    };
    for (key, value) in MapIterator::new(opts).ok_or(Error::BadArg(opts))? {
        let Ok(key_atom) = key.decode::<Atom>() else {
            continue;
        };
        let bad = || Error::BadOption(key, value);
        // `timeout` and `gas` bound the start as they bound a call; `gas => boolean()` is
        // accepted too (metering is always compiled in).
        if key_atom == atoms::gas() && value.decode::<bool>().is_ok() {
            continue;
        }
        if decode_limit(&mut options.start_limits, key_atom, key, value)? {
            continue;
        }
        if key_atom == atoms::wamr_compat() {
            options.prepare.wamr_compat = value.decode().map_err(|_| bad())?;
            options.given.wamr_compat = true;
        } else if key_atom == atoms::deterministic() {
            options.prepare.deterministic = value.decode().map_err(|_| bad())?;
            options.given.deterministic = true;
        } else if key_atom == atoms::cache_dir() {
            options.cache_dir = Some(decode_path(value).ok_or_else(bad)?);
        } else if key_atom == atoms::mode() {
            let mode: Atom = value.decode().map_err(|_| bad())?;
            if mode != atoms::wasm() && mode != atoms::aot() {
                return Err(bad());
            }
        } else if key_atom == atoms::emscripten() {
            options.emscripten = match value.decode::<Atom>() {
                Ok(mode) if mode == atoms::native() => Mode::Native,
                Ok(mode) if mode == atoms::imports() => Mode::Imports,
                _ => return Err(bad()),
            };
        } else if key_atom == atoms::dirty_tracking() {
            options.dirty_tracking = match value.decode::<Atom>() {
                Ok(policy) if policy == atoms::auto() => Policy::Auto,
                Ok(policy) if policy == atoms::digests() => Policy::Digests,
                _ => return Err(bad()),
            };
        } else if key_atom == atoms::hibernate_after() {
            options.hibernate_after = match value.decode::<Atom>() {
                Ok(atom) if atom == atoms::infinity() => None,
                _ => Some(Duration::from_millis(value.decode().map_err(|_| bad())?)),
            };
        } else if key_atom == atoms::hibernate_dir() {
            options.hibernate_dir = Some(decode_path(value).ok_or_else(bad)?);
        } else if key_atom == atoms::max_live() {
            options.max_live = Some(value.decode().map_err(|_| bad())?);
        } else if key_atom == atoms::memory_limit() {
            options.prepare.memory_limit = value.decode().map_err(|_| bad())?;
            options.given.memory_limit = true;
        }
    }
    Ok(options)
}

/// Call options (call/6 `Opts`): `timeout => Ms | infinity`, `gas => N | infinity`. The
/// map is also the import fun's options, so other keys are the caller's own.
pub fn decode_limits(opts: Term) -> Result<Limits, Error> {
    if !opts.is_map() {
        return Err(Error::BadArg(opts));
    }
    // Looked up, not iterated: the caller's own keys may be many.
    let mut limits = Limits::default();
    for key_atom in [atoms::timeout(), atoms::gas()] {
        let key = key_atom.encode(opts.get_env());
        if let Ok(value) = opts.map_get(key) {
            decode_limit(&mut limits, key_atom, key, value)?;
        }
    }
    Ok(limits)
}

/// Takes `timeout => Ms | infinity` or `gas => N | infinity` into `limits`: whether `key`
/// was one of them, or the bad option.
fn decode_limit<'a>(
    limits: &mut Limits,
    key_atom: Atom,
    key: Term<'a>,
    value: Term<'a>,
) -> Result<bool, Error<'a>> {
    let unbounded = value.decode::<Atom>().is_ok_and(|a| a == atoms::infinity());
    let bad = |_| Error::BadOption(key, value);
    if key_atom == atoms::timeout() {
        if !unbounded {
            let ms: u64 = value.decode().map_err(bad)?;
            // A deadline beyond what the clock can represent is no deadline.
            limits.deadline = Instant::now().checked_add(Duration::from_millis(ms));
        }
        Ok(true)
    } else if key_atom == atoms::gas() {
        if !unbounded {
            limits.gas = Some(value.decode().map_err(bad)?);
        }
        Ok(true)
    } else {
        Ok(false)
    }
}

/// A `cache_dir` value: a binary or a string.
fn decode_path(term: Term) -> Option<PathBuf> {
    let path = match term.get_type() {
        TermType::Binary => {
            String::from_utf8(Binary::from_term(term).ok()?.as_slice().to_vec()).ok()?
        }
        TermType::List => decode_charlist(term, MAX_PATH_CHARS)?,
        _ => return None,
    };
    (!path.is_empty()).then(|| PathBuf::from(path))
}
