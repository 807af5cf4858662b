//! `hibernate` (an instance, now) and `stats` (node-wide counts).

use std::sync::atomic::Ordering;

use beamr_core::compile;
use rustler::{Encoder, Env, LocalPid, Term};

use super::{instance, request};
use crate::atoms;
use crate::error::Reply;
use crate::hibernation::{SETTINGS, STATS};
use crate::instance::{self as registry, Command};

/// `ok` once the instance hibernated (at once when it already is), `{error, busy}` when
/// requests are queued for it, `{error, call_in_progress}` from inside one of its calls.
#[rustler::nif]
fn hibernate(env: Env, owner: LocalPid) -> Reply {
    Reply(instance(&owner).and_then(|instance| {
        if instance.shared.hibernation.is_hibernated() {
            return Ok((atoms::event(), 0, atoms::ok()).encode(env));
        }
        request(env, &instance.shared, |caller, slot| Command::Hibernate {
            reply: Some((caller, slot)),
        })
    }))
}

/// `hb_beamr:stats/0`.
#[rustler::nif]
fn stats(env: Env) -> Term {
    let instances = registry::count();
    let hibernated = STATS.hibernated.load(Ordering::Relaxed);
    let cache = compile::stats();
    let counts = [
        (atoms::live(), instances.saturating_sub(hibernated) as u64),
        (atoms::hibernated(), hibernated as u64),
        (
            atoms::image_bytes_memory(),
            STATS.memory_bytes.load(Ordering::Relaxed),
        ),
        (
            atoms::image_bytes_disk(),
            STATS.disk_bytes.load(Ordering::Relaxed),
        ),
        (
            atoms::hibernations(),
            STATS.hibernations.load(Ordering::Relaxed),
        ),
        (atoms::revivals(), STATS.revivals.load(Ordering::Relaxed)),
        (
            atoms::failed_revivals(),
            STATS.failed_revivals.load(Ordering::Relaxed),
        ),
        (atoms::compiled(), cache.compiled),
        (atoms::memory_hits(), cache.memory_hits),
        (atoms::disk_hits(), cache.disk_hits),
        (atoms::artifact_loads(), cache.artifact_loads),
    ];
    let failed = [
        (
            atoms::no_memory(),
            STATS.failed_no_memory.load(Ordering::Relaxed),
        ),
        (atoms::disk(), STATS.failed_disk.load(Ordering::Relaxed)),
        (atoms::state(), STATS.failed_state.load(Ordering::Relaxed)),
    ];
    let failed = Term::map_from_pairs(env, &failed.map(|(k, v)| (k.encode(env), v.encode(env))))
        .expect("distinct keys");
    let mut pairs: Vec<(Term, Term)> = counts
        .iter()
        .map(|(k, v)| (k.encode(env), v.encode(env)))
        .collect();
    pairs.push((atoms::failed_hibernations().encode(env), failed));
    let max_live = match SETTINGS.max_live.load(Ordering::Relaxed) {
        0 => atoms::infinity().encode(env),
        n => n.encode(env),
    };
    pairs.push((atoms::max_live().encode(env), max_live));
    Term::map_from_pairs(env, &pairs).expect("distinct keys")
}
