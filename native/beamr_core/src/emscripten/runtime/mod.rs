//! The state Emscripten's JavaScript exception library keeps, and its answers to the
//! module's landing pads.
//!
//! Every thrown object is preceded in memory by Emscripten's `__cxa_exception` header:
//! pointer-sized `referenceCount`, `exceptionType`, `exceptionDestructor`, then the bytes
//! `caught` and `rethrown`, then `adjustedPtr` and padding — 24 bytes in wasm32, 48 in
//! memory64 builds. Builds since 3.1.28 allocate it natively; older ones import
//! `__cxa_allocate_exception` and leave it to the host, which lays it out the same way.
//! Reference counts are the module's own (`__cxa_increment_exception_refcount` exported,
//! since 3.1.36) or kept in the header by the host; either way a throw holds one
//! reference and `__cxa_end_catch` drops it, as Emscripten's library does since 4.0.23.

mod access;
mod catching;
mod header;
mod report;
#[cfg(test)]
mod tests;

use std::cell::RefCell;

use wasmer::{
    AsStoreMut, AsStoreRef, Function, Instance, Memory, RuntimeError, Table, Type, Value,
};

use super::host::{first_export, integer, value_of, Host};
use super::imports::Import;
use super::unwind::{Fault, Thrown};

/// At most this many exceptions are caught at once (catch blocks nested in catch blocks):
/// more is a module entering catch blocks it never leaves, refused instead of kept.
pub const MAX_CAUGHT: usize = 100_000;

/// The longest `what()` message or type name an uncaught exception's report reads.
const MAX_MESSAGE: u64 = 4096;

/// Type infos an uncaught exception's report walks at most to find `std::exception`.
const MAX_TYPE_INFOS: u32 = 256;

/// The module's functions the runtime calls, when it exports them.
struct Exports {
    set_threw: Option<Function>,
    can_catch: Option<Function>,
    is_pointer_type: Option<Function>,
    get_exception_ptr: Option<Function>,
    increment_refcount: Option<Function>,
    decrement_refcount: Option<Function>,
    free_exception: Option<Function>,
    set_temp_ret0: Option<Function>,
    malloc: Option<Function>,
    free: Option<Function>,
}

/// What Emscripten's JavaScript library keeps between its functions' calls.
#[derive(Default)]
struct State {
    /// The exception being thrown or matched (`exceptionLast`): 0 when none.
    last: u64,
    /// Thrown and not yet caught (`std::uncaught_exceptions`).
    uncaught: i64,
    /// Caught and not yet ended, innermost last.
    caught: Vec<u64>,
    /// The temporary return register, for builds that read it through `getTempRet0`.
    temp_ret0: i32,
}

/// The runtime of one instance: built once the instance exists, used by its executor only.
pub struct Runtime {
    memory: Option<Memory>,
    table: Option<Table>,
    exports: Exports,
    /// 4, or 8 in memory64 builds.
    pointer: u64,
    /// Whether the module reads the temporary return register from the host (it imports
    /// `getTempRet0`) rather than keeping it itself.
    host_temp_ret0: bool,
    state: RefCell<State>,
}

impl Runtime {
    /// The runtime of `instance`, whose memory 0 and table 0 are `memory` and `table`.
    /// `host_temp_ret0`: the module imports `getTempRet0`.
    pub fn resolve(
        store: &impl AsStoreRef,
        instance: &Instance,
        memory: Option<Memory>,
        table: Option<Table>,
        host_temp_ret0: bool,
    ) -> Runtime {
        let export = |names: &[&str]| first_export(instance, names);
        let exports = Exports {
            set_threw: export(&["setThrew"]),
            can_catch: export(&["__cxa_can_catch"]),
            is_pointer_type: export(&["__cxa_is_pointer_type"]),
            get_exception_ptr: export(&["__cxa_get_exception_ptr"]),
            increment_refcount: export(&["__cxa_increment_exception_refcount"]),
            decrement_refcount: export(&["__cxa_decrement_exception_refcount"]),
            free_exception: export(&["__cxa_free_exception"]),
            set_temp_ret0: export(&["_emscripten_tempret_set", "setTempRet0"]),
            malloc: export(&["malloc", "emscripten_builtin_malloc"]),
            free: export(&["free", "emscripten_builtin_free"]),
        };
        // Pointers are as wide as what malloc returns or setThrew takes first.
        let pointer_type = [&exports.malloc, &exports.set_threw]
            .into_iter()
            .flatten()
            .find_map(|function| {
                let ty = function.ty(store);
                ty.results().first().or(ty.params().first()).copied()
            });
        let pointer = if pointer_type == Some(Type::I64) {
            8
        } else {
            4
        };
        Runtime {
            memory,
            table,
            exports,
            pointer,
            host_temp_ret0,
            state: RefCell::default(),
        }
    }

