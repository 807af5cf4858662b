//! Why a wasm call failed: the host's own errors carried through wasm as traps
//! ([`HostError`]) and the classification of every failure into the reasons hb_beamr
//! reports ([`CallFailure`], [`TrapKind`]). The NIF encodes them as Erlang terms.

use wasmer::sys::vm::TrapCode;
use wasmer::RuntimeError;

use crate::emscripten::Fault;
/// Failures raised by our own host functions, carried through wasm as traps.
#[derive(Debug)]
pub enum HostError {
    /// The import fun raised or returned something unusable; the Erlang side knows why.
    ImportFailed,
    /// The process handling the import died.
    CallerDied,
    /// The instance was stopped while the call ran or waited in an import.
    Stopped,
    /// The call's deadline passed.
    Timeout,
    /// The call used its gas budget.
    OutOfGas,
    /// Calls nested too deeply (through imports or `invoke_*`) for the executor's stack.
    NestedTooDeep,
    /// The exceptions thrown in the call would hold more than `MAX_EXCEPTION_FRAMES` stack
    /// frames (each keeps a backtrace until the call ends).
    ExceptionFrames,
    /// A call through table 0 (`invoke_*`, an integer function reference) found no entry at
    /// this index, a null entry, or something other than a function.
    TableOutOfBounds(u32),
    UninitializedElement(u32),
    NotAFunction(u32),
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::ImportFailed => f.write_str("import failed"),
            HostError::CallerDied => f.write_str("the process handling the import died"),
            HostError::Stopped => f.write_str("instance stopped"),
            HostError::Timeout => f.write_str("the call's deadline passed"),
            HostError::OutOfGas => f.write_str("the call used its gas budget"),
            HostError::NestedTooDeep => {
                f.write_str("calls nested too deeply (through imports or invoke_*)")
            }
            HostError::ExceptionFrames => write!(
                f,
                "the exceptions thrown in this call would hold more than {} stack frames",
                crate::fuel::MAX_EXCEPTION_FRAMES
            ),
            HostError::TableOutOfBounds(index) => {
                write!(f, "table index {index} is out of bounds of table 0")
            }
            HostError::UninitializedElement(index) => write!(f, "entry {index} of table 0 is null"),
            HostError::NotAFunction(index) => {
                write!(f, "entry {index} of table 0 is not a function")
            }
        }
    }
}

impl std::error::Error for HostError {}

/// The reason term of a failed call: `stopped`, `import_failed` (completed by the Erlang
/// side, which knows the fun's error) or `{trap, Kind, Message}`.
#[derive(Debug, Clone)]
pub enum CallFailure {
    Stopped,
    /// Instantiation failed to link (e.g. a non-function import).
    InvalidModule(String),
    /// The OS refused what the instance needs (a thread, memory mappings).
    ResourceLimit(Resource),
    ImportFailed,
    Trap {
        kind: TrapKind,
        message: String,
    },
    /// `{trap, exception, Reason}`: an import handler's `{import_exception, Reason}` that
    /// no `invoke_*` caught (Reason in the external term format).
    ImportException(Vec<u8>),
    /// `{badarg, Detail}` found by the executor (an integer function reference's arguments
    /// against the table entry's type), in the external term format.
    BadArg(Vec<u8>),
    /// `{invalid_snapshot, Why}`: a hibernated instance's image could not be read back
    /// (a damaged or missing file); the instance stays hibernated.
    InvalidSnapshot(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Thread,
    Memory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    Unreachable,
    OutOfBounds,
    StackOverflow,
    IntegerOverflow,
    DivisionByZero,
    BadConversion,
    IndirectCallTypeMismatch,
    TableOutOfBounds,
    UninitializedElement,
    UnalignedAtomic,
    Exception,
    OutOfGas,
    Timeout,
    CallerDied,
    Other,
}

impl CallFailure {
    pub fn classify(error: &RuntimeError, stopped: bool) -> CallFailure {
        if let Some(host) = error.downcast_ref::<HostError>() {
            return CallFailure::from(host);
        }
        if let Some(fault) = error.downcast_ref::<Fault>() {
            let kind = if fault.out_of_bounds {
                TrapKind::OutOfBounds
            } else {
                TrapKind::Other
            };
            return CallFailure::Trap {
                kind,
                message: fault.message.clone(),
            };
        }
        if stopped {
            return CallFailure::Stopped;
        }
        let kind = if error.is_exception() {
            TrapKind::Exception
        } else {
            match error.clone().to_trap() {
                Some(TrapCode::StackOverflow) => TrapKind::StackOverflow,
                Some(TrapCode::HeapAccessOutOfBounds) => TrapKind::OutOfBounds,
                Some(TrapCode::HeapMisaligned) | Some(TrapCode::UnalignedAtomic) => {
                    TrapKind::UnalignedAtomic
                }
                Some(TrapCode::TableAccessOutOfBounds) => TrapKind::TableOutOfBounds,
                Some(TrapCode::IndirectCallToNull) => TrapKind::UninitializedElement,
                Some(TrapCode::BadSignature) => TrapKind::IndirectCallTypeMismatch,
                Some(TrapCode::IntegerOverflow) => TrapKind::IntegerOverflow,
                Some(TrapCode::IntegerDivisionByZero) => TrapKind::DivisionByZero,
                Some(TrapCode::BadConversionToInteger) => TrapKind::BadConversion,
                Some(TrapCode::UnreachableCodeReached) => TrapKind::Unreachable,
                Some(TrapCode::UncaughtException) => TrapKind::Exception,
                _ => TrapKind::Other,
            }
        };
        CallFailure::Trap {
            kind,
            message: error.message(),
        }
    }

