//! Every `{error, Reason}` of hb_beamr (the README's table of errors) as one type, and
//! how each becomes its Erlang term. The failures themselves are beamr_core's; this file
//! only names them.

use beamr_core::artifact::ArtifactError;
use beamr_core::compile::CompileError;
use beamr_core::failure::{CallFailure, Resource, TrapKind};
use beamr_core::memory_access::MemoryError;
use beamr_core::snapshot::SnapshotError;
use beamr_core::state::StateError;
use rustler::{Atom, Encoder, Env, Term};

use crate::atoms;
use crate::codec::BadArg;

pub enum Error<'a> {
    /// `stopped`: the instance is gone or stopping.
    Stopped,
    /// `badarg`: an answer to an import that is not pending for the calling process (never
    /// was, was answered already, or went to another process).
    NotPending,
    /// `{badarg, Detail}`.
    BadArg(Term<'a>),
    /// `{badarg, {options, {Key, Value}}}`: the option that has a bad value.
    BadOption(Term<'a>, Term<'a>),
    /// `{badarg, ...}`: values that do not fit a signature.
    Values(BadArg<'a>),
    /// `{badarg, {func, Func}}`: a function name that is neither a string nor UTF-8.
    BadFunction(Term<'a>),
    /// `{not_found, Func}`.
    NotFound(Term<'a>),
    /// Why a call (or a start) failed: `{trap, Kind, Message}`, `stopped`, ...
    Call(CallFailure),
    Memory(MemoryError),
    State(StateError),
    /// No module to start: `{invalid_module, Msg}`, `{invalid_artifact, Why}`, ...
    Compile(CompileError),
    /// `{cache_dir, Why}`: the cache directory cannot be used.
    CacheDir(String),
}

/// What a NIF returns: its answer, or `{error, Reason}`.
pub struct Reply<'a>(pub Result<Term<'a>, Error<'a>>);

impl Encoder for Reply<'_> {
    fn encode<'b>(&self, env: Env<'b>) -> Term<'b> {
        match &self.0 {
            Ok(term) => term.encode(env),
            Err(error) => (atoms::error(), error).encode(env),
        }
    }
}

impl From<CallFailure> for Error<'_> {
    fn from(failure: CallFailure) -> Self {
        Error::Call(failure)
    }
}

impl From<CompileError> for Error<'_> {
    fn from(error: CompileError) -> Self {
        Error::Compile(error)
    }
}

impl<'a> From<BadArg<'a>> for Error<'a> {
    fn from(bad: BadArg<'a>) -> Self {
        Error::Values(bad)
    }
}

impl Encoder for Error<'_> {
    fn encode<'b>(&self, env: Env<'b>) -> Term<'b> {
        match self {
            Error::Stopped => atoms::stopped().encode(env),
            Error::NotPending => atoms::badarg().encode(env),
            Error::BadArg(detail) => (atoms::badarg(), *detail).encode(env),
            Error::BadOption(key, value) => {
                (atoms::badarg(), (atoms::options(), (*key, *value))).encode(env)
            }
            Error::Values(bad) => bad.encode(env),
            Error::BadFunction(func) => (atoms::badarg(), (atoms::func(), *func)).encode(env),
            Error::NotFound(func) => (atoms::not_found(), *func).encode(env),
            Error::Call(failure) => call_failure(env, failure),
            Error::Memory(error) => memory_error(env, error),
            Error::State(error) => state_error(env, error),
            Error::Compile(error) => compile_error(env, error),
            Error::CacheDir(why) => (atoms::cache_dir(), why.as_str()).encode(env),
        }
    }
}

/// The reason term of a failed call: `stopped`, `import_failed` (completed by the Erlang
/// side, which knows the fun's error), `{trap, Kind, Message}`, ...
pub fn call_failure<'b>(env: Env<'b>, failure: &CallFailure) -> Term<'b> {
    match failure {
        CallFailure::Stopped => atoms::stopped().encode(env),
        CallFailure::ImportFailed => atoms::import_failed().encode(env),
        CallFailure::InvalidModule(message) => {
            (atoms::invalid_module(), message_binary(env, message)).encode(env)
        }
        CallFailure::ResourceLimit(resource) => {
            (atoms::resource_limit(), resource_atom(*resource)).encode(env)
        }
        CallFailure::Trap { kind, message } => (
            atoms::trap(),
            trap_atom(*kind),
            message_binary(env, message),
        )
            .encode(env),
        CallFailure::ImportException(reason) => {
            (atoms::trap(), atoms::exception(), stored_term(env, reason)).encode(env)
        }
        CallFailure::BadArg(term) => stored_term(env, term),
        CallFailure::InvalidSnapshot(why) => (atoms::invalid_snapshot(), why.as_str()).encode(env),
    }
}

/// A term kept in the external term format (an import handler's reason, a `badarg`
/// found by the executor); `undefined` if it does not decode, which cannot happen for
/// terms this library encoded.
pub fn stored_term<'b>(env: Env<'b>, bytes: &[u8]) -> Term<'b> {
    env.binary_to_term(bytes)
        .map_or(atoms::undefined().encode(env), |(term, _)| term)
}

