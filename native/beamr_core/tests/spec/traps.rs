//! How a raised trap is judged against the message a script expects.
//!
//! Policy: messages are compared loosely, but the *kind* of trap must be right. When the
//! expected message names a known [`TrapKind`], wasmer's message must name the same kind,
//! or the directive fails: "unreachable" where "out of bounds memory access" is expected
//! is what a broken bounds check in a lowering pass would produce. Otherwise the directive
//! passes, with a note when wasmer's text does not contain the expected text (e.g.
//! "uninitialized element" for the spec's "uninitialized element 2").
//! Memory and table out-of-bounds are different kinds: lowering 64-bit tables must keep
//! table faults table faults. An uncaught wasm exception is never a trap.

/// A wasm call or instantiation that did not return normally.
pub enum Raised {
    Trap(String),
    Exception,
}

impl Raised {
    pub fn from_runtime(error: &wasmer::RuntimeError) -> Raised {
        if error.is_exception() {
            Raised::Exception
        } else {
            Raised::Trap(error.message())
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Raised::Trap(message) => format!("trap {message:?}"),
            Raised::Exception => "an uncaught exception".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrapKind {
    MemoryOutOfBounds,
    TableOutOfBounds,
    UninitializedElement,
    IndirectCallTypeMismatch,
    Unreachable,
    DivideByZero,
    IntegerOverflow,
    InvalidConversion,
    StackExhausted,
    NullReference,
}

/// Message fragments of the spec interpreter and of wasmer; the first match wins.
const KINDS: &[(&str, TrapKind)] = &[
    ("out of bounds memory access", TrapKind::MemoryOutOfBounds),
    ("out of bounds table access", TrapKind::TableOutOfBounds),
    ("undefined element", TrapKind::TableOutOfBounds),
    ("uninitialized element", TrapKind::UninitializedElement),
    (
        "indirect call type mismatch",
        TrapKind::IndirectCallTypeMismatch,
    ),
    ("unreachable", TrapKind::Unreachable),
    ("integer divide by zero", TrapKind::DivideByZero),
    ("integer overflow", TrapKind::IntegerOverflow),
    ("invalid conversion to integer", TrapKind::InvalidConversion),
    ("call stack exhausted", TrapKind::StackExhausted),
    ("null", TrapKind::NullReference),
];

fn kind(message: &str) -> Option<TrapKind> {
    KINDS
        .iter()
        .find(|(fragment, _)| message.contains(fragment))
        .map(|&(_, kind)| kind)
}

/// `Ok(note)` when the trap is acceptable, `Err(reason)` when it is the wrong thing.
pub fn judge(expected: &str, raised: &Raised) -> Result<Option<String>, String> {
    let Raised::Trap(actual) = raised else {
        return Err(format!(
            "raised {} instead of trapping with {expected:?}",
            raised.describe()
        ));
    };
    match kind(expected) {
        Some(want) if kind(actual) != Some(want) => {
            Err(format!("trapped with {actual:?}, expected {expected:?}"))
        }
        _ if actual.contains(expected) => Ok(None),
        _ => Ok(Some(format!(
            "trap message {actual:?}, expected {expected:?}"
        ))),
    }
}
