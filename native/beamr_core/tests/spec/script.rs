//! The front-end-neutral form of a `.wast` script.
//!
//! Both front ends (the `wast` crate and Debian's `wast2json`) translate into these types,
//! so the runner has a single execution path whatever parsed the script. Everything here
//! is owned data: the `wast` crate's syntax tree borrows the source text, and JSON output
//! has its own shapes.

/// One top-level command of a script, with the 1-based source line it starts on.
pub struct Directive {
    pub line: u32,
    pub kind: Kind,
}

/// Wasm bytes, or why the module's text did not parse (only `assert_malformed` expects that).
pub type ModuleBytes = Result<Vec<u8>, String>;

pub enum Kind {
    /// `(module ...)`; `instantiate` is false for `(module definition ...)`.
    Module {
        name: Option<String>,
        bytes: ModuleBytes,
        instantiate: bool,
    },
    /// `(module instance $i $m)`: instantiate a module definition.
    ModuleInstance {
        instance: Option<String>,
        module: Option<String>,
    },
    Register {
        module: Option<String>,
        as_name: String,
    },
    /// A bare `(invoke ...)` or `(get ...)`: it must not trap, its results are ignored.
    Action(Action),
    AssertReturn {
        action: Action,
        expected: Vec<Expected>,
    },
    AssertTrap {
        action: Action,
        message: String,
    },
    AssertExhaustion {
        action: Action,
        message: String,
    },
    AssertException {
        action: Action,
    },
    AssertInvalid {
        bytes: ModuleBytes,
    },
    AssertMalformed {
        bytes: ModuleBytes,
    },
    AssertUnlinkable {
        bytes: ModuleBytes,
        message: String,
    },
    /// Something the harness cannot express (threads, components, GC host references):
    /// counted as a failure, so nothing is skipped silently.
    Unsupported {
        what: String,
    },
}

impl Kind {
    /// The name the report shows, close to the script's own keyword.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Module {
                instantiate: true, ..
            } => "module",
            Kind::Module {
                instantiate: false, ..
            } => "module definition",
            Kind::ModuleInstance { .. } => "module instance",
            Kind::Register { .. } => "register",
            Kind::Action(_) => "action",
            Kind::AssertReturn { .. } => "assert_return",
            Kind::AssertTrap {
                action: Action::Instantiate(_),
                ..
            } => "assert_uninstantiable",
            Kind::AssertTrap { .. } => "assert_trap",
            Kind::AssertExhaustion { .. } => "assert_exhaustion",
            Kind::AssertException { .. } => "assert_exception",
            Kind::AssertInvalid { .. } => "assert_invalid",
            Kind::AssertMalformed { .. } => "assert_malformed",
            Kind::AssertUnlinkable { .. } => "assert_unlinkable",
            Kind::Unsupported { .. } => "unsupported",
        }
    }
}

pub enum Action {
    /// `module` names an instance; `None` is the most recent one.
    Invoke {
        module: Option<String>,
        field: String,
        args: Vec<Arg>,
    },
    Get {
        module: Option<String>,
        field: String,
    },
    /// Instantiate an anonymous module (`assert_trap (module ...)`, i.e. uninstantiable).
    Instantiate(ModuleBytes),
}

/// The reference types a null reference can carry in these scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefKind {
    Func,
    Extern,
    Exn,
}

/// An argument; floats are kept as bits so NaN payloads survive.
pub enum Arg {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    V128(u128),
    Null(RefKind),
    Extern(u32),
}

pub enum Float<Bits> {
    Bits(Bits),
    CanonicalNan,
    ArithmeticNan,
}

pub enum V128Expected {
    /// Integer lanes compare bit for bit, whatever their shape.
    Bits(u128),
    F32x4([Float<u32>; 4]),
    F64x2([Float<u64>; 2]),
}

pub enum Expected {
    I32(i32),
    I64(i64),
    F32(Float<u32>),
    F64(Float<u64>),
    V128(V128Expected),
    /// A null reference, of the given kind when the script says.
    Null(Option<RefKind>),
    /// `ref.extern N`, or any non-null externref when `None`.
    Extern(Option<u32>),
    /// Any non-null funcref (`ref.func` results name no identity we could check).
    Func,
    Either(Vec<Expected>),
}
