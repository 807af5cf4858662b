//! Snapshots of an instance's whole state (`beamr_core::state`): `state_snapshot`,
//! `state_restore`, and `snapshot_info` and `kernel_dirty_tracking`, which need no instance.

use beamr_core::snapshot::{self, Lineage};
use rustler::{Binary, Encoder, Env, LocalPid, OwnedBinary, Term};

use super::request_to;
use crate::atoms;
use crate::bytes::BinaryList;
use crate::error::{snapshot_error, Error, Reply};
use crate::instance::Command;
use crate::request::StateOp;

fn state_command<'a>(env: Env<'a>, owner: LocalPid, op: StateOp) -> Result<Term<'a>, Error<'a>> {
    request_to(env, owner, |caller, slot| Command::State {
        caller,
        slot,
        op,
    })
}

/// `{ok, Snapshot}`: the instance's state in `beamr_core::snapshot`'s format; with
/// `incremental`, a delta of what changed since the instance's base (when it has one).
#[rustler::nif]
fn state_snapshot(env: Env, owner: LocalPid, incremental: bool) -> Reply {
    Reply(state_command(env, owner, StateOp::Capture { incremental }))
}

/// Restores a chain (a list: a full snapshot, then its deltas) after validating all of it.
#[rustler::nif]
fn state_restore<'a>(env: Env<'a>, owner: LocalPid, chain: Term<'a>) -> Reply<'a> {
    Reply(match BinaryList::new(chain) {
        Some(chain) => state_command(env, owner, StateOp::Apply { chain }),
        None => Err(Error::BadArg((atoms::snapshot(), chain).encode(env))),
    })
}

/// `{ok, #{kind, id, parent, sequence}}` for a snapshot whose checksum verifies.
#[rustler::nif(schedule = "DirtyCpu")]
fn snapshot_info<'a>(env: Env<'a>, bytes: Binary<'a>) -> Term<'a> {
    let snapshot = match snapshot::decode(bytes.as_slice()) {
        Ok(snapshot) => snapshot,
        Err(why) => return (atoms::error(), snapshot_error(env, &why)).encode(env),
    };
    let id = |id: u128| {
        let mut binary = OwnedBinary::new(16);
        binary.as_mut_slice().copy_from_slice(&id.to_le_bytes());
        binary.release(env).encode(env)
    };
    let (kind, parent) = match snapshot.lineage {
        Lineage::Full => (atoms::full(), atoms::none().encode(env)),
        Lineage::Delta { parent } => (atoms::delta(), id(parent)),
    };
    let pairs = [
        (atoms::kind(), kind.encode(env)),
        (atoms::id(), id(snapshot.id)),
        (atoms::parent(), parent),
        (atoms::sequence(), snapshot.sequence.encode(env)),
    ];
    let info =
        Term::map_from_pairs(env, &pairs.map(|(k, v)| (k.encode(env), v))).expect("distinct keys");
    (atoms::ok(), info).encode(env)
}

/// Whether this process can use the kernel's write tracking for incremental snapshots
/// (otherwise they compare page digests; see `beamr_core::dirty_pages`). Dirty: the first
/// call probes the kernel (a scratch mapping and a few system calls).
#[rustler::nif(schedule = "DirtyCpu")]
fn kernel_dirty_tracking() -> bool {
    beamr_core::dirty_pages::kernel_tracking_available()
}
