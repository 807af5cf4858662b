//! What an instance reports about itself: `info` and `gas_used`, read from what its
//! executor publishes, so they answer at once whatever the instance is doing.

use std::sync::atomic::Ordering;

use beamr_core::compile::Origin;
use rustler::{Encoder, Env, LocalPid, Term};

use super::instance;
use crate::atoms;
use crate::error::Reply;
use crate::instance::{Activity, Shared};

/// `{ok, Gas}`: the fuel the instance's last call used (see `beamr_core::fuel`).
#[rustler::nif]
fn gas_used(env: Env, owner: LocalPid) -> Reply {
    Reply(instance(&owner).map(|instance| {
        let gas = instance.shared.gas_used.load(Ordering::Acquire);
        (atoms::ok(), gas).encode(env)
    }))
}

/// `{ok, Info}` for `hb_beamr:info/1`.
#[rustler::nif]
fn info(env: Env, owner: LocalPid) -> Reply {
    Reply(
        instance(&owner).map(|instance| (atoms::ok(), info_map(env, &instance.shared)).encode(env)),
    )
}

fn info_map<'a>(env: Env<'a>, shared: &Shared) -> Term<'a> {
    let state = match shared.activity() {
        _ if shared.is_stopped() => atoms::stopped(),
        _ if !shared.hibernation.is_live() => atoms::hibernated(),
        Activity::Idle => atoms::idle(),
        Activity::Running => atoms::running(),
        Activity::InImport => atoms::in_import(),
        Activity::Starting => atoms::starting(),
    };
    let hash: String = shared
        .module
        .sha256
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let origin = match shared.module.origin {
        Origin::Compiled => atoms::compiled(),
        Origin::Memory => atoms::memory(),
        Origin::Disk => atoms::disk(),
        Origin::Artifact => atoms::artifact(),
    };
    let memory_bytes = shared.memory_bytes.load(Ordering::Relaxed);
    let pages = memory_bytes / wasmer::WASM_PAGE_SIZE as u64;
    let pairs = [
        (atoms::module_hash(), hash.encode(env)),
        (atoms::memory_bytes(), memory_bytes.encode(env)),
        (atoms::memory_pages(), pages.encode(env)),
        (atoms::state(), state.encode(env)),
        (
            atoms::calls(),
            shared.calls.load(Ordering::Relaxed).encode(env),
        ),
        (
            atoms::gas_used(),
            shared.gas_used.load(Ordering::Acquire).encode(env),
        ),
        (
            atoms::cached(),
            (shared.module.origin != Origin::Compiled).encode(env),
        ),
        (atoms::origin(), origin.encode(env)),
        (
            atoms::hibernations(),
            shared
                .hibernation
                .hibernations
                .load(Ordering::Relaxed)
                .encode(env),
        ),
        (
            atoms::revivals(),
            shared
                .hibernation
                .revivals
                .load(Ordering::Relaxed)
                .encode(env),
        ),
        (
            atoms::image_bytes(),
            shared.hibernation.image_bytes().encode(env),
        ),
    ];
    Term::map_from_pairs(env, &pairs.map(|(k, v)| (k.encode(env), v))).expect("distinct keys")
}
