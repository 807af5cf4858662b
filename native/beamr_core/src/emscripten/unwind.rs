//! What unwinds out of the runtime's imports: a throw, or a fault of the module.

use wasmer::RuntimeError;

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
