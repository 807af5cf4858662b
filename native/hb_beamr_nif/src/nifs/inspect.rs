//! `hb_beamr_nif:inspect/2` (for `beamr inspect`): `beamr_core::inspect` as terms.

use beamr_core::artifact;
use beamr_core::failure::CallFailure;
use beamr_core::inspect::{inspect as inspect_module, Entry, Inspection, Memory};
use rustler::{Binary, Encoder, Env, Term};

use crate::atoms;
use crate::codec::charlist;
use crate::error::{Error, Reply};
use crate::options::decode_start_options;

rustler::atoms! {
    imports, exports, memories, memory0, passes, memory64_lowering, legacy_exceptions,
    wamr_extra_page, memory64, shared, imported, initial, maximum, undefined, infinity, emscripten,
}

/// `{ok, #{imports, exports, memories, memory0, passes, emscripten}}` for wasm or WAT `Source` under
/// start options `Opts` (those that change preparation: `wamr_compat`, `memory_limit`,
/// `deterministic`), or `{error, {invalid_module, Msg}}`; nothing is compiled.
#[rustler::nif(schedule = "DirtyCpu")]
fn inspect<'a>(env: Env<'a>, source: Binary<'a>, opts: Term<'a>) -> Reply<'a> {
    Reply(decode_start_options(opts).and_then(|options| {
        let invalid = |message: String| Error::Call(CallFailure::InvalidModule(message));
        if artifact::is_artifact(source.as_slice()) {
            let message = "a compiled artifact: inspect the module it was compiled from";
            return Err(invalid(message.into()));
        }
        let info = inspect_module(source.as_slice(), &options.prepare).map_err(|e| invalid(e.0))?;
        Ok((atoms::ok(), encode(env, &info)).encode(env))
    }))
}

fn encode<'a>(env: Env<'a>, info: &Inspection) -> Term<'a> {
    let passes_term = map(
        env,
        &[
            (memory64_lowering(), info.memory64_lowered.encode(env)),
            (legacy_exceptions(), info.exceptions_translated.encode(env)),
            (wamr_extra_page(), info.wamr_extra_page.encode(env)),
        ],
    );
    let memory0_term = info
        .prepared_memory0
        .as_ref()
        .map_or(undefined().encode(env), |m| memory(env, m));
    map(
        env,
        &[
            (
                imports(),
                info.imports
                    .iter()
                    .map(|e| import(env, e))
                    .collect::<Vec<_>>()
                    .encode(env),
            ),
            (
                exports(),
                info.exports
                    .iter()
                    .map(|e| export(env, e))
                    .collect::<Vec<_>>()
                    .encode(env),
            ),
            (
                memories(),
                info.memories
                    .iter()
                    .map(|m| memory(env, m))
                    .collect::<Vec<_>>()
                    .encode(env),
            ),
            (memory0(), memory0_term),
            (passes(), passes_term),
            (
                emscripten(),
                info.emscripten
                    .iter()
                    .map(|name| charlist(env, name))
                    .collect::<Vec<_>>()
                    .encode(env),
            ),
        ],
    )
}

/// `{Kind, Module, Name, Sig}`, as `hb_beamr:start/1` lists imports (but of every kind).
fn import<'a>(env: Env<'a>, e: &Entry) -> Term<'a> {
    (
        kind(env, e.kind),
        charlist(env, &e.module),
        charlist(env, &e.name),
        charlist(env, &e.signature),
    )
        .encode(env)
}

/// `{Kind, Name, Sig}`, as `hb_beamr:start/1` lists exports.
fn export<'a>(env: Env<'a>, e: &Entry) -> Term<'a> {
    (
        kind(env, e.kind),
        charlist(env, &e.name),
        charlist(env, &e.signature),
    )
        .encode(env)
}

fn kind<'a>(env: Env<'a>, name: &str) -> Term<'a> {
    rustler::Atom::from_str(env, name)
        .expect("an atom")
        .encode(env)
}

/// `#{memory64, shared, imported, initial, maximum}`, in pages (`maximum`: `infinity` if none).
fn memory<'a>(env: Env<'a>, m: &Memory) -> Term<'a> {
    map(
        env,
        &[
            (memory64(), m.memory64.encode(env)),
            (shared(), m.shared.encode(env)),
            (imported(), m.imported.encode(env)),
            (initial(), m.initial.encode(env)),
            (
                maximum(),
                m.maximum
                    .map_or(infinity().encode(env), |max| max.encode(env)),
            ),
        ],
    )
}

fn map<'a>(env: Env<'a>, pairs: &[(rustler::Atom, Term<'a>)]) -> Term<'a> {
    let pairs: Vec<(Term, Term)> = pairs.iter().map(|(k, v)| (k.encode(env), *v)).collect();
    Term::map_from_pairs(env, &pairs).expect("distinct keys")
}
