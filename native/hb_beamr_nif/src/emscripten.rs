//! Emscripten's `invoke_*` imports, answered natively instead of by the import fun.
//!
//! `invoke_<sig>(index, args...)` calls entry `index` of the module's function table.
//! As in Emscripten's JavaScript glue, the stack pointer is saved first and restored when
//! the call fails; a wasm exception (a C++ throw or longjmp) is then reported to the module
//! through `setThrew(1, 0)` and the invoke returns zeros, while traps and host errors
//! (stop, dead caller) propagate.
//!
//! memory64 builds pass pointer-sized values as i64: the index (`invoke_vjj : (III)`), the
//! stack pointer and `setThrew`'s first parameter. So the index is taken from the low 32
//! bits of an i32 or i64, as WAMR does, and `setThrew` gets its arguments in its own types.

use wasmer::{AsStoreMut, Function, Instance, RuntimeError, Table, Type, Value};

use crate::table;

/// What `invoke_*` needs from the instance, resolved once after instantiation.
pub struct Hooks {
    table: Option<Table>,
    set_threw: Option<Function>,
    stack_save: Option<Function>,
    stack_restore: Option<Function>,
}

pub fn is_invoke(module: &str, name: &str) -> bool {
    module == "env" && name.starts_with("invoke_")
}

fn first_function(instance: &Instance, names: &[&str]) -> Option<Function> {
    names.iter().find_map(|name| instance.exports.get_function(name).ok().cloned())
}

impl Hooks {
    pub fn resolve(instance: &Instance) -> Hooks {
        Hooks {
            table: table::table0(instance),
            set_threw: first_function(instance, &["setThrew"]),
            stack_save: first_function(instance, &["stackSave", "emscripten_stack_get_current"]),
            stack_restore: first_function(instance, &["stackRestore", "_emscripten_stack_restore"]),
        }
    }

    /// Runs `invoke_*` with wasm arguments `args` (table index first); `results` are
    /// the import's result types.
    pub fn invoke(
        &self,
        store: &mut impl AsStoreMut,
        args: &[Value],
        results: &[Type],
    ) -> Result<Vec<Value>, RuntimeError> {
        let index = match args.first() {
            Some(Value::I32(index)) => *index as u32,
            Some(Value::I64(index)) => *index as u32,
            _ => return Err(RuntimeError::new("invoke_*: the first argument must be an integer table index")),
        };
        let function =
            table::entry(store, self.table.as_ref(), index).map_err(|error| RuntimeError::user(Box::new(error)))?;
        let saved_stack = match &self.stack_save {
            Some(save) => save.call(store, &[])?.first().cloned(),
            None => None,
        };
        match function.call(store, &args[1..]) {
            Ok(values) => Ok(values.into_vec()),
            Err(error) => {
                if let (Some(restore), Some(sp)) = (&self.stack_restore, saved_stack) {
                    restore.call(store, &[sp])?;
                }
                match &self.set_threw {
                    Some(set_threw) if error.is_exception() => {
                        // setThrew(threw = 1, value = 0), in its own parameter types.
                        let params = set_threw.ty(store).params().to_vec();
                        let threw: Vec<Value> =
                            params.iter().enumerate().map(|(i, ty)| number(*ty, i64::from(i == 0))).collect();
                        set_threw.call(store, &threw)?;
                        Ok(results.iter().map(|ty| number(*ty, 0)).collect())
                    }
                    _ => Err(error),
                }
            }
        }
    }
}

/// `n` as a value of type `ty` (references are null whatever `n` is).
fn number(ty: Type, n: i64) -> Value {
    match ty {
        Type::I32 => Value::I32(n as i32),
        Type::I64 => Value::I64(n),
        Type::F32 => Value::F32(n as f32),
        Type::F64 => Value::F64(n as f64),
        Type::V128 => Value::V128(n as u128),
        Type::FuncRef => Value::FuncRef(None),
        Type::ExternRef => Value::ExternRef(None),
        Type::ExceptionRef => Value::ExceptionRef(None),
    }
}
