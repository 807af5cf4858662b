//! Throwing and catching: what the landing-pad imports do to the runtime's state.

use wasmer::{AsStoreMut, RuntimeError};

use crate::emscripten::host::Host;
use crate::emscripten::unwind::{Fault, Thrown};

use super::{Runtime, MAX_CAUGHT};

impl Runtime {
    pub(super) fn throw(
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
    pub(super) fn rethrow(&self, store: &mut impl AsStoreMut, host: &impl Host) -> RuntimeError {
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
    pub(super) fn rethrow_primary(
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
    pub(super) fn resume(&self, thrown: u64) -> RuntimeError {
        let mut state = self.state.borrow_mut();
        if state.last == 0 {
            state.last = thrown;
        }
        Thrown::Cxx(state.last).raise()
    }

    /// Picks the first of a landing pad's catch clause `types` that the exception being
    /// thrown matches: returns the exception, with the clause's type (or the thrown type,
    /// when none matches, or 0 for none at all) in the temporary return register.
    pub(super) fn find_matching_catch(
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
    pub(super) fn begin_catch(
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

    pub(super) fn push_caught(&self, thrown: u64) -> Result<(), RuntimeError> {
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
    pub(super) fn end_catch(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
    ) -> Result<(), RuntimeError> {
        self.set_threw(store, host, 0, 0)?;
        let thrown = self.state.borrow_mut().caught.pop();
        let thrown =
            thrown.ok_or_else(|| Fault::misuse("__cxa_end_catch with no exception caught"))?;
        self.decrement_refcount(store, host, thrown)?;
        self.state.borrow_mut().last = 0;
        Ok(())
    }

    /// What a catch clause receives for `thrown`.
    pub(super) fn exception_ptr(
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
}
