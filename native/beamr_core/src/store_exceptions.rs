//! The exception objects a wasmer Store keeps, and dropping the ones nothing can reach.
//!
//! wasmer 7.4 allocates an object in the Store for every exception thrown (payload plus a
//! backtrace, ~450 bytes) and frees them only with the Store: a long-lived instance that
//! throws (AO's Lua raises its errors as exceptions) would grow without bound. An
//! exception is referred to by its index in the Store's list, so the objects created
//! during a call can be dropped once the call is over, provided no exnref outlives the
//! call. Within a prepared module an exnref can outlive a call only through an import or
//! export of exnref type: preparation refuses exnref globals and tables (wasmer's
//! Cranelift cannot compile them), so [`may_outlive_calls`] decides it from the module's
//! imports and exports, globals and tables included should that refusal ever be lifted.

use wasmer::sys::vm::{StoreObject, VMExceptionObj};
use wasmer::{AsStoreMut, ExternType, Module, Type};

/// A position in the Store's list of exception objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark(usize);

/// Whether an exception thrown in one call can be used in a later one.
pub fn may_outlive_calls(module: &Module) -> bool {
    let holds = |ty: &ExternType| match ty {
        ExternType::Global(global) => global.ty == Type::ExceptionRef,
        ExternType::Table(table) => table.ty == Type::ExceptionRef,
        ExternType::Function(function) => {
            function.params().iter().chain(function.results()).any(|ty| *ty == Type::ExceptionRef)
        }
        _ => false,
    };
    module.imports().any(|import| holds(import.ty())) || module.exports().any(|export| holds(export.ty()))
}

/// Where the exceptions thrown from now on will start.
pub fn mark(store: &mut impl AsStoreMut) -> Mark {
    Mark(<VMExceptionObj as StoreObject>::list(store.objects_mut().as_sys()).len())
}

/// Drops the exceptions thrown since `mark`. Only between calls (no wasm frame and no
/// host value may still refer to them), and only for modules where none can outlive a
/// call.
pub fn drop_since(store: &mut impl AsStoreMut, mark: Mark) {
    let list = <VMExceptionObj as StoreObject>::list_mut(store.objects_mut().as_sys_mut());
    if list.len() > mark.0 {
        list.truncate(mark.0);
        // A call that threw a million times must not keep the room it needed.
        if list.capacity() > 4 * (mark.0 + 64) {
            list.shrink_to(mark.0 + 64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::test_support::{call, instantiate, prepare_wat};
    use wasmer::Value;

    const THROWER: &str = r#"(module
        (tag $e (param i32))
        (func $throw (param i32) (throw $e (local.get 0)))
        (func (export "throw_n") (param $n i32) (result i32)
            (local $sum i32)
            (block $done (loop $l
                (br_if $done (i32.eqz (local.get $n)))
                (local.set $n (i32.sub (local.get $n) (i32.const 1)))
                (block $c (result i32)
                    (try_table (catch $e $c) (call $throw (local.get $n)))
                    (i32.const 0))
                (local.get $sum) (i32.add) (local.set $sum)
                (br $l)))
            (local.get $sum)))"#;

    #[test]
    fn drops_what_a_call_threw_and_keeps_results() {
        let (mut store, instance) = instantiate(THROWER);
        let before = mark(&mut store);
        for _ in 0..3 {
            let mark_before_call = mark(&mut store);
            let sum = call(&mut store, &instance, "throw_n", &[Value::I32(1000)]).unwrap();
            assert_eq!(sum[0], Value::I32(999 * 1000 / 2));
            assert_eq!(super::mark(&mut store).0 - mark_before_call.0, 1000);
            drop_since(&mut store, mark_before_call);
            assert_eq!(super::mark(&mut store), before);
        }
    }

    #[test]
    fn exnref_signatures_may_outlive_calls() {
        let engine = crate::engine::engine();
        let module = |wat: &str| Module::new(engine, prepare_wat(wat).wasm).unwrap();
        assert!(!may_outlive_calls(&module(THROWER)));
        assert!(may_outlive_calls(&module(r#"(module (func (export "f") (param exnref)))"#)));
        assert!(may_outlive_calls(&module(r#"(module (import "m" "f" (func (result exnref))))"#)));
    }
}
