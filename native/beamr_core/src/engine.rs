//! The process-wide wasmer engine: Cranelift with the exceptions proposal (exnref), which
//! the legacy-exceptions pass targets.

use once_cell::sync::Lazy;
use wasmer::sys::{Cranelift, EngineBuilder, Features};
use wasmer::Engine;

static ENGINE: Lazy<Engine> = Lazy::new(|| {
    let mut features = Features::new();
    features.exceptions(true);
    EngineBuilder::new(Cranelift::default())
        .set_features(Some(features))
        .engine()
        .into()
});

/// The engine every module is compiled with and every Store is created from.
pub fn engine() -> &'static Engine {
    &ENGINE
}

/// The text of a caught panic payload.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "wasmer panicked".to_string()
    }
}
