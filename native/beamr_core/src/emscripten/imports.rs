//! Which imports belong to Emscripten's exception and setjmp/longjmp runtime, and the
//! shapes they must have.
//!
//! Emscripten names these imports the same in every release; their types vary only in
//! pointer width (i32, or i64 in memory64 builds, where some builds still pass type ids
//! as i32). So a shape is a number of integer parameters and of integer results.

use wasmer::{FunctionType, Type};

/// One function of the runtime, as the module imports it from `env`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Import {
    /// `__cxa_throw(thrown, type, destructor)`
    Throw,
    /// `__cxa_rethrow()`
    Rethrow,
    /// `__cxa_rethrow_primary_exception(thrown)` (`std::rethrow_exception`)
    RethrowPrimary,
    /// `__resumeException(thrown)`: a landing pad that only cleaned up throws on.
    ResumeException,
    /// `__cxa_find_matching_catch_N(types...)`: N - 2 catch clause types.
    FindMatchingCatch,
    /// `__cxa_begin_catch(thrown) -> object`
    BeginCatch,
    /// `__cxa_end_catch()`
    EndCatch,
    /// `__cxa_get_exception_ptr(thrown) -> object` (a native export in newer builds)
    GetExceptionPtr,
    /// `llvm_eh_typeid_for(type) -> id`
    TypeidFor,
    /// `__cxa_uncaught_exceptions() -> count`
    UncaughtExceptions,
    /// `__cxa_current_primary_exception() -> thrown` (`std::current_exception`)
    CurrentPrimaryException,
    /// `__cxa_current_exception_type() -> type`
    CurrentExceptionType,
    /// `__cxa_call_unexpected(thrown)`
    CallUnexpected,
    /// `__cxa_allocate_exception(size) -> thrown` (imported by builds before 3.1.28)
    AllocateException,
    /// `__cxa_free_exception(thrown)` (imported by builds before 3.1.28)
    FreeException,
    /// `__cxa_increment_exception_refcount(thrown)` (imported by builds before 3.1.36)
    IncrementRefcount,
    /// `__cxa_decrement_exception_refcount(thrown)` (imported by builds before 3.1.36)
    DecrementRefcount,
    /// `_emscripten_throw_longjmp()`: `longjmp`, after the module recorded its target.
    ThrowLongjmp,
    /// `emscripten_longjmp(env, value)` (older builds record the target through the host)
    Longjmp,
    /// `getTempRet0() -> value` (builds before 3.1.21 keep the register in the host)
    GetTempRet0,
    /// `setTempRet0(value)`
    SetTempRet0,
}

/// `(parameters, results)`, every one an integer.
type Shape = (usize, usize);

impl Import {
    /// The runtime function `module.name` stands for, and the shape it must have.
    pub fn recognise(module: &str, name: &str) -> Option<(Import, Shape)> {
        if module != "env" {
            return None;
        }
        if let Some(count) = name.strip_prefix("__cxa_find_matching_catch_") {
            // N counts the landing pad's personality and cleanup operands too.
            let count: usize = count.parse().ok().filter(|n| (2..=1002).contains(n))?;
            return Some((Import::FindMatchingCatch, (count - 2, 1)));
        }
        let found = match name {
            "__cxa_throw" => (Import::Throw, (3, 0)),
            "__cxa_rethrow" => (Import::Rethrow, (0, 0)),
            "__cxa_rethrow_primary_exception" => (Import::RethrowPrimary, (1, 0)),
            "__resumeException" => (Import::ResumeException, (1, 0)),
            "__cxa_begin_catch" => (Import::BeginCatch, (1, 1)),
            "__cxa_end_catch" => (Import::EndCatch, (0, 0)),
            "__cxa_get_exception_ptr" => (Import::GetExceptionPtr, (1, 1)),
            "llvm_eh_typeid_for" => (Import::TypeidFor, (1, 1)),
            "__cxa_uncaught_exceptions" => (Import::UncaughtExceptions, (0, 1)),
            "__cxa_current_primary_exception" => (Import::CurrentPrimaryException, (0, 1)),
            "__cxa_current_exception_type" => (Import::CurrentExceptionType, (0, 1)),
            "__cxa_call_unexpected" => (Import::CallUnexpected, (1, 0)),
            "__cxa_allocate_exception" => (Import::AllocateException, (1, 1)),
            "__cxa_free_exception" => (Import::FreeException, (1, 0)),
            "__cxa_increment_exception_refcount" => (Import::IncrementRefcount, (1, 0)),
            "__cxa_decrement_exception_refcount" => (Import::DecrementRefcount, (1, 0)),
            "_emscripten_throw_longjmp" => (Import::ThrowLongjmp, (0, 0)),
            "emscripten_longjmp" => (Import::Longjmp, (2, 0)),
            "getTempRet0" => (Import::GetTempRet0, (0, 1)),
            "setTempRet0" => (Import::SetTempRet0, (1, 0)),
            _ => return None,
        };
        Some(found)
    }

