//! Where a started module comes from: wasm or WAT (through the in-memory and disk caches)
//! or a compiled artifact (`hb_beamr:compile/2`), and which keys authenticate artifacts.
//! The logic lives in `beamr_core::{compile, artifact, disk_cache}`; this maps options to
//! it and errors to terms.

use std::path::PathBuf;
use std::sync::Arc;

use beamr_core::artifact::{self, ArtifactError, Key};
use beamr_core::compile::{self, CompileError, CompiledModule};
use beamr_core::disk_cache::DiskCache;
use rustler::{Binary, Encoder, Env, Term, TermType};

use crate::atoms;
use crate::nifs::{decode_options, StartOptions};

/// The longest `cache_dir` taken as a string: Linux's PATH_MAX.
const MAX_PATH_CHARS: usize = 4096;

/// A `cache_dir` value: a binary or a string.
pub fn decode_path(term: Term) -> Option<PathBuf> {
    let path = match term.get_type() {
        TermType::Binary => {
            String::from_utf8(Binary::from_term(term).ok()?.as_slice().to_vec()).ok()?
        }
        TermType::List => crate::codec::decode_charlist(term, MAX_PATH_CHARS)?,
        _ => return None,
    };
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// Why a module could not be had, as the `Reason` of `{error, Reason}`.
pub enum Failure<'a> {
    Term(Term<'a>),
    Compile(CompileError),
    CacheDir(String),
}

impl<'a> Failure<'a> {
    pub fn encode(self, env: Env<'a>) -> Term<'a> {
        match self {
            Failure::Term(term) => term,
            Failure::Compile(CompileError::InvalidModule(msg)) => {
                (atoms::invalid_module(), msg).encode(env)
            }
            Failure::Compile(CompileError::MemoryLimit { initial, limit }) => {
                (atoms::memory_limit(), initial, limit).encode(env)
            }
            Failure::Compile(CompileError::InvalidArtifact(why)) => {
                (atoms::invalid_artifact(), artifact_reason(env, why)).encode(env)
            }
            Failure::Compile(CompileError::Serialize(msg)) => {
                (atoms::invalid_module(), msg).encode(env)
            }
            Failure::Compile(CompileError::NoThreads(_)) => {
                (atoms::resource_limit(), atoms::thread()).encode(env)
            }
            Failure::CacheDir(msg) => (atoms::cache_dir(), msg).encode(env),
        }
    }
}

fn artifact_reason(env: Env, why: ArtifactError) -> Term {
    match why {
        ArtifactError::NotAnArtifact => atoms::not_an_artifact().encode(env),
        ArtifactError::Truncated => atoms::truncated().encode(env),
        ArtifactError::Malformed => atoms::malformed().encode(env),
        ArtifactError::BadMac => atoms::bad_mac().encode(env),
        ArtifactError::FormatVersion(v) => (atoms::format_version(), v).encode(env),
        ArtifactError::EngineMismatch(engine) => (atoms::engine_mismatch(), engine).encode(env),
    }
}

fn open_cache<'a>(options: &StartOptions) -> Result<Option<Arc<DiskCache>>, Failure<'a>> {
    let Some(dir) = &options.cache_dir else {
        return Ok(None);
    };
    DiskCache::open(dir)
        .map(Some)
        .map_err(|e| Failure::CacheDir(format!("{}: {e}", dir.display())))
}

/// The module to start: `source` is an artifact (by its magic) or wasm/WAT.
pub fn module_for<'a>(
    env: Env<'a>,
    source: &[u8],
    options: &StartOptions,
) -> Result<CompiledModule, Failure<'a>> {
    let cache = open_cache(options)?;
    if !artifact::is_artifact(source) {
        return compile::compile_cached(source, &options.prepare, cache.as_deref())
            .map_err(Failure::Compile);
    }
    // Artifacts made with this VM's own key or the cache directory's load.
    let mut keys: Vec<&Key> = vec![artifact::process_key()];
    keys.extend(cache.as_ref().map(|c| c.key()));
    let compiled = compile::load_artifact(source, &keys).map_err(Failure::Compile)?;
    check_given_options(env, &compiled, options)?;
    Ok(compiled)
}

/// Preparation options given to start/2 with an artifact must be those it was compiled
/// with: its code has them built in, and silently running, say, a non-deterministic
/// artifact when `deterministic => true` was asked for would be worse than refusing.
fn check_given_options<'a>(
    env: Env<'a>,
    compiled: &CompiledModule,
    options: &StartOptions,
) -> Result<(), Failure<'a>> {
    let built = &compiled.header.options;
    let bad = |key: Term<'a>, value: Term<'a>| {
        Failure::Term((atoms::badarg(), (atoms::options(), (key, value))).encode(env))
    };
    if options.given.wamr_compat && options.prepare.wamr_compat != built.wamr_compat {
        return Err(bad(
            atoms::wamr_compat().encode(env),
            options.prepare.wamr_compat.encode(env),
        ));
    }
    if options.given.deterministic && options.prepare.deterministic != built.deterministic {
        return Err(bad(
            atoms::deterministic().encode(env),
            options.prepare.deterministic.encode(env),
        ));
    }
    if options.given.memory_limit && options.prepare.memory_limit != built.memory_limit {
        return Err(bad(
            atoms::memory_limit().encode(env),
            options.prepare.memory_limit.encode(env),
        ));
    }
    Ok(())
}

/// `hb_beamr_nif:compile(Source, Opts) -> {ok, Artifact} | {error, Reason}`: compiles
/// (or finds in the caches) and serializes, authenticated with the cache directory's key
/// when `cache_dir` is given (so it loads in later VMs using that directory), else with this
/// VM's key (it loads until the VM exits). An artifact given as `Source` is re-sealed.
#[rustler::nif(schedule = "DirtyCpu")]
fn compile<'a>(env: Env<'a>, source: Binary<'a>, opts: Term<'a>) -> Term<'a> {
    let options = match decode_options(opts) {
        Ok(options) => options,
        Err(bad) => return (atoms::error(), (atoms::badarg(), bad)).encode(env),
    };
    let sealed = module_for(env, source.as_slice(), &options).and_then(|compiled| {
        let cache = open_cache(&options)?;
        let key = cache.as_ref().map_or(artifact::process_key(), |c| c.key());
        compile::to_artifact(&compiled, key).map_err(Failure::Compile)
    });
    match sealed {
        Ok(bytes) => match crate::bytes::try_binary(bytes.len()) {
            Ok(mut binary) => {
                binary.as_mut_slice().copy_from_slice(&bytes);
                (atoms::ok(), Binary::from_owned(binary, env)).encode(env)
            }
            Err(_) => (atoms::error(), (atoms::resource_limit(), atoms::memory())).encode(env),
        },
        Err(failure) => (atoms::error(), failure.encode(env)).encode(env),
    }
}

/// `#{compiled, memory_hits, disk_hits, artifact_loads}`: how modules were obtained since
/// the VM started (tests check single-flight compilation with it).
#[rustler::nif]
fn cache_stats(env: Env) -> Term {
    let stats = compile::stats();
    let pairs = [
        (atoms::compiled(), stats.compiled),
        (atoms::memory_hits(), stats.memory_hits),
        (atoms::disk_hits(), stats.disk_hits),
        (atoms::artifact_loads(), stats.artifact_loads),
    ];
    Term::map_from_pairs(env, &pairs.map(|(k, v)| (k.encode(env), v.encode(env))))
        .expect("distinct keys")
}
