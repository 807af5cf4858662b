use super::*;
use wasmer::{imports, Module, Store};

/// Calls the module directly (no nesting to bound in a test).
struct Direct;

impl Host for Direct {
    fn call(
        &self,
        store: &mut impl AsStoreMut,
        function: &Function,
        args: &[Value],
    ) -> Result<Box<[Value]>, RuntimeError> {
        function.call(store, args)
    }
}

/// A module with what the runtime calls: `setThrew`, the temporary return register,
/// `free` (recording what it freed), and a `__cxa_can_catch` for which type 7 is a
/// base of type 9, four bytes into the object.
const MODULE: &str = r#"(module
  (memory (export "memory") 1)
  (global $threw (mut i32) (i32.const 0))
  (global $temp (mut i32) (i32.const 0))
  (global $freed (mut i32) (i32.const 0))
  (func (export "setThrew") (param i32 i32) (global.set $threw (local.get 0)))
  (func (export "_emscripten_tempret_set") (param i32) (global.set $temp (local.get 0)))
  (func (export "free") (param i32) (global.set $freed (local.get 0)))
  (func (export "threw") (result i32) (global.get $threw))
  (func (export "temp") (result i32) (global.get $temp))
  (func (export "freed") (result i32) (global.get $freed))
  (func (export "__cxa_can_catch") (param $caught i32) (param $thrown i32)
    (param $adjusted i32) (result i32)
    (if (result i32) (i32.and (i32.eq (local.get $caught) (i32.const 7)) (i32.eq
      (local.get $thrown) (i32.const 9)))
      (then (i32.store (local.get $adjusted) (i32.add (i32.load (local.get $adjusted))
        (i32.const 4))) (i32.const 1))
      (else (i32.const 0)))))"#;

struct Fixture {
    store: Store,
    instance: Instance,
    runtime: Runtime,
}

impl Fixture {
    fn new() -> Fixture {
        let mut store = Store::default();
        let module = Module::new(&store, wat::parse_str(MODULE).unwrap()).unwrap();
        let instance =
            crate::prepare::instantiate_with_start(&mut store, &module, &imports! {}).unwrap();
        let memory = instance.exports.get_memory("memory").ok().cloned();
        let runtime = Runtime::resolve(&store, &instance, memory, None, false);
        Fixture {
            store,
            instance,
            runtime,
        }
    }

    fn answer(
        &mut self,
        import: Import,
        args: &[i32],
        results: &[Type],
    ) -> Result<Vec<Value>, RuntimeError> {
        let args: Vec<Value> = args.iter().map(|a| Value::I32(*a)).collect();
        self.runtime
            .answer(&mut self.store, &Direct, import, &args, results)
    }

    fn pointer(&mut self, import: Import, args: &[i32]) -> i32 {
        match self.answer(import, args, &[Type::I32]).unwrap()[..] {
            [Value::I32(value)] => value,
            ref other => panic!("{other:?}"),
        }
    }

    fn export(&mut self, name: &str) -> i32 {
        let function = self.instance.exports.get_function(name).unwrap();
        function.call(&mut self.store, &[]).unwrap()[0].unwrap_i32()
    }

    fn word(&self, address: u64) -> u32 {
        let mut bytes = [0u8; 4];
        self.runtime.read(&self.store, address, &mut bytes).unwrap();
        u32::from_le_bytes(bytes)
    }
}

fn fault(error: RuntimeError) -> Fault {
    error.downcast::<Fault>().expect("a Fault")
}

#[test]
fn a_throw_is_matched_caught_and_ended_as_emscripten_does() {
    let mut f = Fixture::new();
    // Thrown at 1024: its header is the 24 bytes before.
    let thrown = f.answer(Import::Throw, &[1024, 9, 0], &[]).unwrap_err();
    assert_eq!(Thrown::of(&thrown), Some(&Thrown::Cxx(1024)));
    assert_eq!(
        (f.word(1000), f.word(1004), f.word(1016)),
        (1, 9, 0),
        "one reference, the type, no adjustment"
    );
    assert_eq!(f.pointer(Import::UncaughtExceptions, &[]), 1);
    // Clause 5 does not match; clause 7 (a base, 4 bytes in) does.
    assert_eq!(f.pointer(Import::FindMatchingCatch, &[5, 7]), 1024);
    assert_eq!(f.export("temp"), 7);
    assert_eq!(
        f.pointer(Import::BeginCatch, &[1024]),
        1028,
        "the catch clause gets the adjusted pointer"
    );
    assert_eq!(f.pointer(Import::UncaughtExceptions, &[]), 0);
    assert_eq!(f.pointer(Import::CurrentExceptionType, &[]), 9);
    f.answer(Import::EndCatch, &[], &[]).unwrap();
    assert_eq!(
        f.export("freed"),
        1000,
        "the last reference frees the whole block"
    );
    assert_eq!(f.word(1000), 0);
    // Nothing left to end, or to match.
    assert_eq!(
        fault(f.answer(Import::EndCatch, &[], &[]).unwrap_err()).message,
        "__cxa_end_catch with no exception caught"
    );
    assert_eq!(f.pointer(Import::FindMatchingCatch, &[7]), 0);
    assert_eq!(f.export("temp"), 0);
}