    /// Table 0, whose entries `invoke_*` calls.
    pub fn table(&self) -> Option<&Table> {
        self.table.as_ref()
    }

    /// Forgets what the last outermost call left: an exception that escaped it leaves its
    /// catch stack and counts behind, which no later call may see.
    pub fn end_call(&self) {
        *self.state.borrow_mut() = State::default();
    }

    /// Answers `import` called with `args`; `results` are its result types. A throw is an
    /// `Err` carrying a [`Thrown`]; misuse one carrying a [`Fault`].
    pub fn answer(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        import: Import,
        args: &[Value],
        results: &[Type],
    ) -> Result<Vec<Value>, RuntimeError> {
        let arg = |i: usize| args.get(i).map_or(0, integer);
        let result = match import {
            Import::Throw => return Err(self.throw(store, host, arg(0), arg(1), arg(2))),
            Import::Rethrow => return Err(self.rethrow(store, host)),
            Import::RethrowPrimary if arg(0) == 0 => None,
            Import::RethrowPrimary => return Err(self.rethrow_primary(store, host, arg(0))),
            Import::ResumeException => return Err(self.resume(arg(0))),
            Import::CallUnexpected => {
                return Err(Fault::misuse(
                    "std::unexpected called (a dynamic exception specification was violated)",
                ))
            }
            Import::ThrowLongjmp => return Err(Thrown::Longjmp.raise()),
            Import::Longjmp => {
                // Older builds' `emscripten_longjmp` records the target through the host.
                let value = if arg(1) as u32 == 0 { 1 } else { arg(1) };
                self.set_threw(store, host, arg(0), value)?;
                return Err(Thrown::Longjmp.raise());
            }
            Import::FindMatchingCatch => {
                let types: Vec<u64> = args.iter().map(integer).collect();
                Some(self.find_matching_catch(store, host, &types)?)
            }
            Import::BeginCatch => Some(self.begin_catch(store, host, arg(0))?),
            Import::EndCatch => {
                self.end_catch(store, host)?;
                None
            }
            Import::GetExceptionPtr => Some(self.exception_ptr(store, host, arg(0))?),
            Import::TypeidFor => Some(arg(0)),
            Import::UncaughtExceptions => {
                Some(self.state.borrow().uncaught.clamp(0, i32::MAX as i64) as u64)
            }
            Import::CurrentPrimaryException => {
                let top = self.state.borrow().caught.last().copied().unwrap_or(0);
                self.increment_refcount(store, host, top)?;
                Some(top)
            }
            Import::CurrentExceptionType => match self.state.borrow().caught.last().copied() {
                Some(top) => Some(
                    self.read_pointer(store, self.header(top)?.wrapping_add(self.type_field()))?,
                ),
                None => Some(0),
            },
            Import::AllocateException => Some(self.allocate(store, host, arg(0))?),
            Import::FreeException => {
                self.free_exception(store, host, arg(0))?;
                None
            }
            Import::IncrementRefcount => {
                self.increment_refcount(store, host, arg(0))?;
                None
            }
            Import::DecrementRefcount => {
                self.decrement_refcount(store, host, arg(0))?;
                None
            }
            Import::GetTempRet0 => Some(self.state.borrow().temp_ret0 as u32 as u64),
            Import::SetTempRet0 => {
                self.state.borrow_mut().temp_ret0 = arg(0) as i32;
                None
            }
        };
        Ok(results
            .iter()
            .map(|ty| value_of(*ty, result.unwrap_or(0)))
            .collect())
    }

    /// `setThrew(threw, value)`: what `invoke_*` tells the module after catching a throw.
    pub fn set_threw(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        threw: u64,
        value: u64,
    ) -> Result<(), RuntimeError> {
        let set_threw = self
            .exports
            .set_threw
            .as_ref()
            .ok_or_else(|| Fault::misuse("the module exports no setThrew"))?;
        self.call(store, host, set_threw, &[threw, value])
            .map(|_| ())
    }

    /// Sets the temporary return register: the high half of a legalized i64 result, or a
    /// matched catch clause's type.
    pub fn set_temp_ret0(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        value: u32,
    ) -> Result<(), RuntimeError> {
        match &self.exports.set_temp_ret0 {
            Some(set) if !self.host_temp_ret0 => {
                self.call(store, host, set, &[u64::from(value)]).map(|_| ())
            }
            _ => {
                self.state.borrow_mut().temp_ret0 = value as i32;
                Ok(())
            }
        }
    }
}
