//! The only directives the harness may skip: those whose module needs a proposal wasmer's
//! Cranelift backend lacks (gc, including its typed function references, and tail calls).
//!
//! Each entry names a directive by file and line. An entry is not trusted: the runner
//! compiles the directive's module and requires it to fail with the named proposal's
//! error, so an entry cannot hide any other failure, and an entry that no longer matches a
//! directive fails the file. Directives that merely use an excluded module (invoking it,
//! registering it, importing from it) are excluded as its dependents, never silently.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proposal {
    Gc,
    /// Typed function references (`(ref $t)`), the part of gc that `exceptions/` uses.
    FunctionReferences,
    TailCall,
}

impl Proposal {
    pub fn name(self) -> &'static str {
        match self {
            Proposal::Gc => "gc",
            Proposal::FunctionReferences => "typed function references (gc)",
            Proposal::TailCall => "tail calls",
        }
    }
}

pub struct Exclusion {
    /// Path relative to the spec-tests directory.
    pub file: &'static str,
    pub line: u32,
    pub proposal: Proposal,
    pub why: &'static str,
}

pub const EXCLUSIONS: &[Exclusion] = &[
    Exclusion {
        file: "exceptions/tag.wast",
        line: 30,
        proposal: Proposal::Gc,
        why: "exports a tag typed by a `rec` group (link-time typing of tags); \
              its `register \"M\"` and the import test at line 59 depend on it",
    },
    Exclusion {
        file: "exceptions/tag.wast",
        line: 40,
        proposal: Proposal::Gc,
        why: "imports a tag typed by a `rec` group",
    },
    Exclusion {
        file: "exceptions/tag.wast",
        line: 48,
        proposal: Proposal::Gc,
        why: "assert_unlinkable on a tag typed by the other type of a `rec` group",
    },
    Exclusion {
        file: "exceptions/try_table.wast",
        line: 10,
        proposal: Proposal::TailCall,
        why: "the main try_table module uses `return_call` and `return_call_indirect` inside \
              try_table; the assertions on lines 282-340 depend on it",
    },
    Exclusion {
        file: "exceptions/try_table.wast",
        line: 420,
        proposal: Proposal::FunctionReferences,
        why: "a tag carrying `(ref $t)`; the assertions on lines 464-468 depend on it",
    },
    Exclusion {
        file: "exceptions/try_table.wast",
        line: 470,
        proposal: Proposal::FunctionReferences,
        why: "assert_invalid on a catch of `(ref null $t)` into `(ref $t)`: rejected for the \
              types, not for the subtyping the test is about",
    },
    Exclusion {
        file: "exceptions/try_table.wast",
        line: 483,
        proposal: Proposal::FunctionReferences,
        why: "assert_invalid on a catch_ref of `(ref null $t)` into `(ref $t)`, as line 470",
    },
    Exclusion {
        file: "legacy-exceptions/try_catch.wast",
        line: 10,
        proposal: Proposal::TailCall,
        why: "the main try/catch module uses `return_call` and `return_call_indirect` inside \
              try; the assertions on lines 180-223 depend on it",
    },
    Exclusion {
        file: "legacy-exceptions/try_delegate.wast",
        line: 3,
        proposal: Proposal::TailCall,
        why: "the main try/delegate module uses `return_call` and `return_call_indirect` \
              inside try; the assertions on lines 190-219 depend on it",
    },
    Exclusion {
        file: "memory64/table_init64.wast",
        line: 2457,
        proposal: Proposal::Gc,
        why: "a 64-bit table of `arrayref` filled with `array.new_default`; the assertion on \
              line 2471 depends on it",
    },
];

/// wasmparser's wording when validation meets an instruction or type of a disabled proposal.
const SIGNATURES: &[(&str, Proposal)] = &[
    ("tail calls support is not enabled", Proposal::TailCall),
    (
        "function references support is not enabled",
        Proposal::FunctionReferences,
    ),
    (
        "function references required for",
        Proposal::FunctionReferences,
    ),
    ("gc support is not enabled", Proposal::Gc),
    ("requires `gc` proposal", Proposal::Gc),
    ("gc proposal", Proposal::Gc),
    ("without the gc feature", Proposal::Gc),
    ("when gc types are disabled", Proposal::Gc),
    ("gc types are disallowed", Proposal::Gc),
];

/// wasmparser's generic wordings for other disabled proposals (memory64, legacy
/// exceptions, custom descriptors, ...).
const FEATURE_GATES: &[&str] = &[
    "not enabled",
    "must be enabled",
    "feature required",
    "proposal",
    "custom descriptors required",
];

/// The excludable proposal a compile error is about, if it is about one.
pub fn missing_proposal(error: &str) -> Option<Proposal> {
    SIGNATURES
        .iter()
        .find(|(fragment, _)| error.contains(fragment))
        .map(|&(_, proposal)| proposal)
}

/// Whether a compile error only says that some proposal is disabled. Such a rejection
/// says nothing about the validity `assert_invalid`/`assert_malformed` test.
pub fn is_feature_gate(error: &str) -> bool {
    missing_proposal(error).is_some() || FEATURE_GATES.iter().any(|gate| error.contains(gate))
}

pub fn listed(file: &str, line: u32) -> Option<&'static Exclusion> {
    EXCLUSIONS.iter().find(|e| e.file == file && e.line == line)
}
