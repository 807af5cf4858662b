//! Emscripten's JavaScript runtime for C++ exceptions and setjmp/longjmp, answered natively.
//!
//! Emscripten builds made without wasm exception handling throw through imports:
//! `__cxa_throw`, `__cxa_rethrow`, `__resumeException` and `_emscripten_throw_longjmp`
//! unwind, like a JavaScript exception, to the nearest enclosing `invoke_*`, which restores
//! the stack pointer, calls the module's `setThrew(1, 0)` and returns zeros. The landing pad
//! that follows asks which `catch` clause matches (`__cxa_find_matching_catch_N` and the
//! temporary return register) and enters it (`__cxa_begin_catch` ... `__cxa_end_catch`);
//! a longjmp's landing pad finds its `setjmp` from what the module recorded itself.
//!
//! Here a throw is a host function returning a [`Thrown`] error: wasmer unwinds the wasm
//! frames up to the host function that called into them, where `invoke_*` recognises it
//! ([`invoke_catches`]). [`Runtime`] keeps what Emscripten's JavaScript library keeps (the
//! last exception thrown, the stack of those caught, the count of those uncaught, the
//! temporary return register) and answers the landing-pad imports ([`Import`]) the way
//! that library does, over the exception header in front of every thrown object.

mod imports;
pub mod invoke;
mod runtime;

pub use imports::Import;
pub use runtime::Runtime;

use wasmer::{AsStoreMut, Function, Instance, RuntimeError, Type, Value};

/// What a throw carries up to the nearest `invoke_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Thrown {
    /// A C++ exception: the address of the thrown object.
    Cxx(u64),
    /// A `longjmp`: the module recorded where to (through `setThrew`) before throwing.
    Longjmp,
    /// An exception the embedder raised at an import's call site (an import handler's
    /// answer), with the embedder's payload.
    Foreign(Vec<u8>),
}

impl Thrown {
    /// The error that unwinds the wasm frames with this throw.
    pub fn raise(self) -> RuntimeError {
        RuntimeError::user(Box::new(self))
    }

    /// The throw `error` unwinds with, if it is one.
    pub fn of(error: &RuntimeError) -> Option<&Thrown> {
        error.downcast_ref::<Thrown>()
    }
}

impl std::fmt::Display for Thrown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Thrown::Cxx(address) => write!(f, "C++ exception thrown at address {address}"),
            Thrown::Longjmp => f.write_str("longjmp to a setjmp that is no longer on the stack"),
            Thrown::Foreign(_) => f.write_str("exception raised by an import handler"),
        }
    }
}

impl std::error::Error for Thrown {}

/// The module used the runtime in a way no Emscripten build does: a pointer outside
/// memory, `__cxa_rethrow` or `__cxa_end_catch` with nothing caught, a missing export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Whether it was an access outside memory (a trap of that kind to the caller).
    pub out_of_bounds: bool,
    pub message: String,
}

impl Fault {
    fn raise(out_of_bounds: bool, message: String) -> RuntimeError {
        RuntimeError::user(Box::new(Fault {
            out_of_bounds,
            message,
        }))
    }

    pub(crate) fn misuse(message: impl Into<String>) -> RuntimeError {
        Fault::raise(false, message.into())
    }

    pub(crate) fn out_of_bounds(address: u64, len: u64) -> RuntimeError {
        Fault::raise(
            true,
            format!("Emscripten runtime: {len} bytes at address {address} are outside memory"),
        )
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fault {}

/// Whether `invoke_*` catches `error`: a throw of this runtime, or a wasm exception (from
/// modules built with wasm exception handling). Traps and the host's own errors (a stop,
/// a timeout) go on unwinding.
pub fn invoke_catches(error: &RuntimeError) -> bool {
    error.is_exception() || Thrown::of(error).is_some()
}

/// How the runtime calls the module's own functions (`setThrew`, `__cxa_can_catch`,
/// `malloc`, a destructor) from inside an import: each such call runs on a wasm stack of
/// its own, so the embedder bounds them with its other nested calls.
pub trait Host {
    fn call(
        &self,
        store: &mut impl AsStoreMut,
        function: &Function,
        args: &[Value],
    ) -> Result<Box<[Value]>, RuntimeError>;
}

/// The first of `names` that `instance` exports as a function (builds name some helpers
/// differently).
pub fn first_export(instance: &Instance, names: &[&str]) -> Option<Function> {
    names
        .iter()
        .find_map(|name| instance.exports.get_function(name).ok().cloned())
}

/// An integer wasm value as an unsigned 64-bit number (an i32 zero-extended, as pointers
/// and type ids are); anything else as 0.
pub fn integer(value: &Value) -> u64 {
    match value {
        Value::I32(n) => *n as u32 as u64,
        Value::I64(n) => *n as u64,
        _ => 0,
    }
}

/// `n` as a value of type `ty` (truncated to 32 bits for i32; references are null).
pub fn value_of(ty: Type, n: u64) -> Value {
    match ty {
        Type::I32 => Value::I32(n as i32),
        Type::I64 => Value::I64(n as i64),
        Type::F32 => Value::F32(n as f32),
        Type::F64 => Value::F64(n as f64),
        Type::V128 => Value::V128(n as u128),
        Type::FuncRef => Value::FuncRef(None),
        Type::ExternRef => Value::ExternRef(None),
        Type::ExceptionRef => Value::ExceptionRef(None),
    }
}
