//! The objects a wasmer Store keeps for ever, and dropping the ones nothing can reach.
//!
//! wasmer 7.4 frees a Store's objects only with the Store. Two kinds are made while wasm
//! runs, so a long-lived instance would grow without bound:
//!
//! * an exception object for every exception thrown (payload plus a backtrace, ~450
//!   bytes; AO's Lua raises its errors as exceptions);
//! * a function object (~100 bytes) every time the host reads a function reference out
//!   of a table (`Table::get`): each Emscripten `invoke_*` and each call by table index.
//!
//! Both are referred to by their index in the Store's lists, so the objects created since
//! a [`Mark`] can be dropped once nothing refers to them any more. Wasm code refers to
//! functions by their compiled entries, never by these objects; the host keeps function
//! objects only from instantiation (before any mark). An exnref could outlive a call only
//! in a global or a table (preparation refuses both: wasmer's Cranelift cannot compile
//! them) or in the host, which never keeps one: references reach Erlang as `null`.

use wasmer::sys::vm::{StoreObject, VMExceptionObj, VMFunction};
use wasmer::AsStoreMut;

/// A position in the Store's lists of exception and function objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    exceptions: usize,
    functions: usize,
}

/// Where the objects made from now on will start.
pub fn mark(store: &mut impl AsStoreMut) -> Mark {
    let objects = store.objects_mut().as_sys();
    Mark {
        exceptions: <VMExceptionObj as StoreObject>::list(objects).len(),
        functions: <VMFunction as StoreObject>::list(objects).len(),
    }
}

/// Drops the exception and function objects made since `mark`. Only between calls: no
/// wasm frame and no host value may still refer to them.
pub fn drop_since(store: &mut impl AsStoreMut, mark: Mark) {
    let objects = store.objects_mut().as_sys_mut();
    truncate(
        <VMExceptionObj as StoreObject>::list_mut(objects),
        mark.exceptions,
    );
    drop_functions_since(store, mark);
}

/// Drops only the function objects made since `mark`: safe inside a call, once the host
/// values made since (a table entry being called) are gone, whereas an exception thrown
/// meanwhile may still be on its way to a handler.
pub fn drop_functions_since(store: &mut impl AsStoreMut, mark: Mark) {
    truncate(
        <VMFunction as StoreObject>::list_mut(store.objects_mut().as_sys_mut()),
        mark.functions,
    );
}

fn truncate<T>(list: &mut Vec<T>, len: usize) {
    if list.len() > len {
        list.truncate(len);
        // A call that threw a million times must not keep the room it needed.
        if list.capacity() > 4 * (len + 64) {
            list.shrink_to(len + 64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::test_support::{call, instantiate};
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
            assert_eq!(
                super::mark(&mut store).exceptions - mark_before_call.exceptions,
                1000
            );
            drop_since(&mut store, mark_before_call);
            assert_eq!(super::mark(&mut store), before);
        }
    }

    #[test]
    fn drops_the_function_objects_that_table_reads_make() {
        let (mut store, instance) = instantiate(
            r#"(module (table (export "t") 1 funcref) (elem (i32.const 0) $f)
                (func $f (export "f") (result i32) i32.const 7))"#,
        );
        let table = instance.exports.get_table("t").unwrap().clone();
        let before = mark(&mut store);
        for _ in 0..1000 {
            let Some(Value::FuncRef(Some(function))) = table.get(&mut store, 0) else {
                panic!("entry 0")
            };
            assert_eq!(function.call(&mut store, &[]).unwrap()[0], Value::I32(7));
        }
        assert_eq!(mark(&mut store).functions - before.functions, 1000);
        drop_functions_since(&mut store, before);
        assert_eq!(mark(&mut store), before);
        // The instance's own exports still work: they were made before the mark.
        assert_eq!(
            call(&mut store, &instance, "f", &[]).unwrap()[0],
            Value::I32(7)
        );
    }
}
