//! Entries of table 0 as callees: of Emscripten's `invoke_*` imports and of integer
//! function references (`hb_beamr:call(I, Index, Args)`), which WAMR both resolves as a
//! `call_indirect` would, so they fail with the same trap kinds.

use wasmer::{AsStoreMut, Function, Instance, Table, Value};

use crate::prepare::TABLE_EXPORT;

use crate::failure::HostError;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::test_support::instantiate;

    #[test]
    fn entries_resolve_as_call_indirect_would() {
        let (mut store, instance) = instantiate(
            "(module (table 3 funcref) (elem (i32.const 1) $f) (func $f (result i32) (i32.const 5)))",
        );
        let table = table0(&instance);
        let function = entry(&mut store, table.as_ref(), 1).unwrap();
        assert_eq!(function.call(&mut store, &[]).unwrap()[0], Value::I32(5));
        assert!(matches!(
            entry(&mut store, table.as_ref(), 0),
            Err(HostError::UninitializedElement(0))
        ));
        assert!(matches!(
            entry(&mut store, table.as_ref(), 3),
            Err(HostError::TableOutOfBounds(3))
        ));
        assert!(matches!(
            entry(&mut store, None, 0),
            Err(HostError::TableOutOfBounds(0))
        ));
    }
}
