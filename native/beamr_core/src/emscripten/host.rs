//! How the runtime reaches the module: its functions through the embedder, its exports,
//! and wasm values as the integers Emscripten's ABI passes.

use wasmer::{AsStoreMut, Function, Instance, RuntimeError, Type, Value};

/// How the runtime calls the module's own functions (`setThrew`, `__cxa_can_catch`,
/// `malloc`, a destructor) from inside an import: each such call runs on a wasm stack of
/// its own, so the embedder bounds them with its other nested calls.
pub trait Host {
    fn call(
        &self,
        store: &mut impl AsStoreMut,
        function: &Function,
        args: &[Value],
    ) -> Result<Box<[Value]>, RuntimeError>;
}

/// The first of `names` that `instance` exports as a function (builds name some helpers
/// differently).
pub fn first_export(instance: &Instance, names: &[&str]) -> Option<Function> {
    names
        .iter()
        .find_map(|name| instance.exports.get_function(name).ok().cloned())
}

/// An integer wasm value as an unsigned 64-bit number (an i32 zero-extended, as pointers
/// and type ids are); anything else as 0.
pub fn integer(value: &Value) -> u64 {
    match value {
        Value::I32(n) => *n as u32 as u64,
        Value::I64(n) => *n as u64,
        _ => 0,
    }
}

/// `n` as a value of type `ty` (truncated to 32 bits for i32; references are null).
pub fn value_of(ty: Type, n: u64) -> Value {
    match ty {
        Type::I32 => Value::I32(n as i32),
        Type::I64 => Value::I64(n as i64),
        Type::F32 => Value::F32(n as f32),
        Type::F64 => Value::F64(n as f64),
        Type::V128 => Value::V128(n as u128),
        Type::FuncRef => Value::FuncRef(None),
        Type::ExternRef => Value::ExternRef(None),
        Type::ExceptionRef => Value::ExceptionRef(None),
    }
}
