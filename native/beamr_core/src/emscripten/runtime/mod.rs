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

    /// What a call's error reports for a throw nothing caught: the exception's `what()`
    /// when it is a `std::exception`, else its type's name.
    pub fn describe(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        thrown: &Thrown,
    ) -> String {
        let thrown = match thrown {
            Thrown::Cxx(0) => return "throw; with no exception being handled".to_string(),
            Thrown::Cxx(thrown) => *thrown,
            thrown => return thrown.to_string(),
        };
        let ty = self
            .header(thrown)
            .and_then(|header| self.read_pointer(store, header.wrapping_add(self.type_field())))
            .ok();
        self.describe_object(store, host, thrown, ty)
    }

    /// The same for a wasm exception nothing caught (builds with `-fwasm-exceptions`), when
    /// it is libc++abi's: its payload is the address of the unwind header that ends the
    /// exception's `__cxa_exception`, which says so in its first eight bytes ("CLNGC++\0").
    /// `None` for any other exception.
    pub fn describe_wasm_exception(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        payload: &[Value],
    ) -> Option<String> {
        const CXX_EXCEPTION_CLASS: u64 = 0x434C_4E47_432B_2B00;
        let [value] = payload else { return None };
        let unwind_header = integer(value);
        let mut class = [0u8; 8];
        self.read(store, unwind_header, &mut class).ok()?;
        if u64::from_le_bytes(class) != CXX_EXCEPTION_CLASS {
            return None;
        }
        // The type is 48 bytes before the unwind header in wasm32, 80 in memory64 (LP64 adds
        // two words in front). The object follows the unwind header, 32 bytes in the libc++abi
        // of Emscripten 3.1 (16 in memory64 builds where it is not padded): a polymorphic
        // object's vtable names its type, which tells them apart.
        let type_before = if self.pointer == 4 { 48 } else { 80 };
        let ty = self
            .read_pointer(store, unwind_header.checked_sub(type_before)?)
            .ok();
        let thrown = [32, 16]
            .map(|header_size| unwind_header.wrapping_add(header_size))
            .into_iter()
            .find(|&thrown| ty.is_some() && self.dynamic_type(store, thrown) == ty)
            .unwrap_or(unwind_header.wrapping_add(32));
        Some(self.describe_object(store, host, thrown, ty))
    }

    /// The type info that the vtable of a polymorphic object at `object` names.
    fn dynamic_type(&self, store: &impl AsStoreRef, object: u64) -> Option<u64> {
        let vtable = self.read_pointer(store, object).ok()?;
        self.read_pointer(store, vtable.checked_sub(self.pointer)?)
            .ok()
    }

    /// The report of the object at `thrown`, of type `ty` (if it could be read).
    fn describe_object(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        thrown: u64,
        ty: Option<u64>,
    ) -> String {
        if let Some(message) = ty.and_then(|ty| self.what(store, host, thrown, ty)) {
            return message;
        }
        match ty.and_then(|ty| self.type_name(store, ty)) {
            Some(name) => format!("uncaught C++ exception of type {name}"),
            None => "uncaught C++ exception".to_string(),
        }
    }

    fn throw(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        thrown: u64,
        ty: u64,
        destructor: u64,
    ) -> RuntimeError {
        let mut thrown_at = || -> Result<(), RuntimeError> {
            let header = self.header(thrown)?;
            self.write_pointer(store, header.wrapping_add(self.adjusted_field()), 0)?;
            self.write_pointer(store, header.wrapping_add(self.type_field()), ty)?;
            self.write_pointer(
                store,
                header.wrapping_add(self.destructor_field()),
                destructor,
            )?;
            self.increment_refcount(store, host, thrown)
        };
        if let Err(error) = thrown_at() {
            return error;
        }
        let mut state = self.state.borrow_mut();
        state.last = thrown;
        state.uncaught += 1;
        Thrown::Cxx(thrown).raise()
    }

    /// `throw;`: the innermost caught exception again. It stays on the caught stack: the
    /// catch block's cleanup still ends it on the way out. With none caught, C++ would
    /// terminate; here, as in HyperBEAM's runtime, a null exception is thrown, which only
    /// `catch (...)` catches.
    fn rethrow(&self, store: &mut impl AsStoreMut, host: &impl Host) -> RuntimeError {
        let innermost = self.state.borrow().caught.last().copied();
        match innermost {
            Some(thrown) if thrown != 0 => self.rethrow_primary(store, host, thrown),
            _ => {
                self.state.borrow_mut().last = 0;
                Thrown::Cxx(0).raise()
            }
        }
    }

    /// `std::rethrow_exception`, and `throw;` of the innermost caught exception.
    fn rethrow_primary(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        thrown: u64,
    ) -> RuntimeError {
        let mut rethrown_at = || -> Result<(), RuntimeError> {
            let header = self.header(thrown)?;
            self.write_byte(store, header.wrapping_add(self.rethrown_field()), 1)?;
            self.write_byte(store, header.wrapping_add(self.caught_field()), 0)?;
            self.increment_refcount(store, host, thrown)
        };
        if let Err(error) = rethrown_at() {
            return error;
        }
        let mut state = self.state.borrow_mut();
        state.uncaught += 1;
        state.last = thrown;
        Thrown::Cxx(thrown).raise()
    }

    /// `__resumeException`: a landing pad that only ran cleanups throws on.
    fn resume(&self, thrown: u64) -> RuntimeError {
        let mut state = self.state.borrow_mut();
        if state.last == 0 {
            state.last = thrown;
        }
        Thrown::Cxx(state.last).raise()
    }

    /// Picks the first of a landing pad's catch clause `types` that the exception being
    /// thrown matches: returns the exception, with the clause's type (or the thrown type,
    /// when none matches, or 0 for none at all) in the temporary return register.
    fn find_matching_catch(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        types: &[u64],
    ) -> Result<u64, RuntimeError> {
        let thrown = self.state.borrow().last;
        if thrown == 0 {
            self.set_temp_ret0(store, host, 0)?;
            return Ok(0);
        }
        let header = self.header(thrown)?;
        let adjusted = header.wrapping_add(self.adjusted_field());
        self.write_pointer(store, adjusted, thrown)?;
        let thrown_type = self.read_pointer(store, header.wrapping_add(self.type_field()))?;
        if thrown_type == 0 {
            self.set_temp_ret0(store, host, 0)?;
            return Ok(thrown);
        }
        for &caught_type in types {
            // A catch-all clause, or exactly the thrown type: the thrown type says so.
            if caught_type == 0 || caught_type == thrown_type {
                break;
            }
            let can_catch = self
                .exports
                .can_catch
                .as_ref()
                .ok_or_else(|| Fault::misuse("the module exports no __cxa_can_catch"))?;
            // `__cxa_can_catch` adjusts the pointer in the header for a base class.
            if self.call(
                store,
                host,
                can_catch,
                &[caught_type, thrown_type, adjusted],
            )? != 0
            {
                self.set_temp_ret0(store, host, caught_type as u32)?;
                return Ok(thrown);
            }
        }
        self.set_temp_ret0(store, host, thrown_type as u32)?;
        Ok(thrown)
    }

    /// Enters a catch block: returns what the clause receives (the object, adjusted to
    /// the caught base class, or the thrown pointer for pointer types).
    fn begin_catch(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        thrown: u64,
    ) -> Result<u64, RuntimeError> {
        // A null exception (not C++'s: an import handler's, or a rethrow of nothing),
        // caught by `catch (...)`: there is no object to hand over.
        if thrown == 0 {
            self.push_caught(0)?;
            return Ok(0);
        }
        let header = self.header(thrown)?;
        if self.read_byte(store, header.wrapping_add(self.caught_field()))? == 0 {
            self.write_byte(store, header.wrapping_add(self.caught_field()), 1)?;
            self.state.borrow_mut().uncaught -= 1;
        }
        self.write_byte(store, header.wrapping_add(self.rethrown_field()), 0)?;
        self.push_caught(thrown)?;
        self.exception_ptr(store, host, thrown)
    }

    fn push_caught(&self, thrown: u64) -> Result<(), RuntimeError> {
        let mut state = self.state.borrow_mut();
        if state.caught.len() >= MAX_CAUGHT {
            return Err(Fault::misuse(format!(
                "more than {MAX_CAUGHT} exceptions caught at once"
            )));
        }
        state.caught.push(thrown);
        Ok(())
    }

    /// An `invoke_*` caught `thrown`. What its landing pad will match is the C++
    /// exception being thrown, if that is what it caught: an import handler's exception
    /// is not one, whatever C++ exception is still being handled around it.
    pub fn caught_by_invoke(&self, thrown: Option<&Thrown>) {
        if let Some(Thrown::Foreign(_)) = thrown {
            self.state.borrow_mut().last = 0;
        }
    }

    /// Leaves the innermost catch block: the exception is destroyed unless something
    /// still holds it (a rethrow, `std::exception_ptr`).
    fn end_catch(&self, store: &mut impl AsStoreMut, host: &impl Host) -> Result<(), RuntimeError> {
        self.set_threw(store, host, 0, 0)?;
        let thrown = self.state.borrow_mut().caught.pop();
        let thrown =
            thrown.ok_or_else(|| Fault::misuse("__cxa_end_catch with no exception caught"))?;
        self.decrement_refcount(store, host, thrown)?;
        self.state.borrow_mut().last = 0;
        Ok(())
    }

    /// What a catch clause receives for `thrown`.
    fn exception_ptr(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        thrown: u64,
    ) -> Result<u64, RuntimeError> {
        if thrown == 0 {
            return Ok(0);
        }
        if let Some(get) = &self.exports.get_exception_ptr {
            return self.call(store, host, get, &[thrown]);
        }
        let header = self.header(thrown)?;
        if let Some(is_pointer_type) = &self.exports.is_pointer_type {
            let ty = self.read_pointer(store, header.wrapping_add(self.type_field()))?;
            if self.call(store, host, is_pointer_type, &[ty])? != 0 {
                return self.read_pointer(store, thrown);
            }
        }
        match self.read_pointer(store, header.wrapping_add(self.adjusted_field()))? {
            0 => Ok(thrown),
            adjusted => Ok(adjusted),
        }
    }

    /// `__cxa_allocate_exception` for builds that leave it to the host: the header, zeroed,
    /// in front of `size` bytes from the module's `malloc`.
    fn allocate(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        size: u64,
    ) -> Result<u64, RuntimeError> {
        let malloc = self
            .exports
            .malloc
            .as_ref()
            .ok_or_else(|| Fault::misuse("the module exports no malloc"))?;
        let total = size
            .checked_add(self.header_size())
            .ok_or_else(|| Fault::misuse("exception too large"))?;
        let block = self.call(store, host, malloc, &[total])?;
        if block == 0 {
            return Err(Fault::misuse(format!(
                "malloc of a {size}-byte exception failed"
            )));
        }
        self.write(store, block, &vec![0; self.header_size() as usize])?;
        Ok(block.wrapping_add(self.header_size()))
    }

    fn free_exception(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        thrown: u64,
    ) -> Result<(), RuntimeError> {
        if let Some(free_exception) = &self.exports.free_exception {
            return self
                .call(store, host, free_exception, &[thrown])
                .map(|_| ());
        }
        let free = self
            .exports
            .free
            .as_ref()
            .ok_or_else(|| Fault::misuse("the module exports no free"))?;
        let header = self.header(thrown)?;
        self.call(store, host, free, &[header]).map(|_| ())
    }

    fn increment_refcount(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        thrown: u64,
    ) -> Result<(), RuntimeError> {
        if thrown == 0 {
            return Ok(());
        }
        let increment = &self.exports.increment_refcount;
        self.add_reference(store, host, thrown, increment, 1)
            .map(|_| ())
    }

    /// Drops a reference; the last one (unless the exception is being rethrown) runs the
    /// thrown object's destructor and frees it.
    fn decrement_refcount(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        thrown: u64,
    ) -> Result<(), RuntimeError> {
        if thrown == 0 {
            return Ok(());
        }
        let decrement = &self.exports.decrement_refcount;
        let Some(references) = self.add_reference(store, host, thrown, decrement, u64::MAX)? else {
            return Ok(());
        };
        let header = self.header(thrown)?;
        if references != 1
            || self.read_byte(store, header.wrapping_add(self.rethrown_field()))? != 0
        {
            return Ok(());
        }
        let destructor = self.read_pointer(store, header.wrapping_add(self.destructor_field()))?;
        if destructor != 0 {
            let destructor = self.table_function(store, destructor)?;
            self.call(store, host, &destructor, &[thrown])?;
        }
        self.free_exception(store, host, thrown)
    }

    /// Adds `delta` (1, or `u64::MAX` for -1) to the reference count of `thrown`: through
    /// `export` when the module keeps the counts itself (`None` then), else in the header
    /// (the count before).
    fn add_reference(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        thrown: u64,
        export: &Option<Function>,
        delta: u64,
    ) -> Result<Option<u64>, RuntimeError> {
        if let Some(export) = export {
            return self.call(store, host, export, &[thrown]).map(|_| None);
        }
        let header = self.header(thrown)?;
        let references = self.read_pointer(store, header)?;
        self.write_pointer(store, header, references.wrapping_add(delta))?;
        Ok(Some(references))
    }

    /// `std::exception::what()` of `thrown`, of type `ty`, when that type derives from
    /// `std::exception` (found by walking the type infos' base classes by name).
    fn what(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        thrown: u64,
        ty: u64,
    ) -> Option<String> {
        let offset = self.std_exception_offset(store, ty, &mut { MAX_TYPE_INFOS });
        let offset = offset?;
        let object = thrown.checked_add(offset)?;
        let vtable = self.read_pointer(store, object).ok()?;
        // std::exception's virtual functions: two destructors, then what().
        let what = self
            .read_pointer(store, vtable.checked_add(2 * self.pointer)?)
            .ok()?;
        let what = self.table_function(store, what).ok()?;
        let message = self.call(store, host, &what, &[object]).ok()?;
        self.c_string(store, message)
    }

    /// Where the `std::exception` inside an object of type `ty` starts, if it has one
    /// (public, non-virtual bases only); `budget` bounds the type infos read.
    fn std_exception_offset(
        &self,
        store: &impl AsStoreRef,
        ty: u64,
        budget: &mut u32,
    ) -> Option<u64> {
        *budget = budget.checked_sub(1)?;
        if self.type_name(store, ty)? == "St9exception" {
            return Some(0);
        }
        // A type info's own class tells where its bases are: its vtable's RTTI names it.
        let vtable = self.read_pointer(store, ty).ok()?;
        let class = self
            .read_pointer(store, vtable.checked_sub(self.pointer)?)
            .ok()?;
        let bases = ty.checked_add(2 * self.pointer)?;
        match self.type_name(store, class)?.as_str() {
            "N10__cxxabiv120__si_class_type_infoE" => {
                self.std_exception_offset(store, self.read_pointer(store, bases).ok()?, budget)
            }
            "N10__cxxabiv121__vmi_class_type_infoE" => {
                const VIRTUAL: u64 = 1;
                const PUBLIC: u64 = 2;
                let mut count = [0u8; 4];
                self.read(store, bases.wrapping_add(4), &mut count).ok()?;
                for i in 0..u64::from(u32::from_le_bytes(count)).min(u64::from(*budget)) {
                    let entry = bases.wrapping_add(8 + i * 2 * self.pointer);
                    let base = self.read_pointer(store, entry).ok()?;
                    let flags = self
                        .read_pointer(store, entry.wrapping_add(self.pointer))
                        .ok()?;
                    if flags & VIRTUAL != 0 || flags & PUBLIC == 0 {
                        continue;
                    }
                    // The offset is the flags' signed long shifted right by 8.
                    let offset = if self.pointer == 4 {
                        (flags as u32 as i32 >> 8) as i64
                    } else {
                        flags as i64 >> 8
                    };
                    if let Some(inner) = self.std_exception_offset(store, base, budget) {
                        return Some((offset as u64).wrapping_add(inner));
                    }
                }
                None
            }
            _ => None,
        }
    }

    /// The mangled name in type info `ty` (its second field).
    fn type_name(&self, store: &impl AsStoreRef, ty: u64) -> Option<String> {
        let name = self
            .read_pointer(store, ty.checked_add(self.pointer)?)
            .ok()?;
        self.c_string(store, name)
    }

    /// The NUL-terminated string at `address`, at most `MAX_MESSAGE` bytes of it.
    fn c_string(&self, store: &impl AsStoreRef, address: u64) -> Option<String> {
        let size = self.memory.as_ref()?.view(store).data_size();
        let len = size.checked_sub(address)?.min(MAX_MESSAGE);
        let mut bytes = vec![0; len as usize];
        self.read(store, address, &mut bytes).ok()?;
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
    }

    fn table_function(
        &self,
        store: &mut impl AsStoreMut,
        index: u64,
    ) -> Result<Function, RuntimeError> {
        let entry = u32::try_from(index)
            .ok()
            .and_then(|index| self.table.as_ref()?.get(store, index));
        match entry {
            Some(Value::FuncRef(Some(function))) => Ok(function),
            _ => Err(Fault::misuse(format!(
                "Emscripten runtime: table entry {index} is not a function"
            ))),
        }
    }

    /// Calls a module function with integer `args` in its own parameter types; its first
    /// result as an integer (0 when none).
    fn call(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        function: &Function,
        args: &[u64],
    ) -> Result<u64, RuntimeError> {
        let params: Vec<Value> = function
            .ty(store)
            .params()
            .iter()
            .zip(args)
            .map(|(ty, n)| value_of(*ty, *n))
            .collect();
        let results = host.call(store, function, &params)?;
        Ok(results.first().map_or(0, integer))
    }

    fn header_size(&self) -> u64 {
        6 * self.pointer
    }
    fn type_field(&self) -> u64 {
        self.pointer
    }
    fn destructor_field(&self) -> u64 {
        2 * self.pointer
    }
    fn caught_field(&self) -> u64 {
        3 * self.pointer
    }
    fn rethrown_field(&self) -> u64 {
        3 * self.pointer + 1
    }
    fn adjusted_field(&self) -> u64 {
        4 * self.pointer
    }

    /// The header of the object thrown at `thrown` (its reference count is its first field).
    fn header(&self, thrown: u64) -> Result<u64, RuntimeError> {
        thrown
            .checked_sub(self.header_size())
            .ok_or_else(|| Fault::out_of_bounds(thrown, self.header_size()))
    }

    fn read(
        &self,
        store: &impl AsStoreRef,
        address: u64,
        bytes: &mut [u8],
    ) -> Result<(), RuntimeError> {
        let memory = self
            .memory
            .as_ref()
            .ok_or_else(|| Fault::misuse("the module has no memory"))?;
        memory
            .view(store)
            .read(address, bytes)
            .map_err(|_| Fault::out_of_bounds(address, bytes.len() as u64))
    }

    fn write(
        &self,
        store: &impl AsStoreRef,
        address: u64,
        bytes: &[u8],
    ) -> Result<(), RuntimeError> {
        let memory = self
            .memory
            .as_ref()
            .ok_or_else(|| Fault::misuse("the module has no memory"))?;
        memory
            .view(store)
            .write(address, bytes)
            .map_err(|_| Fault::out_of_bounds(address, bytes.len() as u64))
    }

    fn read_pointer(&self, store: &impl AsStoreRef, address: u64) -> Result<u64, RuntimeError> {
        let mut bytes = [0u8; 8];
        self.read(store, address, &mut bytes[..self.pointer as usize])?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn write_pointer(
        &self,
        store: &impl AsStoreRef,
        address: u64,
        value: u64,
    ) -> Result<(), RuntimeError> {
        self.write(
            store,
            address,
            &value.to_le_bytes()[..self.pointer as usize],
        )
    }

    fn read_byte(&self, store: &impl AsStoreRef, address: u64) -> Result<u8, RuntimeError> {
        let mut byte = [0u8];
        self.read(store, address, &mut byte)?;
        Ok(byte[0])
    }

    fn write_byte(
        &self,
        store: &impl AsStoreRef,
        address: u64,
        value: u8,
    ) -> Result<(), RuntimeError> {
        self.write(store, address, &[value])
    }
}

#[cfg(test)]
mod tests;