    /// The runtime function behind import `module.name` of type `params -> results`:
    /// `None` when the name is not one of them, an error saying what is wrong when the
    /// name is but the type cannot be Emscripten's.
    pub fn classify(module: &str, name: &str, ty: &FunctionType) -> Option<Result<Import, String>> {
        let (import, (param_count, result_count)) = Import::recognise(module, name)?;
        let (params, results) = (ty.params(), ty.results());
        let integers = |types: &[Type]| types.iter().all(|ty| matches!(ty, Type::I32 | Type::I64));
        if params.len() == param_count
            && results.len() == result_count
            && integers(params)
            && integers(results)
        {
            return Some(Ok(import));
        }
        let shape = |count: usize| vec!["i32|i64"; count].join(" ");
        Some(Err(format!(
            "import {module}.{name} has type {}, not Emscripten's ({}) -> ({}); start with \
             emscripten => imports to answer it with the import fun",
            crate::signature::signature(ty),
            shape(param_count),
            shape(result_count),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_runtime_by_name_and_shape() {
        use Type::{F32, I32, I64};
        const NONE: [Type; 0] = [];
        assert_eq!(
            Import::classify(
                "env",
                "__cxa_throw",
                &FunctionType::new([I32, I32, I32], NONE)
            ),
            Some(Ok(Import::Throw))
        );
        assert_eq!(
            Import::classify(
                "env",
                "__cxa_throw",
                &FunctionType::new([I64, I64, I64], NONE)
            ),
            Some(Ok(Import::Throw))
        );
        assert_eq!(
            Import::classify("env", "__cxa_begin_catch", &FunctionType::new([I64], [I64])),
            Some(Ok(Import::BeginCatch))
        );
        assert_eq!(
            Import::classify(
                "env",
                "__cxa_find_matching_catch_4",
                &FunctionType::new([I32, I32], [I32])
            ),
            Some(Ok(Import::FindMatchingCatch))
        );
        assert_eq!(
            Import::classify(
                "env",
                "__cxa_find_matching_catch_2",
                &FunctionType::new(NONE, [I64])
            ),
            Some(Ok(Import::FindMatchingCatch))
        );
        // Not the runtime's: another module, another name, a count that is no count.
        assert_eq!(
            Import::classify(
                "other",
                "__cxa_throw",
                &FunctionType::new([I32, I32, I32], NONE)
            ),
            None
        );
        assert_eq!(
            Import::classify("env", "__cxa_throws", &FunctionType::new(NONE, NONE)),
            None
        );
        assert_eq!(
            Import::classify(
                "env",
                "__cxa_find_matching_catch_x",
                &FunctionType::new(NONE, [I32])
            ),
            None
        );
        assert_eq!(
            Import::classify(
                "env",
                "__cxa_find_matching_catch_1",
                &FunctionType::new(NONE, [I32])
            ),
            None
        );
        // The runtime's name with another type is refused, saying which import and why.
        let wrong = Import::classify("env", "__cxa_throw", &FunctionType::new([F32], [I32]))
            .unwrap()
            .unwrap_err();
        assert!(
            wrong.contains("env.__cxa_throw") && wrong.contains("emscripten => imports"),
            "{wrong}"
        );
        assert!(Import::classify(
            "env",
            "__cxa_find_matching_catch_3",
            &FunctionType::new(NONE, [I32])
        )
        .unwrap()
        .is_err());
        assert!(
            Import::classify("env", "getTempRet0", &FunctionType::new(NONE, NONE))
                .unwrap()
                .is_err()
        );
    }
}
