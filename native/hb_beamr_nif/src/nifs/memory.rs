//! Memory 0 of an instance: `memory_size`, `memory_read`, `memory_write`,
//! `memory_read_string`, `memory_snapshot` (all of it) and `memory_restore`.

use beamr_core::memory_access::MemoryOp;
use rustler::{Binary, Env, LocalPid};

use super::request_to;
use crate::bytes::Bytes;
use crate::error::Reply;
use crate::instance::Command;

fn memory_command<'a>(env: Env<'a>, owner: LocalPid, op: MemoryOp<Bytes>) -> Reply<'a> {
    Reply(request_to(env, owner, |caller, slot| Command::Memory {
        caller,
        slot,
        op,
    }))
}

#[rustler::nif]
fn memory_size(env: Env, owner: LocalPid) -> Reply {
    memory_command(env, owner, MemoryOp::Size)
}

#[rustler::nif]
fn memory_read(env: Env, owner: LocalPid, offset: u64, len: u64) -> Reply {
    memory_command(env, owner, MemoryOp::Read { offset, len })
}

#[rustler::nif]
fn memory_snapshot(env: Env, owner: LocalPid) -> Reply {
    memory_command(env, owner, MemoryOp::Snapshot)
}

#[rustler::nif]
fn memory_write<'a>(env: Env<'a>, owner: LocalPid, offset: u64, data: Binary<'a>) -> Reply<'a> {
    let data = Bytes::new(data);
    memory_command(env, owner, MemoryOp::Write { offset, data })
}

#[rustler::nif]
fn memory_read_string(env: Env, owner: LocalPid, ptr: u64, max: u64) -> Reply {
    memory_command(env, owner, MemoryOp::ReadString { ptr, max })
}

#[rustler::nif]
fn memory_restore<'a>(env: Env<'a>, owner: LocalPid, data: Binary<'a>) -> Reply<'a> {
    let data = Bytes::new(data);
    memory_command(env, owner, MemoryOp::Restore { data })
}
