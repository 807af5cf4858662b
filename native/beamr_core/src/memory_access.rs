//! Memory 0 operations served by an instance's executor between calls: size, read,
//! write, strings and restore. Results are copied into buffers the caller allocates
//! (`allocate`; the NIF gives Erlang binaries), so a refused allocation is an error, never
//! an abort.

use std::ops::DerefMut;

use wasmer::{AsStoreMut, AsStoreRef, Memory, Pages, WASM_PAGE_SIZE};

use crate::snapshot;

/// Bytes to write, as the embedder holds them (the NIF: an Erlang binary it keeps alive
/// without copying); reached through a callback because such bytes may only be borrowed
/// for a while.
pub trait Data {
    fn with_slice<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R;
}

impl Data for &[u8] {
    fn with_slice<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self)
    }
}

/// What an embedder asks of memory 0; `D` holds the bytes of writes.
pub enum MemoryOp<D> {
    Size,
    Read {
        offset: u64,
        len: u64,
    },
    /// All of memory 0.
    Snapshot,
    Write {
        offset: u64,
        data: D,
    },
    /// The bytes from `ptr` up to (excluding) the first NUL, which must come within `max`.
    ReadString {
        ptr: u64,
        max: u64,
    },
    /// Write at offset 0, growing the memory first when `data` does not fit.
    Restore {
        data: D,
    },
}

pub enum MemoryReply<B> {
    Size(u64),
    Bytes(B),
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
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
}

pub type MemoryResult<B> = Result<MemoryReply<B>, MemoryError>;

/// Runs `op` on `memory` (`None`: the instance has no memory 0).
pub fn run<B: DerefMut<Target = [u8]>>(
    memory: Option<&Memory>,
    store: &mut impl AsStoreMut,
    op: MemoryOp<impl Data>,
    allocate: impl FnOnce(usize) -> Option<B>,
) -> MemoryResult<B> {
    let Some(memory) = memory else {
        return match op {
            MemoryOp::Size => Ok(MemoryReply::Size(0)),
            MemoryOp::Read { len: 0, .. } | MemoryOp::Snapshot => allocated(allocate, 0),
            _ => Err(MemoryError::NoMemory),
        };
    };
    match op {
        MemoryOp::Size => Ok(MemoryReply::Size(size(memory, store))),
        MemoryOp::Read { offset, len } => read(memory, store, offset, len, allocate),
        MemoryOp::Snapshot => read(memory, store, 0, size(memory, store), allocate),
        MemoryOp::Write { offset, data } => {
            data.with_slice(|data| write(memory, store, offset, data))
        }
        MemoryOp::ReadString { ptr, max } => read_string(memory, store, ptr, max, allocate),
        MemoryOp::Restore { data } => data.with_slice(|data| restore(memory, store, data)),
    }
}