fn message_binary<'b>(env: Env<'b>, message: &str) -> Term<'b> {
    let mut binary = rustler::NewBinary::new(env, message.len());
    binary.as_mut_slice().copy_from_slice(message.as_bytes());
    rustler::Binary::from(binary).to_term(env)
}

fn resource_atom(resource: Resource) -> Atom {
    match resource {
        Resource::Thread => atoms::thread(),
        Resource::Memory => atoms::memory(),
    }
}

fn trap_atom(kind: TrapKind) -> Atom {
    match kind {
        TrapKind::Unreachable => atoms::unreachable(),
        TrapKind::OutOfBounds => atoms::out_of_bounds(),
        TrapKind::StackOverflow => atoms::stack_overflow(),
        TrapKind::IntegerOverflow => atoms::integer_overflow(),
        TrapKind::DivisionByZero => atoms::division_by_zero(),
        TrapKind::BadConversion => atoms::bad_conversion(),
        TrapKind::IndirectCallTypeMismatch => atoms::indirect_call_type_mismatch(),
        TrapKind::TableOutOfBounds => atoms::table_out_of_bounds(),
        TrapKind::UninitializedElement => atoms::uninitialized_element(),
        TrapKind::UnalignedAtomic => atoms::unaligned_atomic(),
        TrapKind::Exception => atoms::exception(),
        TrapKind::OutOfGas => atoms::out_of_gas(),
        TrapKind::Timeout => atoms::timeout(),
        TrapKind::CallerDied => atoms::caller_died(),
        TrapKind::Other => atoms::other(),
    }
}

fn memory_error<'b>(env: Env<'b>, error: &MemoryError) -> Term<'b> {
    match *error {
        MemoryError::OutOfBounds { offset, len, size } => {
            (atoms::out_of_bounds(), offset, len, size).encode(env)
        }
        MemoryError::Unterminated { ptr, size } => {
            (atoms::out_of_bounds(), ptr, atoms::unterminated(), size).encode(env)
        }
        MemoryError::StringTooLong { ptr, max } => (atoms::string_too_long(), ptr, max).encode(env),
        MemoryError::TooLarge { len, max } => (atoms::too_large(), len, max).encode(env),
        MemoryError::OutOfMemory => (atoms::resource_limit(), atoms::memory()).encode(env),
        MemoryError::Panicked => (atoms::other(), "panic during a memory operation").encode(env),
        MemoryError::NoMemory => atoms::no_memory().encode(env),
    }
}

fn state_error<'b>(env: Env<'b>, error: &StateError) -> Term<'b> {
    match error {
        StateError::Snapshot(error) => snapshot_error(env, error),
        StateError::Unsnapshottable(what, index) => {
            (atoms::unsnapshottable(), (atom(env, what), *index)).encode(env)
        }
        StateError::CallInProgress => atoms::call_in_progress().encode(env),
        StateError::Panicked => (atoms::other(), "panic during snapshot or restore").encode(env),
        StateError::Grow(what) => (atoms::resource_limit(), atom(env, what)).encode(env),
        StateError::Busy => atoms::busy().encode(env),
        StateError::Disk(why) => (atoms::disk(), why.as_str()).encode(env),
    }
}

/// `{invalid_snapshot, Why}` or `{snapshot_mismatch, Why}`.
pub fn snapshot_error<'b>(env: Env<'b>, error: &SnapshotError) -> Term<'b> {
    match error {
        SnapshotError::Invalid(why) => (atoms::invalid_snapshot(), why.as_str()).encode(env),
        SnapshotError::Mismatch(why) => (atoms::snapshot_mismatch(), why.as_str()).encode(env),
    }
}

fn compile_error<'b>(env: Env<'b>, error: &CompileError) -> Term<'b> {
    match error {
        CompileError::InvalidModule(message) | CompileError::Serialize(message) => {
            (atoms::invalid_module(), message.as_str()).encode(env)
        }
        CompileError::MemoryLimit { initial, limit } => {
            (atoms::memory_limit(), *initial, *limit).encode(env)
        }
        CompileError::InvalidArtifact(why) => {
            (atoms::invalid_artifact(), artifact_error(env, why)).encode(env)
        }
        CompileError::NoThreads(_) => (atoms::resource_limit(), atoms::thread()).encode(env),
    }
}

fn artifact_error<'b>(env: Env<'b>, why: &ArtifactError) -> Term<'b> {
    match why {
        ArtifactError::NotAnArtifact => atoms::not_an_artifact().encode(env),
        ArtifactError::Truncated => atoms::truncated().encode(env),
        ArtifactError::Malformed => atoms::malformed().encode(env),
        ArtifactError::BadMac => atoms::bad_mac().encode(env),
        ArtifactError::FormatVersion(v) => (atoms::format_version(), *v).encode(env),
        ArtifactError::EngineMismatch(engine) => {
            (atoms::engine_mismatch(), engine.as_str()).encode(env)
        }
    }
}

/// An atom named by beamr_core (`"memory"`, `"table"`, ...).
fn atom(env: Env, name: &str) -> Atom {
    Atom::from_str(env, name).expect("a short atom name")
}
