//! The process-wide wasmer engines: Cranelift with the exceptions proposal (exnref), which
//! the legacy-exceptions pass targets. There are two, because Cranelift's NaN
//! canonicalisation is a compiler setting, not a per-module one: the default engine, and the
//! deterministic engine (`deterministic => true`) that canonicalises every NaN a float
//! operation produces. A module must run in a Store of the engine that compiled it (the
//! engine owns the signature registry that `call_indirect` checks against). Both create
//! memories and tables through [`FallibleTables`].

use once_cell::sync::Lazy;
use parking_lot::RwLock;
use wasmer::sys::{Cranelift, EngineBuilder, Features, NativeEngineExt, Target};
use wasmer::Engine;

use crate::tunables::FallibleTables;

/// Which of the two engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EngineKind {
    Default,
    /// NaN canonicalisation on (see `prepare` for what else deterministic mode refuses).
    Deterministic,
}

impl EngineKind {
    pub fn new(deterministic: bool) -> Self {
        if deterministic {
            EngineKind::Deterministic
        } else {
            EngineKind::Default
        }
    }
}

fn build(canonicalize_nans: bool) -> Engine {
    let mut features = Features::new();
    features.exceptions(true);
    let mut compiler = Cranelift::default();
    compiler.canonicalize_nans(canonicalize_nans);
    let mut engine: Engine = EngineBuilder::new(compiler)
        .set_features(Some(features))
        .engine()
        .into();
    engine.set_tunables(FallibleTables::default());
    engine
}

/// Engines live for the rest of the process: Stores and modules of an engine that was
/// replaced may still run, and its compiled code lives as long as it does.
fn leaked(canonicalize_nans: bool) -> &'static Engine {
    Box::leak(Box::new(build(canonicalize_nans)))
}

static ENGINES: Lazy<RwLock<[&'static Engine; 2]>> =
    Lazy::new(|| RwLock::new([leaked(false), leaked(true)]));

/// The default engine (what `engine_for(EngineKind::Default)` returns).
pub fn engine() -> &'static Engine {
    engine_for(EngineKind::Default)
}

/// The engine a module of this kind is compiled with, and its Stores are created from.
pub fn engine_for(kind: EngineKind) -> &'static Engine {
    ENGINES.read()[kind as usize]
}

/// Replaces the engine of `kind` after a panic inside wasmer while it compiled or loaded a
/// module. wasmer keeps an engine's state behind a `std::sync::Mutex` that such a panic
/// poisons for good, and every later compilation or instantiation with that engine would
/// panic too: one odd module (a Cranelift bug) must not disable compilation for the node.
/// Modules compiled by the old engine keep it, and running instances of them go on.
pub fn replace(kind: EngineKind) {
    ENGINES.write()[kind as usize] = leaked(kind == EngineKind::Deterministic);
}

/// The wasmer release compiled in (a unit test keeps it in step with Cargo.lock).
pub const WASMER_VERSION: &str = "7.4.2";

/// Everything that decides whether native code compiled by one process can run in another:
/// the wasmer release, the compiler and its settings, the target triple, the CPU features
/// Cranelift may use and the preparation passes that made the module compiled (a digest of
/// their sources, see build.rs). Compiled artifacts carry it and caches are keyed by it, so
/// code built for another CPU (e.g. with AVX-512 on a machine without it), or prepared by
/// other passes, is never loaded.
pub fn identity(kind: EngineKind) -> String {
    static IDENTITIES: Lazy<[String; 2]> = Lazy::new(|| {
        let describe = |kind| {
            let target = Target::default();
            let features: Vec<String> = target
                .cpu_features()
                .iter()
                .map(|f| f.to_string())
                .collect();
            format!(
                "wasmer {WASMER_VERSION}; {}; nan_canonicalization={}; exceptions; {}; {}; \
                 preparation {}",
                engine_for(kind).deterministic_id(),
                kind == EngineKind::Deterministic,
                target.triple(),
                features.join(","),
                env!("BEAMR_PREPARATION_DIGEST"),
            )
        };
        [
            describe(EngineKind::Default),
            describe(EngineKind::Deterministic),
        ]
    });
    IDENTITIES[kind as usize].clone()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_engines_have_distinct_identities() {
        let (default, deterministic) = (
            identity(EngineKind::Default),
            identity(EngineKind::Deterministic),
        );
        assert_ne!(default, deterministic);
        assert!(
            default.contains("cranelift") || default.contains("Cranelift"),
            "{default}"
        );
        assert!(default.contains(&Target::default().triple().to_string()));
    }

    #[test]
    fn the_identity_names_the_preparation_passes() {
        let digest = env!("BEAMR_PREPARATION_DIGEST");
        assert_eq!(digest.len(), 16);
        assert!(digest.chars().all(|c| c.is_ascii_hexdigit()));
        for kind in [EngineKind::Default, EngineKind::Deterministic] {
            assert!(identity(kind).ends_with(&format!("; preparation {digest}")));
        }
    }

    #[test]
    fn wasmer_version_matches_cargo_lock() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"))
                .unwrap();
        let entry = format!("name = \"wasmer\"\nversion = \"{WASMER_VERSION}\"");
        assert!(
            lock.contains(&entry),
            "Cargo.lock locks another wasmer than {WASMER_VERSION}"
        );
    }
}