    pub fn panic(message: String) -> CallFailure {
        // wasmer unwraps the mapping of each further wasm stack (a nested call's): what
        // failed is the OS's memory, not the module.
        if message.contains("kind: OutOfMemory") {
            return CallFailure::ResourceLimit(Resource::Memory);
        }
        CallFailure::Trap {
            kind: TrapKind::Other,
            message,
        }
    }
}

impl From<&HostError> for CallFailure {
    fn from(error: &HostError) -> CallFailure {
        let trap = |kind| CallFailure::Trap {
            kind,
            message: error.to_string(),
        };
        match error {
            HostError::ImportFailed => CallFailure::ImportFailed,
            HostError::Stopped => CallFailure::Stopped,
            HostError::CallerDied => trap(TrapKind::CallerDied),
            HostError::Timeout => trap(TrapKind::Timeout),
            HostError::OutOfGas => trap(TrapKind::OutOfGas),
            HostError::NestedTooDeep | HostError::ExceptionFrames => trap(TrapKind::StackOverflow),
            HostError::TableOutOfBounds(_) => trap(TrapKind::TableOutOfBounds),
            HostError::UninitializedElement(_) => trap(TrapKind::UninitializedElement),
            HostError::NotAFunction(_) => trap(TrapKind::IndirectCallTypeMismatch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::test_support::{call, instantiate};

    #[test]
    fn host_errors_keep_their_kind_through_wasm() {
        let error = RuntimeError::user(Box::new(HostError::OutOfGas));
        assert!(matches!(
            CallFailure::classify(&error, false),
            CallFailure::Trap {
                kind: TrapKind::OutOfGas,
                ..
            }
        ));
        let error = RuntimeError::user(Box::new(HostError::Stopped));
        assert!(matches!(
            CallFailure::classify(&error, false),
            CallFailure::Stopped
        ));
        assert!(matches!(
            CallFailure::from(&HostError::ExceptionFrames),
            CallFailure::Trap {
                kind: TrapKind::StackOverflow,
                ..
            }
        ));
    }

    #[test]
    fn traps_are_classified_by_their_code_unless_the_instance_stopped() {
        let (mut store, instance) = instantiate("(module (func (export \"f\") unreachable))");
        let error = call(&mut store, &instance, "f", &[]).unwrap_err();
        assert!(matches!(
            CallFailure::classify(&error, false),
            CallFailure::Trap {
                kind: TrapKind::Unreachable,
                ..
            }
        ));
        // A stop makes the module trap at its next check: that is no fault of the module.
        assert!(matches!(
            CallFailure::classify(&error, true),
            CallFailure::Stopped
        ));
    }

    #[test]
    fn a_failed_stack_mapping_is_a_resource_limit() {
        let message = "called `Result::unwrap()` on an `Err` value: Os { kind: OutOfMemory }";
        assert!(matches!(
            CallFailure::panic(message.into()),
            CallFailure::ResourceLimit(Resource::Memory)
        ));
        assert!(matches!(
            CallFailure::panic("other".into()),
            CallFailure::Trap {
                kind: TrapKind::Other,
                ..
            }
        ));
    }
}
