//! From bytes to a compiled module: parse WAT if needed, prepare, compile with Cranelift;
//! or reuse the module compiled earlier from the same bytes and options (in memory, then in
//! the disk cache when one is given); or load a compiled artifact.
//!
//! Each key (source SHA-256 + preparation options, which decide the engine) has one cell in
//! the in-memory cache. The first caller fills it (loading from disk or compiling); callers
//! arriving meanwhile wait for that rather than compile the same module again, since a
//! Cranelift compile of an AO module takes a core for 150 ms or more.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use once_cell::sync::{Lazy, OnceCell};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use twox_hash::XxHash3_64;
use wasmer::{Engine, Module};

use crate::artifact::{self, ArtifactError, Header, Key};
use crate::cache::LruCache;
use crate::disk_cache::DiskCache;
use crate::engine::{engine_for, panic_message, EngineKind};
use crate::prepare::{prepare, PrepareOptions, MAX_FIXED_FUNCREF_ENTRIES};

/// Where a module came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Prepared and compiled by this call.
    Compiled,
    /// Compiled earlier in this process (or being compiled by another caller, waited for).
    Memory,
    /// Loaded from the disk cache.
    Disk,
    /// Loaded from an artifact passed in.
    Artifact,
}

/// A module ready to instantiate.
#[derive(Clone)]
pub struct CompiledModule {
    pub module: Module,
    /// True unless this call compiled the module.
    pub cached: bool,
    pub origin: Origin,
    /// What it was compiled from and for (the header of its artifact).
    pub header: Header,
}

impl CompiledModule {
    /// The engine the module's Stores must be created from.
    pub fn engine(&self) -> &'static Engine {
        engine_for(self.engine_kind())
    }

    pub fn engine_kind(&self) -> EngineKind {
        self.header.options.engine_kind()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileError {
    /// Not wasm (neither a binary nor WAT text), invalid, or beyond what preparation handles.
    InvalidModule(String),
    /// Instantiating the module would make the host allocate `initial` bytes for its
    /// memories and tables (see `PreparedModule::initial_footprint`), more than the
    /// options' `memory_limit`.
    MemoryLimit { initial: u64, limit: u64 },
    /// An artifact that was refused (never loaded).
    InvalidArtifact(ArtifactError),
    /// wasmer could not serialize the module (an artifact was asked for).
    Serialize(String),
    /// The OS refused the compiler's threads.
    NoThreads(String),
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompileError::InvalidModule(msg) => write!(f, "invalid module: {msg}"),
            CompileError::MemoryLimit { initial, limit } => {
                write!(
                    f,
                    "memories and tables start at {initial} bytes, more than the memory \
                    limit of {limit}"
                )
            }
            CompileError::InvalidArtifact(e) => write!(f, "invalid artifact: {e}"),
            CompileError::Serialize(msg) => write!(f, "cannot serialize module: {msg}"),
            CompileError::NoThreads(msg) => write!(f, "no threads to compile with: {msg}"),
        }
    }
}

/// How modules were obtained since the VM started (for tests and operators).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub compiled: u64,
    pub memory_hits: u64,
    pub disk_hits: u64,
    pub artifact_loads: u64,
}

static COMPILED: AtomicU64 = AtomicU64::new(0);
static MEMORY_HITS: AtomicU64 = AtomicU64::new(0);
static DISK_HITS: AtomicU64 = AtomicU64::new(0);
static ARTIFACT_LOADS: AtomicU64 = AtomicU64::new(0);

pub fn stats() -> Stats {
    Stats {
        compiled: COMPILED.load(Ordering::Relaxed),
        memory_hits: MEMORY_HITS.load(Ordering::Relaxed),
        disk_hits: DISK_HITS.load(Ordering::Relaxed),
        artifact_loads: ARTIFACT_LOADS.load(Ordering::Relaxed),
    }
}

/// Compiled modules stay cached this many at a time.
const CACHE_CAPACITY: usize = 64;

type CacheKey = ([u8; 32], PrepareOptions);
type Cell = Arc<OnceCell<Module>>;

static CACHE: Lazy<Mutex<LruCache<CacheKey, Cell>>> =
    Lazy::new(|| Mutex::new(LruCache::new(CACHE_CAPACITY)));

