//! Emscripten's `invoke_*` imports and its exception and longjmp runtime
//! (`beamr_core::emscripten`), answered natively instead of by the import fun.
//!
//! `invoke_<sig>(index, args...)` calls entry `index` of the module's function table.
//! As in Emscripten's JavaScript glue, the stack pointer is saved first and restored when
//! the call throws; a throw (a C++ exception or longjmp through the runtime's imports, an
//! import handler's `{import_exception, Reason}`, or a wasm exception) is then reported
//! to the module through `setThrew(1, 0)` and the invoke returns zeros, while traps and
//! host errors (stop, timeout, dead caller) propagate.
//!
//! memory64 builds pass pointer-sized values as i64: the index (`invoke_vjj : (III)`), the
//! stack pointer and `setThrew`'s first parameter. So the index is taken from the low 32
//! bits of an i32 or i64, as WAMR does. Builds without WASM_BIGINT "legalize" i64s in
//! imports: `invoke_jij` then takes each i64 as two i32 halves (low first) and returns the
//! low half of an i64 result, its high half in the temporary return register.

use super::{first_export, integer, invoke_catches, value_of, Host, Import, Runtime, Thrown};
use wasmer::{
    AsStoreMut, Function, FunctionType, Instance, Memory, RuntimeError, Table, Type, Value,
};

use crate::table;

/// Who answers an import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// The import fun, through the process that made the call.
    Fun,
    /// Emscripten's `invoke_*`; `legalized`: its i64s come and go as i32 halves.
    Invoke { legalized: bool },
    /// A function of Emscripten's exception and longjmp runtime.
    Runtime(Import),
}

/// Which imports of an Emscripten build hb_beamr answers itself (start option
/// `emscripten`): all of them, or only `invoke_*` (the import fun then answers the
/// runtime's imports, e.g. raising with `{import_exception, Reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    #[default]
    Native,
    Imports,
}

/// The handler of import `module.name` of type `ty`; an error when it has the name of a
/// runtime function that `mode` answers natively but not its type.
pub fn handler(module: &str, name: &str, ty: &FunctionType, mode: Mode) -> Result<Handler, String> {
    if let Some(letters) = name.strip_prefix("invoke_").filter(|_| module == "env") {
        return Ok(Handler::Invoke {
            legalized: is_legalized(letters, ty),
        });
    }
    match Import::classify(module, name, ty) {
        Some(runtime) if mode == Mode::Native => runtime.map(Handler::Runtime),
        _ => Ok(Handler::Fun),
    }
}

/// Whether `invoke_<letters>` of type `ty` passes i64s as pairs of i32s: its name has an
/// i64 (`j`) that its type does not.
fn is_legalized(letters: &str, ty: &FunctionType) -> bool {
    let params = letters.chars().skip(1);
    let wide = params.clone().filter(|&c| c == 'j').count();
    let halved_params = wide > 0 && ty.params().len() == 1 + params.count() + wide;
    let halved_result = letters.starts_with('j') && ty.results() == [Type::I32];
    !ty.params().contains(&Type::I64) && (halved_params || halved_result)
}

/// What invoke_* and the runtime need from the instance, resolved once after instantiation.
pub struct Hooks {
    pub runtime: Runtime,
    stack_save: Option<Function>,
    stack_restore: Option<Function>,
}

impl Hooks {
    /// `host_temp_ret0`: the module imports `getTempRet0` (see `Runtime::resolve`).
    /// `memory` and `table`: the instance's memory 0 and table 0.
    pub fn resolve(
        store: &impl wasmer::AsStoreRef,
        instance: &Instance,
        memory: Option<Memory>,
        table: Option<Table>,
        host_temp_ret0: bool,
    ) -> Hooks {
        Hooks {
            runtime: Runtime::resolve(store, instance, memory, table, host_temp_ret0),
            stack_save: first_export(instance, &["stackSave", "emscripten_stack_get_current"]),
            stack_restore: first_export(instance, &["stackRestore", "_emscripten_stack_restore"]),
        }
    }

    /// Runs `invoke_*` with wasm arguments `args` (table index first); `results` are
    /// the import's result types.
    pub fn invoke(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        args: &[Value],
        results: &[Type],
        legalized: bool,
    ) -> Result<Vec<Value>, RuntimeError> {
        let index = match args.first() {
            Some(Value::I32(index)) => *index as u32,
            Some(Value::I64(index)) => *index as u32,
            _ => {
                return Err(RuntimeError::new(
                    "invoke_*: the first argument must be an integer table index",
                ))
            }
        };
        let function = table::entry(store, self.runtime.table(), index)
            .map_err(|error| RuntimeError::user(Box::new(error)))?;
        let saved_stack = match &self.stack_save {
            Some(save) => save.call(store, &[])?.first().cloned(),
            None => None,
        };
        let outcome = if legalized {
            self.call_legalized(store, host, &function, &args[1..])
        } else {
            function
                .call(store, &args[1..])
                .map(|values| values.into_vec())
        };
        match outcome {
            Ok(values) => Ok(values),
            Err(error) if invoke_catches(&error) => {
                self.runtime.caught_by_invoke(Thrown::of(&error));
                if let (Some(restore), Some(sp)) = (&self.stack_restore, saved_stack) {
                    restore.call(store, &[sp])?;
                }
                self.runtime.set_threw(store, host, 1, 0)?;
                Ok(results.iter().map(|ty| value_of(*ty, 0)).collect())
            }
            Err(error) => Err(error),
        }
    }

    /// Calls `function` with i64 arguments put together from i32 halves, and returns an
    /// i64 result's low half (its high half goes to the temporary return register).
    fn call_legalized(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        function: &Function,
        halves: &[Value],
    ) -> Result<Vec<Value>, RuntimeError> {
        let ty = function.ty(store);
        let mut halves = halves.iter();
        let mut args = Vec::with_capacity(ty.params().len());
        for param in ty.params() {
            let Some(value) = halves.next() else { break };
            args.push(match param {
                Type::I64 => {
                    let high = halves.next().map_or(0, integer);
                    Value::I64((integer(value) | high << 32) as i64)
                }
                _ => value.clone(),
            });
        }
        let results = function.call(store, &args)?;
        match results.first() {
            Some(Value::I64(wide)) => {
                self.runtime
                    .set_temp_ret0(store, host, (*wide as u64 >> 32) as u32)?;
                Ok(vec![Value::I32(*wide as i32)])
            }
            _ => Ok(results.into_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legalized_invokes_are_told_apart_by_their_types() {
        use Type::{F32, F64, I32, I64};
        let ty = |params: &[Type], results: &[Type]| {
            FunctionType::new(params.to_vec(), results.to_vec())
        };
        assert!(!is_legalized("vii", &ty(&[I32, I32, I32], &[])));
        assert!(!is_legalized("vjj", &ty(&[I64, I64, I64], &[])));
        assert!(!is_legalized("jij", &ty(&[I32, I32, I64], &[I64])));
        assert!(is_legalized("vij", &ty(&[I32, I32, I32, I32], &[])));
        assert!(is_legalized("jij", &ty(&[I32, I32, I32, I32], &[I32])));
        assert!(is_legalized("ji", &ty(&[I32, I32], &[I32])));
        assert!(is_legalized(
            "dijfdii",
            &ty(&[I32, I32, I32, I32, F32, F64, I32, I32], &[F64])
        ));
        assert!(!is_legalized(
            "dijfdii",
            &ty(&[I32, I32, I64, F32, F64, I32, I32], &[F64])
        ));
    }
}
