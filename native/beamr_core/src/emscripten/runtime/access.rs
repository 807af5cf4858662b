//! How the runtime reaches the module: its memory, its table and its functions.

use wasmer::{AsStoreMut, AsStoreRef, Function, Memory, RuntimeError, Value};

use crate::emscripten::host::{integer, value_of, Host};
use crate::emscripten::unwind::Fault;

use super::Runtime;

impl Runtime {
    pub(super) fn table_function(
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
    pub(super) fn call(
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

    fn memory(&self) -> Result<&Memory, RuntimeError> {
        self.memory
            .as_ref()
            .ok_or_else(|| Fault::misuse("the module has no memory"))
    }

    pub(super) fn read(
        &self,
        store: &impl AsStoreRef,
        address: u64,
        bytes: &mut [u8],
    ) -> Result<(), RuntimeError> {
        self.memory()?
            .view(store)
            .read(address, bytes)
            .map_err(|_| Fault::out_of_bounds(address, bytes.len() as u64))
    }

    pub(super) fn write(
        &self,
        store: &impl AsStoreRef,
        address: u64,
        bytes: &[u8],
    ) -> Result<(), RuntimeError> {
        self.memory()?
            .view(store)
            .write(address, bytes)
            .map_err(|_| Fault::out_of_bounds(address, bytes.len() as u64))
    }

    pub(super) fn read_pointer(
        &self,
        store: &impl AsStoreRef,
        address: u64,
    ) -> Result<u64, RuntimeError> {
        let mut bytes = [0u8; 8];
        self.read(store, address, &mut bytes[..self.pointer as usize])?;
        Ok(u64::from_le_bytes(bytes))
    }

    pub(super) fn write_pointer(
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

    pub(super) fn read_byte(
        &self,
        store: &impl AsStoreRef,
        address: u64,
    ) -> Result<u8, RuntimeError> {
        let mut byte = [0u8];
        self.read(store, address, &mut byte)?;
        Ok(byte[0])
    }

    pub(super) fn write_byte(
        &self,
        store: &impl AsStoreRef,
        address: u64,
        value: u8,
    ) -> Result<(), RuntimeError> {
        self.write(store, address, &[value])
    }
}
