//! Emscripten's JavaScript runtime for C++ exceptions and setjmp/longjmp, answered natively.
//!
//! Emscripten builds made without wasm exception handling throw through imports:
//! `__cxa_throw`, `__cxa_rethrow`, `__resumeException` and `_emscripten_throw_longjmp`
//! unwind, like a JavaScript exception, to the nearest enclosing `invoke_*`, which restores
//! the stack pointer, calls the module's `setThrew(1, 0)` and returns zeros. The landing pad
//! that follows asks which `catch` clause matches (`__cxa_find_matching_catch_N` and the
//! temporary return register) and enters it (`__cxa_begin_catch` ... `__cxa_end_catch`);
//! a longjmp's landing pad finds its `setjmp` from what the module recorded itself.
//!
//! Here a throw is a host function returning a [`Thrown`] error: wasmer unwinds the wasm
//! frames up to the host function that called into them, where `invoke_*` recognises it
//! ([`invoke_catches`]). [`Runtime`] keeps what Emscripten's JavaScript library keeps (the
//! last exception thrown, the stack of those caught, the count of those uncaught, the
//! temporary return register) and answers the landing-pad imports ([`Import`]) the way
//! that library does, over the exception header in front of every thrown object.

mod host;
mod imports;
pub mod invoke;
mod runtime;
mod unwind;

pub use host::{first_export, integer, value_of, Host};
pub use imports::Import;
pub use runtime::Runtime;
pub use unwind::{invoke_catches, Fault, Thrown};
