//! `hibernate` (an instance, now), `stats` (node-wide counts) and the `max_live` budget:
//! a thread that, when more instances are live than the budget allows, asks the least
//! recently used idle ones to hibernate.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use beamr_core::compile;
use once_cell::sync::Lazy;
use parking_lot::{Condvar, Mutex};
use rustler::{Encoder, Env, LocalPid, Term};

use super::{instance, request};
use crate::atoms;
use crate::error::Reply;
use crate::hibernation::{SETTINGS, STATS};
use crate::instance::{self as registry, Activity, Command, Shared};

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
    Term::map_from_pairs(env, &pairs).expect("distinct keys")
}

/// Wakes the budget thread (after a start or a revival made one more instance live).
pub(super) fn check_budget() {
    if SETTINGS.max_live.load(Ordering::Relaxed) == 0 {
        return;
    }
    let (pending, wake) = &*BUDGET;
    *pending.lock() = true;
    wake.notify_one();
}

/// The budget thread's wake-up: a flag and its condition variable.
static BUDGET: Lazy<(Mutex<bool>, Condvar)> = Lazy::new(|| {
    // A thread of its own: scanning the instances takes milliseconds at 100,000.
    let _ = std::thread::Builder::new()
        .name("hb_beamr_budget".into())
        .spawn(enforce_budget);
    (Mutex::new(false), Condvar::new())
});

/// How often the budget is checked without being woken (instances also go idle).
const BUDGET_PERIOD: Duration = Duration::from_millis(200);

fn enforce_budget() {
    let (pending, wake) = &*BUDGET;
    loop {
        {
            let mut pending = pending.lock();
            if !*pending {
                wake.wait_for(&mut pending, BUDGET_PERIOD);
            }
            *pending = false;
        }
        let max_live = SETTINGS.max_live.load(Ordering::Relaxed);
        if max_live == 0 {
            continue;
        }
        let mut live: Vec<Arc<Shared>> = Vec::new();
        registry::each(|shared| {
            if shared.hibernation.is_live() && !shared.is_stopped() {
                live.push(Arc::clone(shared));
            }
        });
        if live.len() <= max_live {
            continue;
        }
        let excess = live.len() - max_live;
        let mut idle: Vec<Arc<Shared>> = live
            .into_iter()
            .filter(|shared| shared.activity() == Activity::Idle)
            .collect();
        idle.sort_by_key(|shared| shared.hibernation.last_active());
        for shared in idle.into_iter().take(excess) {
            // Pushed, not submitted: a request to hibernate must not revive an instance
            // that hibernated meanwhile (its executor skips it when requests wait).
            if shared.hibernation.request() {
                let _ = shared.mailbox.push(Command::Hibernate { reply: None });
            }
        }
    }
}