/// Sources seen recently (as many as modules cached) and their SHA-256, found by xxh3 and
/// length and confirmed byte for byte: hashing AOS's 550 KB with SHA-256 was the largest
/// single cost of starting it from the cache (a fifth of the CPU samples of a run of starts).
static DIGESTS: Lazy<Mutex<LruCache<(u64, usize), SeenSource>>> =
    Lazy::new(|| Mutex::new(LruCache::new(CACHE_CAPACITY)));

type SeenSource = (Arc<[u8]>, [u8; 32]);

/// SHA-256 of `source`.
fn source_digest(source: &[u8]) -> [u8; 32] {
    let key = (XxHash3_64::oneshot(source), source.len());
    let seen = DIGESTS.lock().get(&key);
    if let Some((bytes, digest)) = seen {
        if *bytes == *source {
            return digest;
        }
    }
    let digest = Sha256::digest(source).into();
    DIGESTS.lock().insert(key, (Arc::from(source), digest));
    digest
}

/// The cell of `key`, new and empty if there is none. A cell evicted while a caller fills it
/// lives on in that caller; the module is then just not cached.
fn cell(key: CacheKey) -> Cell {
    let mut cache = CACHE.lock();
    if let Some(cell) = cache.get(&key) {
        return cell;
    }
    let cell = Cell::default();
    cache.insert(key, cell.clone());
    cell
}

/// Fills `cell` with `fill` unless another caller did or is doing it (then waits for it);
/// tells which happened. A failed fill leaves the cell empty for the next caller.
fn get_or_fill(
    cell: &Cell,
    fill: impl FnOnce() -> Result<(Module, Origin), CompileError>,
) -> Result<(Module, Origin), CompileError> {
    let mut origin = Origin::Memory;
    let module = cell.get_or_try_init(|| {
        let (module, filled_from) = fill()?;
        origin = filled_from;
        Ok::<_, CompileError>(module)
    })?;
    let counter = match origin {
        Origin::Compiled => &COMPILED,
        Origin::Memory => &MEMORY_HITS,
        Origin::Disk => &DISK_HITS,
        Origin::Artifact => &ARTIFACT_LOADS,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    Ok((module.clone(), origin))
}

/// Compiles wasm bytes or WAT text, keyed in the cache by their SHA-256 and the options.
pub fn compile(source: &[u8], opts: &PrepareOptions) -> Result<CompiledModule, CompileError> {
    compile_cached(source, opts, None)
}

/// [`compile`], also looking in and filling the disk cache `disk`.
pub fn compile_cached(
    source: &[u8],
    opts: &PrepareOptions,
    disk: Option<&DiskCache>,
) -> Result<CompiledModule, CompileError> {
    let header = Header::current(source_digest(source), opts);
    let cell = cell((header.source_sha256, opts.clone()));
    let (module, origin) = get_or_fill(&cell, || {
        if let Some(module) = disk.and_then(|disk| load_entry(disk, &header)) {
            return Ok((module, Origin::Disk));
        }
        Ok((build(source, opts)?, Origin::Compiled))
    })?;
    if let Some(disk) = disk {
        // Compiled: the entry was missing or bad (it is replaced). From memory: the module
        // may have been compiled without this cache. Failing to write only costs a later
        // compile.
        let store = match origin {
            Origin::Compiled => true,
            Origin::Memory => !disk.contains(&header),
            Origin::Disk | Origin::Artifact => false,
        };
        if store {
            if let Ok(payload) = serialize(&module) {
                let _ = disk.store(&header, &payload);
            }
        }
    }
    Ok(CompiledModule {
        module,
        cached: origin != Origin::Compiled,
        origin,
        header,
    })
}

/// Prepares and compiles; a module that could not start within the memory limit, or whose
/// fixed-size funcref tables wasmer could not lay out, is refused before Cranelift spends
/// time on it.
fn build(source: &[u8], opts: &PrepareOptions) -> Result<Module, CompileError> {
    if let Some(message) = crate::wamr_aot::rejection(source) {
        return Err(CompileError::InvalidModule(message));
    }
    let wasm = wat::parse_bytes(source).map_err(|e| CompileError::InvalidModule(e.to_string()))?;
    let prepared = prepare(&wasm, opts).map_err(|e| CompileError::InvalidModule(e.to_string()))?;
    if prepared.initial_footprint > opts.memory_limit {
        return Err(CompileError::MemoryLimit {
            initial: prepared.initial_footprint,
            limit: opts.memory_limit,
        });
    }
    if prepared.fixed_funcref_entries > MAX_FIXED_FUNCREF_ENTRIES {
        return Err(CompileError::InvalidModule(format!(
            "funcref tables of fixed size hold {} entries, more than the \
                {MAX_FIXED_FUNCREF_ENTRIES} hb_beamr allows",
            prepared.fixed_funcref_entries
        )));
    }
    let compiled = in_compiler_pool(|| {
        on_engine(opts.engine_kind(), |engine| {
            Module::new(engine, &prepared.wasm)
        })
    })?;
    compiled?.map_err(|e| CompileError::InvalidModule(e.to_string()))
}

/// Runs a compilation in the compiler's thread pool. Cranelift compiles a module's functions
/// in parallel with rayon, whose global pool is made on first use; if the OS refuses its
/// threads then, it is never made, and every later compilation in the process panics. So
/// compilations run in a pool of this module's own, made again after such a failure.
///
/// One compilation at a time: a pool thread waiting for its module's functions steals
/// other queued work, and a second module's compilation stolen that way would wait for
/// the engine lock its own thread holds, for ever. (wasmer's engine lock lets one
/// compilation run at a time anyway.)
fn in_compiler_pool<T: Send>(compile: impl FnOnce() -> T + Send) -> Result<T, CompileError> {
    static POOL: Mutex<Option<rayon::ThreadPool>> = Mutex::new(None);
    let mut pool = POOL.lock();
    if pool.is_none() {
        let built = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("hb_beamr_cc{i}"))
            .build()
            .map_err(|e| CompileError::NoThreads(e.to_string()))?;
        *pool = Some(built);
    }
    let pool = pool.as_ref().expect("made above");
    Ok(pool.install(compile))
}