fn allocated<B>(allocate: impl FnOnce(usize) -> Option<B>, len: usize) -> MemoryResult<B> {
    allocate(len)
        .map(MemoryReply::Bytes)
        .ok_or(MemoryError::OutOfMemory)
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

fn read<B: DerefMut<Target = [u8]>>(
    memory: &Memory,
    store: &impl AsStoreRef,
    offset: u64,
    len: u64,
    allocate: impl FnOnce(usize) -> Option<B>,
) -> MemoryResult<B> {
    let view = memory.view(store);
    check(offset, len, view.data_size())?;
    let mut bytes = allocate(len as usize).ok_or(MemoryError::OutOfMemory)?;
    // SAFETY: no wasm runs while the executor serves this command, and only the executor
    // thread touches the instance, so memory cannot change or move meanwhile.
    let memory = unsafe { view.data_unchecked() };
    snapshot::copy_out(
        &mut bytes,
        &memory[offset as usize..(offset + len) as usize],
    );
    Ok(MemoryReply::Bytes(bytes))
}

fn write<B>(memory: &Memory, store: &impl AsStoreRef, offset: u64, data: &[u8]) -> MemoryResult<B> {
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
fn read_string<B: DerefMut<Target = [u8]>>(
    memory: &Memory,
    store: &impl AsStoreRef,
    ptr: u64,
    max: u64,
    allocate: impl FnOnce(usize) -> Option<B>,
) -> MemoryResult<B> {
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
    let mut bytes = allocate(len).ok_or(MemoryError::OutOfMemory)?;
    bytes.copy_from_slice(&scanned[..len]);
    Ok(MemoryReply::Bytes(bytes))
}

fn restore<B>(memory: &Memory, store: &mut impl AsStoreMut, data: &[u8]) -> MemoryResult<B> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::test_support::instantiate;
    use crate::prepare::MEMORY_EXPORT;

    fn with_memory(wat: &str, f: impl FnOnce(&mut wasmer::Store, Option<&Memory>)) {
        let (mut store, instance) = instantiate(wat);
        let memory = instance.exports.get_memory(MEMORY_EXPORT).ok().cloned();
        f(&mut store, memory.as_ref());
    }

    fn run_op(
        memory: Option<&Memory>,
        store: &mut wasmer::Store,
        op: MemoryOp<&[u8]>,
        allocate: impl FnOnce(usize) -> Option<Vec<u8>>,
    ) -> MemoryResult<Vec<u8>> {
        run(memory, store, op, allocate)
    }

    fn vec(len: usize) -> Option<Vec<u8>> {
        Some(vec![0; len])
    }

    fn bytes(result: MemoryResult<Vec<u8>>) -> Vec<u8> {
        match result {
            Ok(MemoryReply::Bytes(bytes)) => bytes,
            _ => panic!("not bytes"),
        }
    }

    #[test]
    fn reads_writes_and_strings_stay_within_memory() {
        let wat = r#"(module (memory 1 2) (data (i32.const 8) "hi\00"))"#;
        with_memory(wat, |store, memory| {
            let write: MemoryOp<&[u8]> = MemoryOp::Write {
                offset: 0,
                data: b"abc",
            };
            assert!(matches!(
                run_op(memory, store, write, vec),
                Ok(MemoryReply::Done)
            ));
            let read: MemoryOp<&[u8]> = MemoryOp::Read { offset: 0, len: 3 };
            assert_eq!(bytes(run_op(memory, store, read, vec)), b"abc");
            let string: MemoryOp<&[u8]> = MemoryOp::ReadString { ptr: 8, max: 10 };
            assert_eq!(bytes(run_op(memory, store, string, vec)), b"hi");
            let short: MemoryOp<&[u8]> = MemoryOp::ReadString { ptr: 8, max: 1 };
            assert_eq!(
                run_op(memory, store, short, vec).err(),
                Some(MemoryError::StringTooLong { ptr: 8, max: 1 })
            );
            let size = 65_536;
            let past: MemoryOp<&[u8]> = MemoryOp::Read {
                offset: size - 1,
                len: 2,
            };
            assert_eq!(
                run_op(memory, store, past, vec).err(),
                Some(MemoryError::OutOfBounds {
                    offset: size - 1,
                    len: 2,
                    size
                })
            );
            let overflow: MemoryOp<&[u8]> = MemoryOp::Read {
                offset: u64::MAX,
                len: 2,
            };
            assert!(matches!(
                run_op(memory, store, overflow, vec),
                Err(MemoryError::OutOfBounds { .. })
            ));
            let refused: MemoryOp<&[u8]> = MemoryOp::Read { offset: 0, len: 3 };
            assert_eq!(
                run_op(memory, store, refused, |_| None::<Vec<u8>>).err(),
                Some(MemoryError::OutOfMemory)
            );
        });
    }

    #[test]
    fn an_unterminated_string_ends_at_the_end_of_memory() {
        with_memory("(module (memory 1))", |store, memory| {
            let fill = vec![1u8; 65_536];
            let write: MemoryOp<&[u8]> = MemoryOp::Write {
                offset: 0,
                data: &fill,
            };
            assert!(run_op(memory, store, write, vec).is_ok());
            let string: MemoryOp<&[u8]> = MemoryOp::ReadString {
                ptr: 10,
                max: u64::MAX,
            };
            assert_eq!(
                run_op(memory, store, string, vec).err(),
                Some(MemoryError::Unterminated {
                    ptr: 10,
                    size: 65_536
                })
            );
        });
    }

    #[test]
    fn restore_grows_memory_up_to_its_maximum() {
        with_memory("(module (memory 1 2))", |store, memory| {
            let data = vec![3u8; 65_537];
            let restore: MemoryOp<&[u8]> = MemoryOp::Restore { data: &data[..] };
            assert!(matches!(
                run_op(memory, store, restore, vec),
                Ok(MemoryReply::Done)
            ));
            assert!(matches!(
                run_op(memory, store, MemoryOp::Size, vec),
                Ok(MemoryReply::Size(131_072))
            ));
            let too_large = vec![0u8; 131_073];
            let restore: MemoryOp<&[u8]> = MemoryOp::Restore {
                data: &too_large[..],
            };
            assert!(matches!(
                run_op(memory, store, restore, vec),
                Err(MemoryError::TooLarge { len: 131_073, .. })
            ));
        });
    }

    #[test]
    fn without_a_memory_only_empty_reads_succeed() {
        with_memory("(module)", |store, memory| {
            assert!(matches!(
                run_op(memory, store, MemoryOp::Size, vec),
                Ok(MemoryReply::Size(0))
            ));
            assert!(bytes(run_op(memory, store, MemoryOp::Snapshot, vec)).is_empty());
            let write: MemoryOp<&[u8]> = MemoryOp::Write {
                offset: 0,
                data: b"x",
            };
            assert_eq!(
                run_op(memory, store, write, vec).err(),
                Some(MemoryError::NoMemory)
            );
        });
    }
}
