//! Where a started module comes from: wasm or WAT (through the in-memory and disk caches)
//! or a compiled artifact (`hb_beamr:compile/2`), and which keys authenticate artifacts.
//! The logic lives in `beamr_core::{compile, artifact, disk_cache}`; this maps options to
//! it. NIFs: `compile`, `cache_stats`.

use std::sync::Arc;

use beamr_core::artifact::{self, Key};
use beamr_core::compile::{self, CompiledModule};
use beamr_core::disk_cache::DiskCache;
use rustler::{Binary, Encoder, Env, Term};

use crate::atoms;
use crate::bytes::try_binary;
use crate::error::{Error, Reply};
use crate::options::{decode_start_options, StartOptions};
use beamr_core::failure::{CallFailure, Resource};

fn open_cache<'a>(options: &StartOptions) -> Result<Option<Arc<DiskCache>>, Error<'a>> {
    let Some(dir) = &options.cache_dir else {
        return Ok(None);
    };
    DiskCache::open(dir)
        .map(Some)
        .map_err(|e| Error::CacheDir(format!("{}: {e}", dir.display())))
}

/// The module to start: `source` is an artifact (by its magic) or wasm/WAT.
pub(super) fn module_for<'a>(
    env: Env<'a>,
    source: &[u8],
    options: &StartOptions,
) -> Result<CompiledModule, Error<'a>> {
    let cache = open_cache(options)?;
    if !artifact::is_artifact(source) {
        return Ok(compile::compile_cached(
            source,
            &options.prepare,
            cache.as_deref(),
        )?);
    }
    // Artifacts made with this VM's own key or the cache directory's load.
    let mut keys: Vec<&Key> = vec![artifact::process_key()];
    keys.extend(cache.as_ref().map(|c| c.key()));
    let compiled = compile::load_artifact(source, &keys)?;
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
) -> Result<(), Error<'a>> {
    let built = &compiled.header.options;
    let (given, asked) = (&options.given, &options.prepare);
    let differs = [
        (
            given.wamr_compat,
            atoms::wamr_compat(),
            asked.wamr_compat,
            built.wamr_compat,
        ),
        (
            given.deterministic,
            atoms::deterministic(),
            asked.deterministic,
            built.deterministic,
        ),
    ];
    for (given, key, asked, built) in differs {
        if given && asked != built {
            return Err(Error::BadOption(key.encode(env), asked.encode(env)));
        }
    }
    if given.memory_limit && asked.memory_limit != built.memory_limit {
        let value = asked.memory_limit.encode(env);
        return Err(Error::BadOption(atoms::memory_limit().encode(env), value));
    }
    Ok(())
}

/// `hb_beamr_nif:compile(Source, Opts) -> {ok, Artifact} | {error, Reason}`: compiles
/// (or finds in the caches) and serializes, authenticated with the cache directory's key
/// when `cache_dir` is given (so it loads in later VMs using that directory), else with this
/// VM's key (it loads until the VM exits). An artifact given as `Source` is re-sealed.
#[rustler::nif(schedule = "DirtyCpu")]
fn compile<'a>(env: Env<'a>, source: Binary<'a>, opts: Term<'a>) -> Reply<'a> {
    Reply(sealed_artifact(env, source.as_slice(), opts))
}

fn sealed_artifact<'a>(env: Env<'a>, source: &[u8], opts: Term<'a>) -> Result<Term<'a>, Error<'a>> {
    let options = decode_start_options(opts)?;
    let compiled = module_for(env, source, &options)?;
    let cache = open_cache(&options)?;
    let key = cache.as_ref().map_or(artifact::process_key(), |c| c.key());
    let bytes = compile::to_artifact(&compiled, key)?;
    let mut binary = try_binary(bytes.len()).ok_or(CallFailure::ResourceLimit(Resource::Memory))?;
    binary.as_mut_slice().copy_from_slice(&bytes);
    Ok((atoms::ok(), Binary::from_owned(binary, env)).encode(env))
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