/// Runs a wasmer operation on a module that may make wasmer panic (a compiler bug reached by
/// an odd module). The engine, which the panic may have poisoned, is replaced together with
/// the modules cached for it, and the operation is tried once more on the new engine: the
/// panic may have been an earlier module's poison. A second panic is this module's doing.
fn on_engine<T>(
    kind: EngineKind,
    operation: impl Fn(&'static Engine) -> T,
) -> Result<T, CompileError> {
    let attempt = || {
        catch_unwind(AssertUnwindSafe(|| operation(engine_for(kind)))).map_err(|panic| {
            crate::engine::replace(kind);
            CACHE.lock().retain(|(_, opts)| opts.engine_kind() != kind);
            CompileError::InvalidModule(panic_message(&panic))
        })
    };
    attempt().or_else(|_| attempt())
}

fn serialize(module: &Module) -> Result<Vec<u8>, CompileError> {
    catch_unwind(AssertUnwindSafe(|| module.serialize()))
        .map_err(|panic| CompileError::Serialize(panic_message(&panic)))?
        .map(|bytes| bytes.to_vec())
        .map_err(|e| CompileError::Serialize(e.to_string()))
}

/// # Safety of the `deserialize` inside
/// `payload` must come from `artifact::open`, i.e. its MAC verified with one of our keys
/// and its header names this engine: it is code this node (or one sharing its key)
/// compiled with `Module::serialize`.
fn deserialize_verified(payload: &[u8], kind: EngineKind) -> Result<Module, CompileError> {
    on_engine(kind, |engine| unsafe {
        Module::deserialize(engine, payload)
    })?
    .map_err(|e| CompileError::InvalidModule(format!("cannot load compiled code: {e}")))
}

/// The disk cache's entry for `header`, if it has a good one.
fn load_entry(disk: &DiskCache, header: &Header) -> Option<Module> {
    let entry = disk.load(header)?;
    deserialize_verified(entry.payload(), header.options.engine_kind()).ok()
}

/// Loads an artifact made by [`to_artifact`], if one of `keys` authenticates it.
pub fn load_artifact(bytes: &[u8], keys: &[&Key]) -> Result<CompiledModule, CompileError> {
    let (header, payload) = artifact::open(bytes, keys).map_err(CompileError::InvalidArtifact)?;
    let cell = cell((header.source_sha256, header.options.clone()));
    let kind = header.options.engine_kind();
    let (module, origin) = get_or_fill(&cell, || {
        Ok((deserialize_verified(payload, kind)?, Origin::Artifact))
    })?;
    Ok(CompiledModule {
        module,
        cached: true,
        origin,
        header,
    })
}

/// A compiled module as an artifact authenticated with `key`.
pub fn to_artifact(compiled: &CompiledModule, key: &Key) -> Result<Vec<u8>, CompileError> {
    Ok(artifact::seal(
        &compiled.header,
        &serialize(&compiled.module)?,
        key,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADD: &str = r#"(module (func (export "add") (param i32 i32) (result i32)
        local.get 0 local.get 1 i32.add))"#;

    /// A module no other test compiles (the cache is process-wide).
    fn unique_wat(tag: &str) -> String {
        format!(r#"(module (func (export "f") (result i32) i32.const 7) (func (export "{tag}")))"#)
    }

    #[test]
    fn compiles_wat_and_caches_by_content_and_options() {
        let opts = PrepareOptions::default();
        assert!(!compile(ADD.as_bytes(), &opts).unwrap().cached);
        assert!(compile(ADD.as_bytes(), &opts).unwrap().cached);
        let other_opts = PrepareOptions {
            wamr_compat: false,
            ..Default::default()
        };
        assert!(!compile(ADD.as_bytes(), &other_opts).unwrap().cached);
        let deterministic = PrepareOptions {
            deterministic: true,
            ..Default::default()
        };
        let compiled = compile(ADD.as_bytes(), &deterministic).unwrap();
        assert!(!compiled.cached);
        assert_eq!(compiled.engine_kind(), EngineKind::Deterministic);
    }

    #[test]
    fn rejects_garbage_and_truncated_modules() {
        let opts = PrepareOptions::default();
        assert!(matches!(
            compile(b"not wasm at all", &opts),
            Err(CompileError::InvalidModule(_))
        ));
        let wasm = wat::parse_str(ADD).unwrap();
        assert!(matches!(
            compile(&wasm[..wasm.len() - 3], &opts),
            Err(CompileError::InvalidModule(_))
        ));
    }

    /// Issue 19, defects 2 and 14: the limit covers every memory and table a module starts
    /// with (20 tables of 2^27 entries, 20 GiB, aborted the VM under an address-space limit).
    #[test]
    fn refuses_modules_whose_memories_and_tables_start_over_the_limit() {
        let opts = |memory_limit| PrepareOptions {
            wamr_compat: false,
            memory_limit,
            ..Default::default()
        };
        let wat = "(module (memory 1) (memory 2) (table 10 funcref))";
        let footprint = 3 * 65536 + 10 * 8;
        assert!(compile(wat.as_bytes(), &opts(footprint)).is_ok());
        assert_eq!(
            compile(wat.as_bytes(), &opts(footprint - 1)).err(),
            Some(CompileError::MemoryLimit {
                initial: footprint,
                limit: footprint - 1
            })
        );
        let tables: String = (0..20).map(|_| "(table 134217728 externref)").collect();
        let wat = format!("(module {tables})");
        assert_eq!(
            compile(wat.as_bytes(), &PrepareOptions::default()).err(),
            Some(CompileError::MemoryLimit {
                initial: 20 << 30,
                limit: crate::prepare::DEFAULT_MEMORY_LIMIT
            })
        );
    }

    /// wasmer panicked compiling fixed-size funcref tables of 2^27 entries or more (its
    /// instance layout has 32-bit offsets) and allocates their layout infallibly.
    #[test]
    fn refuses_fixed_size_funcref_tables_beyond_the_cap() {
        let opts = PrepareOptions {
            memory_limit: 1 << 40,
            ..Default::default()
        };
        let fixed = |entries: u64| format!("(module (table {entries} {entries} funcref))");
        assert!(compile(fixed(MAX_FIXED_FUNCREF_ENTRIES).as_bytes(), &opts).is_ok());
        for wat in [
            fixed(MAX_FIXED_FUNCREF_ENTRIES + 1),
            "(module (table 134217728 funcref))".to_string(),
        ] {
            let Err(CompileError::InvalidModule(message)) = compile(wat.as_bytes(), &opts) else {
                panic!("{wat} compiled");
            };
            assert!(
                message.contains("funcref tables of fixed size"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_wamr_aot_image_says_to_start_the_wasm_instead() {
        let Err(CompileError::InvalidModule(message)) =
            compile(b"\0aot\x03\0\0\0image", &PrepareOptions::default())
        else {
            panic!("an AOT image compiled");
        };
        assert!(
            message.contains("WAMR AOT image") && message.contains(".wasm"),
            "{message}"
        );
    }

    #[test]
    fn concurrent_callers_compile_a_new_module_once() {
        let wat = unique_wat("concurrent");
        let opts = PrepareOptions::default();
        let origins: Vec<Origin> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| compile(wat.as_bytes(), &opts).unwrap().origin))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            origins.iter().filter(|o| **o == Origin::Compiled).count(),
            1,
            "{origins:?}"
        );
        assert_eq!(origins.iter().filter(|o| **o == Origin::Memory).count(), 7);
    }

    #[test]
    fn source_digests_are_sha256_whether_remembered_or_not() {
        let a = unique_wat("digest a");
        let b = unique_wat("digest b");
        for _ in 0..2 {
            assert_eq!(
                source_digest(a.as_bytes()),
                <[u8; 32]>::from(Sha256::digest(a.as_bytes()))
            );
            assert_eq!(
                source_digest(b.as_bytes()),
                <[u8; 32]>::from(Sha256::digest(b.as_bytes()))
            );
        }
        // Another source under a remembered key (as a collision would be) is hashed anew.
        let key = (XxHash3_64::oneshot(a.as_bytes()), a.len());
        DIGESTS
            .lock()
            .insert(key, (Arc::from(b.as_bytes()), [0; 32]));
        assert_eq!(
            source_digest(a.as_bytes()),
            <[u8; 32]>::from(Sha256::digest(a.as_bytes()))
        );
    }

    #[test]
    fn artifacts_round_trip_and_refuse_other_keys() {
        let key = Key::random();
        let wat = unique_wat("artifact");
        let compiled = compile(wat.as_bytes(), &PrepareOptions::default()).unwrap();
        let bytes = to_artifact(&compiled, &key).unwrap();
        let loaded = load_artifact(&bytes, &[&key]).unwrap();
        assert_eq!(loaded.header, compiled.header);
        assert!(matches!(
            load_artifact(&bytes, &[&Key::random()]),
            Err(CompileError::InvalidArtifact(ArtifactError::BadMac))
        ));
        // Deserialized code runs.
        let payload = artifact::open(&bytes, &[&key]).unwrap().1;
        let module = deserialize_verified(payload, EngineKind::Default).unwrap();
        let mut store = wasmer::Store::new(engine_for(EngineKind::Default).clone());
        let imports = crate::prepare::test_support::with_check(&mut store, wasmer::imports! {});
        let instance = wasmer::Instance::new(&mut store, &module, &imports).unwrap();
        let f = instance.exports.get_function("f").unwrap();
        assert_eq!(f.call(&mut store, &[]).unwrap()[0], wasmer::Value::I32(7));
    }

    #[test]
    fn the_disk_cache_is_filled_then_used() {
        let dir = std::env::temp_dir().join(format!("hb_beamr_compile_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let disk = DiskCache::open(&dir).unwrap();
        let wat = unique_wat("disk");
        let opts = PrepareOptions {
            wamr_compat: false,
            ..Default::default()
        };
        let first = compile_cached(wat.as_bytes(), &opts, Some(&disk)).unwrap();
        assert_eq!(first.origin, Origin::Compiled);
        assert!(disk.contains(&first.header));
        // A fresh process would miss in memory: load the entry directly.
        assert!(load_entry(&disk, &first.header).is_some());
        // A corrupt entry is ignored, and a compile replaces it.
        std::fs::write(disk.entry_path(&first.header), b"junk").unwrap();
        assert!(load_entry(&disk, &first.header).is_none());
        CACHE
            .lock()
            .insert((first.header.source_sha256, opts.clone()), Cell::default());
        assert_eq!(
            compile_cached(wat.as_bytes(), &opts, Some(&disk))
                .unwrap()
                .origin,
            Origin::Compiled
        );
        assert!(load_entry(&disk, &first.header).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
