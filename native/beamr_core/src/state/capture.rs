//! Capturing an instance's state into a snapshot, full or as a delta of its base.

use std::ops::DerefMut;

use wasmer::sys::vm::TableElement;
use wasmer::{AsStoreMut, Global, Type, Value};

use super::{funcref_ptr, raw_global, vm_table, StateAccess, StateError};
use crate::snapshot::{GlobalValue, Lineage, MemoryParts, Parts, TableEntries};

impl StateAccess {
    fn read_global(
        &self,
        store: &mut impl AsStoreMut,
        index: u32,
        global: &Global,
    ) -> Result<GlobalValue, StateError> {
        Ok(match global.get(store) {
            Value::I32(v) => GlobalValue::I32(v as u32),
            Value::I64(v) => GlobalValue::I64(v as u64),
            Value::F32(v) => GlobalValue::F32(v.to_bits()),
            Value::F64(v) => GlobalValue::F64(v.to_bits()),
            Value::V128(v) => GlobalValue::V128(v),
            Value::ExternRef(None) => GlobalValue::NullExternRef,
            Value::ExceptionRef(None) => GlobalValue::NullExnRef,
            // Read raw: `get` made a Function object for it in the Store; dropping our
            // handle does not free that, so funcref globals are read below instead.
            Value::FuncRef(_) => unreachable!("funcref globals are read raw"),
            _ => return Err(StateError::Unsnapshottable("global", index)),
        })
    }

    pub(super) fn capture_globals(
        &self,
        store: &mut impl AsStoreMut,
    ) -> Result<Vec<(u32, GlobalValue)>, StateError> {
        self.globals
            .iter()
            .map(|(index, global)| {
                let value = if global.ty(store).ty == Type::FuncRef {
                    // SAFETY: the executor is the only thread using the Store, and no wasm runs now.
                    let ptr = unsafe { raw_global(store, global).as_ref().val.funcref };
                    match ptr {
                        0 => GlobalValue::FuncRef(None),
                        p => GlobalValue::FuncRef(Some(
                            *self
                                .index_of
                                .get(&p)
                                .ok_or(StateError::Unsnapshottable("global", *index))?,
                        )),
                    }
                } else {
                    self.read_global(store, *index, global)?
                };
                Ok((*index, value))
            })
            .collect()
    }

    /// Every table's entries as function indices. A non-null entry this instance cannot
    /// name (an externref, or a function it does not expose) is `{unsnapshottable, {table,
    /// Slot}}`, whichever table holds it (the error term has no room for the table's index).
    pub(super) fn capture_tables(
        &self,
        store: &mut impl AsStoreMut,
    ) -> Result<Vec<(u32, TableEntries)>, StateError> {
        self.tables
            .iter()
            .map(|(index, table)| {
                let vm = vm_table(store, table);
                let entries = (0..vm.size())
                    .map(|slot| match vm.get(slot) {
                        Some(TableElement::FuncRef(None)) | Some(TableElement::ExternRef(None)) => {
                            Ok(None)
                        }
                        Some(TableElement::FuncRef(Some(r))) => self
                            .index_of
                            .get(&funcref_ptr(r))
                            .map(|f| Some(*f))
                            .ok_or(StateError::Unsnapshottable("table", slot)),
                        _ => Err(StateError::Unsnapshottable("table", slot)),
                    })
                    .collect::<Result<_, _>>()?;
                Ok((*index, entries))
            })
            .collect()
    }

    /// A snapshot: a delta of the changes since the base when `incremental` and there is
    /// a base, a full one otherwise. Its buffer comes from `allocate`, sized up front, and
    /// memory (or the changed pages) is copied into it once; `None` from `allocate` (the
    /// allocator refused) is `{resource_limit, memory}`.
    pub fn capture<B: DerefMut<Target = [u8]>>(
        &self,
        store: &mut impl AsStoreMut,
        incremental: bool,
        allocate: impl FnOnce(usize) -> Option<B>,
    ) -> Result<B, StateError> {
        let module = self.module;
        let globals = self.capture_globals(store)?;
        let tables = self.capture_tables(store)?;
        let tables: Vec<(u32, &[Option<u32>])> = tables.iter().map(|(i, e)| (*i, &e[..])).collect();
        let view = self.memory.as_ref().map(|m| m.view(store));
        // SAFETY: no wasm runs while the executor serves this command, and only the
        // executor thread touches the instance, so memory cannot change or move meanwhile.
        let memory: &[u8] = view.as_ref().map_or(&[], |v| unsafe { v.data_unchecked() });
        let has_memory = view.is_some();
        let mut tracking = self.tracking.borrow_mut();
        let delta_of = tracking.base.take().filter(|_| incremental);
        let runs = match delta_of {
            Some(_) if has_memory => tracking.pages.take_changes(memory),
            _ => None,
        };
        let (lineage, sequence, memory_parts) = match (delta_of, &runs) {
            (Some((parent, sequence)), Some(runs)) => (
                Lineage::Delta { parent },
                sequence + 1,
                MemoryParts::Changed {
                    len: memory.len(),
                    runs,
                },
            ),
            (Some((parent, sequence)), None) if !has_memory => {
                (Lineage::Delta { parent }, sequence + 1, MemoryParts::None)
            }
            _ if has_memory => (Lineage::Full, 0, MemoryParts::Whole { len: memory.len() }),
            _ => (Lineage::Full, 0, MemoryParts::None),
        };
        let parts = Parts {
            module: &module,
            lineage,
            sequence,
            globals: &globals,
            tables: &tables,
            memory: memory_parts,
        };
        let mut binary = allocate(parts.encoded_len()).ok_or(StateError::Grow("memory"))?;
        let encoded = parts.encode_into(&mut binary, memory);
        if let (Lineage::Full, MemoryParts::Whole { .. }) = (lineage, memory_parts) {
            tracking
                .pages
                .snapshotted(memory, encoded.page_digests, incremental);
        }
        tracking.base = Some((encoded.id, sequence));
        Ok(binary)
    }
}