#[test]
fn unmatched_and_catch_all_clauses_get_the_thrown_type() {
    let mut f = Fixture::new();
    f.answer(Import::Throw, &[2048, 9, 0], &[]).unwrap_err();
    assert_eq!(f.pointer(Import::FindMatchingCatch, &[5]), 2048);
    assert_eq!(
        f.export("temp"),
        9,
        "no clause matched: the landing pad resumes"
    );
    assert_eq!(f.pointer(Import::FindMatchingCatch, &[0, 7]), 2048);
    assert_eq!(f.export("temp"), 9, "a catch-all comes first");
    let resumed = f.answer(Import::ResumeException, &[2048], &[]).unwrap_err();
    assert_eq!(Thrown::of(&resumed), Some(&Thrown::Cxx(2048)));
}

#[test]
fn rethrow_keeps_the_exception_alive_and_rethrow_of_nothing_throws_null() {
    let mut f = Fixture::new();
    let nothing = f.answer(Import::Rethrow, &[], &[]).unwrap_err();
    assert_eq!(Thrown::of(&nothing), Some(&Thrown::Cxx(0)));
    assert_eq!(
        f.pointer(Import::FindMatchingCatch, &[0]),
        0,
        "only catch (...) catches it"
    );
    assert_eq!(f.pointer(Import::BeginCatch, &[0]), 0);
    f.answer(Import::EndCatch, &[], &[]).unwrap();

    f.answer(Import::Throw, &[1024, 9, 0], &[]).unwrap_err();
    f.pointer(Import::FindMatchingCatch, &[0]);
    f.pointer(Import::BeginCatch, &[1024]);
    let again = f.answer(Import::Rethrow, &[], &[]).unwrap_err();
    assert_eq!(Thrown::of(&again), Some(&Thrown::Cxx(1024)));
    assert_eq!(f.word(1000), 2, "the rethrow holds a reference");
    // The first catch block's cleanup ends it: still alive, rethrown.
    f.answer(Import::EndCatch, &[], &[]).unwrap();
    assert_eq!((f.word(1000), f.export("freed")), (1, 0));
    // The next catch block ends it for good.
    f.pointer(Import::FindMatchingCatch, &[0]);
    f.pointer(Import::BeginCatch, &[1024]);
    f.answer(Import::EndCatch, &[], &[]).unwrap();
    assert_eq!(f.export("freed"), 1000);
}

#[test]
fn misuse_is_an_error_never_a_panic_and_the_state_ends_with_the_call() {
    let mut f = Fixture::new();
    for bad in [4, -8, -1] {
        assert!(
            fault(
                f.answer(Import::BeginCatch, &[bad], &[Type::I32])
                    .unwrap_err()
            )
            .out_of_bounds,
            "{bad}"
        );
        assert!(
            fault(f.answer(Import::Throw, &[bad, 9, 0], &[]).unwrap_err()).out_of_bounds,
            "{bad}"
        );
    }
    for _ in 0..MAX_CAUGHT {
        f.pointer(Import::BeginCatch, &[1024]);
    }
    let full = fault(
        f.answer(Import::BeginCatch, &[1024], &[Type::I32])
            .unwrap_err(),
    );
    assert_eq!(
        full.message,
        format!("more than {MAX_CAUGHT} exceptions caught at once")
    );
    f.runtime.end_call();
    assert_eq!(f.pointer(Import::BeginCatch, &[1024]), 1024);
    assert_eq!(f.pointer(Import::UncaughtExceptions, &[]), 0);
    // A longjmp unwinds; the module recorded its target itself.
    let jump = f.answer(Import::ThrowLongjmp, &[], &[]).unwrap_err();
    assert_eq!(Thrown::of(&jump), Some(&Thrown::Longjmp));
    assert_eq!(f.export("threw"), 0);
    // Older builds' emscripten_longjmp records it through setThrew (value 0 counts as 1).
    f.answer(Import::Longjmp, &[4000, 0], &[]).unwrap_err();
    assert_eq!(f.export("threw"), 4000);
}
