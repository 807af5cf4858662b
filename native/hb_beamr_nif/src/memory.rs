//! Memory 0 operations served by the executor: size, read, write, strings and restore.

use beamr_core::snapshot;
use rustler::{Encoder, Env, OwnedBinary, Term};
use wasmer::{AsStoreMut, AsStoreRef, Memory, Pages, WASM_PAGE_SIZE};

use crate::atoms;
use crate::command::MemoryOp;
use crate::state::StateError;

pub enum MemoryReply {
    Size(u64),
    Bytes(OwnedBinary),
    Done,
}

pub enum MemoryError {
    OutOfBounds { offset: u64, len: u64, size: u64 },
    /// `read_string` found no NUL before the end of memory.
    Unterminated { ptr: u64, size: u64 },
    /// Restoring needs more pages than the memory may grow to.
    TooLarge { len: u64, max: u64 },
    NoMemory,
    /// A full snapshot or restore failed (see `state.rs`).
    State(StateError),
}

pub type MemoryResult = Result<MemoryReply, MemoryError>;

/// Bytes are read in chunks of this size while looking for a string's NUL.
const STRING_CHUNK: u64 = 4096;

pub fn run(memory: Option<&Memory>, store: &mut impl AsStoreMut, op: MemoryOp) -> MemoryResult {
    let Some(memory) = memory else {
        return match op {
            MemoryOp::Size => Ok(MemoryReply::Size(0)),
            MemoryOp::Read { len: 0, .. } | MemoryOp::Snapshot => {
                Ok(MemoryReply::Bytes(OwnedBinary::new(0)))
            }
            _ => Err(MemoryError::NoMemory),
        };
    };
    match op {
        MemoryOp::Size => Ok(MemoryReply::Size(size(memory, store))),
        MemoryOp::Read { offset, len } => read(memory, store, offset, len),
        MemoryOp::Snapshot => read(memory, store, 0, size(memory, store)),
        MemoryOp::Write { offset, data } => data.with_slice(|data| write(memory, store, offset, data)),
        MemoryOp::ReadString { ptr } => read_string(memory, store, ptr),
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
    let mut bytes = OwnedBinary::new(len as usize);
    // SAFETY: no wasm runs while the executor serves this command, and only the executor
    // thread touches the instance, so memory cannot change or move meanwhile.
    let memory = unsafe { view.data_unchecked() };
    snapshot::copy_out(bytes.as_mut_slice(), &memory[offset as usize..(offset + len) as usize]);
    Ok(MemoryReply::Bytes(bytes))
}

fn write(memory: &Memory, store: &impl AsStoreRef, offset: u64, data: &[u8]) -> MemoryResult {
    let view = memory.view(store);
    let len = data.len() as u64;
    check(offset, len, view.data_size())?;
    view.write(offset, data)
        .map_err(|_| MemoryError::OutOfBounds { offset, len, size: view.data_size() })?;
    Ok(MemoryReply::Done)
}

fn read_string(memory: &Memory, store: &impl AsStoreRef, ptr: u64) -> MemoryResult {
    let view = memory.view(store);
    let size = view.data_size();
    check(ptr, 0, size)?;
    let mut bytes = Vec::new();
    let mut at = ptr;
    while at < size {
        let mut chunk = vec![0u8; STRING_CHUNK.min(size - at) as usize];
        view.read(at, &mut chunk)
            .map_err(|_| MemoryError::OutOfBounds { offset: at, len: chunk.len() as u64, size })?;
        if let Some(nul) = chunk.iter().position(|b| *b == 0) {
            bytes.extend_from_slice(&chunk[..nul]);
            let mut binary = OwnedBinary::new(bytes.len());
            binary.as_mut_slice().copy_from_slice(&bytes);
            return Ok(MemoryReply::Bytes(binary));
        }
        at += chunk.len() as u64;
        bytes.extend_from_slice(&chunk);
    }
    Err(MemoryError::Unterminated { ptr, size })
}

fn restore(memory: &Memory, store: &mut impl AsStoreMut, data: &[u8]) -> MemoryResult {
    let len = data.len() as u64;
    let current = size(memory, store);
    if len > current {
        let needed = len.div_ceil(WASM_PAGE_SIZE as u64) - current / WASM_PAGE_SIZE as u64;
        let max = memory.ty(store).maximum.map_or(u64::from(u32::MAX), |p| p.bytes().0 as u64);
        let delta = u32::try_from(needed).map_err(|_| MemoryError::TooLarge { len, max })?;
        memory.grow(store, Pages(delta)).map_err(|_| MemoryError::TooLarge { len, max })?;
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
            MemoryError::TooLarge { len, max } => (atoms::too_large(), len, max).encode(env),
            MemoryError::NoMemory => atoms::no_memory().encode(env),
            MemoryError::State(ref error) => error.encode(env),
        }
    }
}
