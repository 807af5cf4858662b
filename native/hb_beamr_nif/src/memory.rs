//! Memory 0 operations served by the executor: size, read, write, strings and restore.

use beamr_core::snapshot;
use rustler::{Encoder, Env, OwnedBinary, Term};
use wasmer::{AsStoreMut, AsStoreRef, Memory, Pages, WASM_PAGE_SIZE};

use crate::atoms;
use crate::bytes::{try_binary, OutOfMemory};
use crate::command::MemoryOp;
use crate::state::StateError;

pub enum MemoryReply {
    Size(u64),
    Bytes(OwnedBinary),
    Done,
}

pub enum MemoryError {
    OutOfBounds {
        offset: u64,
        len: u64,
        size: u64,
    },
    /// `read_string` found no NUL before the end of memory.
    Unterminated {
        ptr: u64,
        size: u64,
    },
    /// `read_string` found no NUL within the `max` bytes it may read.
    StringTooLong {
        ptr: u64,
        max: u64,
    },
    /// The result could not be allocated.
    OutOfMemory,
    /// wasmer panicked (caught); the instance answers the next command.
    Panicked,
    /// Restoring needs more pages than the memory may grow to.
    TooLarge {
        len: u64,
        max: u64,
    },
    NoMemory,
    /// A full snapshot or restore failed (see `state.rs`).
    State(StateError),
}

pub type MemoryResult = Result<MemoryReply, MemoryError>;

impl From<OutOfMemory> for MemoryError {
    fn from(_: OutOfMemory) -> MemoryError {
        MemoryError::OutOfMemory
    }
}

pub fn run(memory: Option<&Memory>, store: &mut impl AsStoreMut, op: MemoryOp) -> MemoryResult {
    let Some(memory) = memory else {
        return match op {
            MemoryOp::Size => Ok(MemoryReply::Size(0)),
            MemoryOp::Read { len: 0, .. } | MemoryOp::Snapshot => {
                Ok(MemoryReply::Bytes(try_binary(0)?))
            }
            _ => Err(MemoryError::NoMemory),
        };
    };
    match op {
        MemoryOp::Size => Ok(MemoryReply::Size(size(memory, store))),
        MemoryOp::Read { offset, len } => read(memory, store, offset, len),
        MemoryOp::Snapshot => read(memory, store, 0, size(memory, store)),
        MemoryOp::Write { offset, data } => {
            data.with_slice(|data| write(memory, store, offset, data))
        }
        MemoryOp::ReadString { ptr, max } => read_string(memory, store, ptr, max),
        MemoryOp::Restore { data } => data.with_slice(|data| restore(memory, store, data)),
        MemoryOp::State(_) => unreachable!("the executor serves state operations through state.rs"),
    }
}

fn size(memory: &Memory, store: &impl AsStoreRef) -> u64 {
    memory.view(store).data_size()
}

fn check(offset: u64, len: u64, size: u64) -> Result<(), MemoryError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(MemoryError::OutOfBounds { offset, len, size }),
    }
}

fn read(memory: &Memory, store: &impl AsStoreRef, offset: u64, len: u64) -> MemoryResult {
    let view = memory.view(store);
    check(offset, len, view.data_size())?;
    let mut bytes = try_binary(len as usize)?;
    // SAFETY: no wasm runs while the executor serves this command, and only the executor
    // thread touches the instance, so memory cannot change or move meanwhile.
    let memory = unsafe { view.data_unchecked() };
    snapshot::copy_out(
        bytes.as_mut_slice(),
        &memory[offset as usize..(offset + len) as usize],
    );
    Ok(MemoryReply::Bytes(bytes))
}

fn write(memory: &Memory, store: &impl AsStoreRef, offset: u64, data: &[u8]) -> MemoryResult {
    let view = memory.view(store);
    let len = data.len() as u64;
    check(offset, len, view.data_size())?;
    view.write(offset, data)
        .map_err(|_| MemoryError::OutOfBounds {
            offset,
            len,
            size: view.data_size(),
        })?;
    Ok(MemoryReply::Done)
}

/// The bytes from `ptr` up to the first NUL, which must come within `max` bytes: the
/// scan and the copy are bounded by what the caller allows, not by what wasm wrote.
fn read_string(memory: &Memory, store: &impl AsStoreRef, ptr: u64, max: u64) -> MemoryResult {
    let view = memory.view(store);
    let size = view.data_size();
    check(ptr, 0, size)?;
    let end = ptr.saturating_add(max).min(size);
    // SAFETY: no wasm runs while the executor serves this command, and only the executor
    // thread touches the instance, so memory cannot change or move meanwhile.
    let scanned = unsafe { &view.data_unchecked()[ptr as usize..end as usize] };
    let Some(len) = scanned.iter().position(|byte| *byte == 0) else {
        return Err(if end == size {
            MemoryError::Unterminated { ptr, size }
        } else {
            MemoryError::StringTooLong { ptr, max }
        });
    };
    let mut binary = try_binary(len)?;
    binary.as_mut_slice().copy_from_slice(&scanned[..len]);
    Ok(MemoryReply::Bytes(binary))
}

fn restore(memory: &Memory, store: &mut impl AsStoreMut, data: &[u8]) -> MemoryResult {
    let len = data.len() as u64;
    let current = size(memory, store);
    if len > current {
        let needed = len.div_ceil(WASM_PAGE_SIZE as u64) - current / WASM_PAGE_SIZE as u64;
        let max = memory
            .ty(store)
            .maximum
            .map_or(u64::from(u32::MAX), |p| p.bytes().0 as u64);
        let delta = u32::try_from(needed).map_err(|_| MemoryError::TooLarge { len, max })?;
        memory
            .grow(store, Pages(delta))
            .map_err(|_| MemoryError::TooLarge { len, max })?;
    }
    write(memory, store, 0, data)
}

impl Encoder for MemoryError {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match *self {
            MemoryError::OutOfBounds { offset, len, size } => {
                (atoms::out_of_bounds(), offset, len, size).encode(env)
            }
            MemoryError::Unterminated { ptr, size } => {
                (atoms::out_of_bounds(), ptr, atoms::unterminated(), size).encode(env)
            }
            MemoryError::StringTooLong { ptr, max } => {
                (atoms::string_too_long(), ptr, max).encode(env)
            }
            MemoryError::TooLarge { len, max } => (atoms::too_large(), len, max).encode(env),
            MemoryError::OutOfMemory => (atoms::resource_limit(), atoms::memory()).encode(env),
            MemoryError::Panicked => {
                (atoms::other(), "panic during a memory operation").encode(env)
            }
            MemoryError::NoMemory => atoms::no_memory().encode(env),
            MemoryError::State(ref error) => error.encode(env),
        }
    }
}
