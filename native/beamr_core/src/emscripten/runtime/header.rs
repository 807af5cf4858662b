//! The `__cxa_exception` header in front of every thrown object, and its reference count.

use wasmer::{AsStoreMut, Function, RuntimeError};

use crate::emscripten::host::Host;
use crate::emscripten::unwind::Fault;

use super::Runtime;

impl Runtime {
    /// `__cxa_allocate_exception` for builds that leave it to the host: the header, zeroed,
    /// in front of `size` bytes from the module's `malloc`.
    pub(super) fn allocate(
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

    pub(super) fn free_exception(
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

    pub(super) fn increment_refcount(
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
    pub(super) fn decrement_refcount(
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
    pub(super) fn add_reference(
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

    pub(super) fn header_size(&self) -> u64 {
        6 * self.pointer
    }

    pub(super) fn type_field(&self) -> u64 {
        self.pointer
    }

    pub(super) fn destructor_field(&self) -> u64 {
        2 * self.pointer
    }

    pub(super) fn caught_field(&self) -> u64 {
        3 * self.pointer
    }

    pub(super) fn rethrown_field(&self) -> u64 {
        3 * self.pointer + 1
    }

    pub(super) fn adjusted_field(&self) -> u64 {
        4 * self.pointer
    }

    /// The header of the object thrown at `thrown` (its reference count is its first field).
    pub(super) fn header(&self, thrown: u64) -> Result<u64, RuntimeError> {
        thrown
            .checked_sub(self.header_size())
            .ok_or_else(|| Fault::out_of_bounds(thrown, self.header_size()))
    }
}
