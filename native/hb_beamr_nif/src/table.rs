//! Entries of table 0 as callees: of Emscripten's `invoke_*` imports and of integer
//! function references (`hb_beamr:call(I, Index, Args)`), which WAMR both resolves as a
//! `call_indirect` would, so they fail with the same trap kinds.

use wasmer::{AsStoreMut, Function, Instance, Table, Value};

use beamr_core::prepare::TABLE_EXPORT;

use crate::trap::HostError;

/// Table 0 of `instance`, exported for the host by preparation whatever the module calls it.
pub fn table0(instance: &Instance) -> Option<Table> {
    instance.exports.get_table(TABLE_EXPORT).ok().cloned()
}

/// The function at `index` of table 0 (`None`: the module has no table, so every index is
/// out of bounds).
pub fn entry(
    store: &mut impl AsStoreMut,
    table: Option<&Table>,
    index: u32,
) -> Result<Function, HostError> {
    match table.and_then(|table| table.get(store, index)) {
        Some(Value::FuncRef(Some(function))) => Ok(function),
        Some(Value::FuncRef(None)) => Err(HostError::UninitializedElement(index)),
        Some(_) => Err(HostError::NotAFunction(index)),
        None => Err(HostError::TableOutOfBounds(index)),
    }
}
