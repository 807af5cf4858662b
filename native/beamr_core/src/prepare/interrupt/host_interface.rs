//! What the instrumented module and its host agree on: the check it imports, the fuel
//! global it exports, and the signal before a throw.

/// The import the instrumented module calls when its fuel runs out.
pub const CHECK_MODULE: &str = "__hb_beamr";
pub const CHECK_NAME: &str = "check";
/// The fuel global, exported for the host.
pub const FUEL_EXPORT: &str = "__hb_beamr_fuel";

/// A check that never interrupts, for embeddings without limits (tests, the spec harness).
pub fn unlimited_check(store: &mut impl wasmer::AsStoreMut) -> wasmer::Function {
    let ty = wasmer::FunctionType::new([wasmer::Type::I64], [wasmer::Type::I64]);
    wasmer::Function::new(store, ty, |_| Ok(vec![wasmer::Value::I64(i64::MAX)]))
}

/// The check's argument before a `throw` (see the `interrupt` module documentation): never a fuel
/// overdraft, which is at least -(2^36) (a bulk operation's length times its units).
pub const THROW_SIGNAL: i64 = i64::MIN;
