//! Emscripten's `invoke_*` imports, answered natively instead of by the import fun.
//!
//! `invoke_<sig>(index, args...)` calls entry `index` of the module's function table.
//! As in Emscripten's JavaScript glue, the stack pointer is saved first and restored when
//! the call fails; a wasm exception (a C++ throw or longjmp) is then reported to the module
//! through `setThrew(1, 0)` and the invoke returns zeros, while traps and host errors
//! (stop, dead caller) propagate.

use wasmer::{AsStoreMut, Function, Instance, RuntimeError, Table, Type, Value};

use beamr_core::prepare::TABLE_EXPORT;

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
            table: instance.exports.get_table(TABLE_EXPORT).ok().cloned(),
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
            _ => return Err(RuntimeError::new("invoke_*: the first argument must be an i32 table index")),
        };
        let table = self.table.as_ref().ok_or_else(|| RuntimeError::new("invoke_*: the module has no table"))?;
        let function = match table.get(store, index) {
            Some(Value::FuncRef(Some(function))) => function,
            Some(_) => return Err(RuntimeError::new(format!("invoke_*: table entry {index} is null"))),
            None => return Err(RuntimeError::new(format!("invoke_*: table index {index} is out of bounds"))),
        };
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
                        set_threw.call(store, &[Value::I32(1), Value::I32(0)])?;
                        Ok(results.iter().map(|ty| zero(*ty)).collect())
                    }
                    _ => Err(error),
                }
            }
        }
    }
}

fn zero(ty: Type) -> Value {
    match ty {
        Type::I32 => Value::I32(0),
        Type::I64 => Value::I64(0),
        Type::F32 => Value::F32(0.0),
        Type::F64 => Value::F64(0.0),
        Type::V128 => Value::V128(0),
        Type::FuncRef => Value::FuncRef(None),
        Type::ExternRef => Value::ExternRef(None),
        Type::ExceptionRef => Value::ExceptionRef(None),
    }
}
