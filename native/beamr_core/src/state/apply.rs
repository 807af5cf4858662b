//! Restoring an instance's state from a snapshot chain, validated whole before anything
//! is written.

use std::collections::BTreeMap;

use wasmer::sys::vm::{TableElement, VMFuncRef};
use wasmer::{AsStoreMut, Pages, Type, Value, WASM_PAGE_SIZE};

use super::base::Base;
use super::memory_file::Unmapped;
use super::zero_pages::{is_zero, ZeroPages};
use super::{funcref_ptr, raw_global, ty_readonly, vm_table, MappedFile, StateAccess, StateError};
use crate::snapshot::{
    self, GlobalValue, MemoryState, Snapshot, SnapshotError, TableEntries, PAGE,
};

impl StateAccess {
    /// Restores `chain` (a full snapshot, then its deltas): validates the whole chain
    /// against this instance, then writes the state it ends in. Nothing is written unless
    /// everything checks out (growing memory or the tables, which comes first, is the one
    /// change a failure can leave behind, and only on an OS refusal).
    pub fn apply(&self, store: &mut impl AsStoreMut, chain: &[&[u8]]) -> Result<(), StateError> {
        let chain: Vec<Snapshot> = chain
            .iter()
            .map(|bytes| snapshot::decode(bytes))
            .collect::<Result<_, _>>()
            .map_err(StateError::Snapshot)?;
        self.apply_decoded(store, chain, Known::default())
    }

    /// `apply` with what is known beforehand: `fresh`, the zero pages of memory when it
    /// is a fresh instantiation's (pages of zeros on both sides are not even read), and
    /// `base`, the hibernation base made of the chain's full snapshot (whose memory file
    /// is mapped instead of writing its pages).
    pub fn apply_known(
        &self,
        store: &mut impl AsStoreMut,
        chain: &[&[u8]],
        fresh: Option<&ZeroPages>,
        base: Option<&Base>,
    ) -> Result<(), StateError> {
        let chain: Vec<Snapshot> = chain
            .iter()
            .map(|bytes| snapshot::decode(bytes))
            .collect::<Result<_, _>>()
            .map_err(StateError::Snapshot)?;
        let known = Known {
            memory: fresh,
            base,
        };
        self.apply_decoded(store, chain, known)
    }

    /// `apply` of a chain already decoded.
    pub(super) fn apply_decoded(
        &self,
        store: &mut impl AsStoreMut,
        chain: Vec<Snapshot>,
        known: Known,
    ) -> Result<(), StateError> {
        let module = self.module;
        for element in &chain {
            element
                .check_module(&module)
                .map_err(StateError::Snapshot)?;
        }
        snapshot::check_chain(&chain).map_err(StateError::Snapshot)?;
        let snap = chain.last().expect("a chain is not empty");
        let mismatch = |why: String| StateError::Snapshot(SnapshotError::Mismatch(why));

        // Globals: exactly this instance's mutable globals, of the same types.
        let current = self.capture_globals_types(store);
        if snap.globals.len() != current.len()
            || snap
                .globals
                .iter()
                .zip(&current)
                .any(|((i, v), (j, w))| i != j || !v.same_type(w))
        {
            return Err(mismatch("mutable globals differ".into()));
        }
        let funcref = |f: Option<u32>| -> Result<Option<VMFuncRef>, StateError> {
            f.map(|f| {
                self.ref_of
                    .get(&f)
                    .copied()
                    .ok_or_else(|| mismatch(format!("function {f} cannot be referenced")))
            })
            .transpose()
        };
        let global_refs: Vec<Option<VMFuncRef>> = snap
            .globals
            .iter()
            .map(|(_, v)| match v {
                GlobalValue::FuncRef(f) => funcref(*f),
                _ => Ok(None),
            })
            .collect::<Result<_, _>>()?;

        // Tables: each from the last element of the chain that holds it. A version-3
        // element holds every table, so exactly this instance's; a version-1 or -2 one
        // table 0 alone (when the module has one), and leaves the others as they are.
        let ours: Vec<u32> = self.tables.iter().map(|(i, _)| *i).collect();
        let mut wanted: BTreeMap<u32, &TableEntries> = BTreeMap::new();
        for element in &chain {
            let theirs: Vec<u32> = element.tables.iter().map(|(i, _)| *i).collect();
            let expected = if element.every_table {
                &ours[..]
            } else {
                &ours[..ours.len().min(1)]
            };
            if theirs != expected {
                return Err(mismatch(format!(
                    "tables {theirs:?} in the snapshot, {expected:?} in the instance"
                )));
            }
            wanted.extend(element.tables.iter().map(|(i, entries)| (*i, entries)));
        }
        // Entries must be referable, fit the table's type and maximum, and leave a
        // read-only table as it is.
        let mut table_plans = Vec::with_capacity(wanted.len());
        for (index, entries) in wanted {
            let table = &self
                .tables
                .iter()
                .find(|(i, _)| *i == index)
                .expect("checked above")
                .1;
            let ty = table.ty(store);
            let refs: Vec<Option<VMFuncRef>> = entries
                .iter()
                .map(|e| funcref(*e))
                .collect::<Result<_, _>>()?;
            if ty.ty != Type::FuncRef && refs.iter().any(Option::is_some) {
                return Err(mismatch(format!(
                    "function references in table {index}, not a funcref table"
                )));
            }
            if ty
                .maximum
                .is_some_and(|max| refs.len() as u64 > u64::from(max))
            {
                return Err(mismatch(format!("table {index} beyond its maximum")));
            }
            if ty.readonly {
                let vm = vm_table(store, table);
                let same = vm.size() as usize == refs.len()
                    && refs.iter().enumerate().all(|(i, r)| {
                        matches!((vm.get(i as u32), r), (Some(TableElement::FuncRef(a)), b) if a.map(funcref_ptr) == b.map(funcref_ptr))
                    });
                if !same {
                    return Err(mismatch(format!("the module's table {index} is read-only")));
                }
            }
            table_plans.push((table, ty.ty, refs));
        }

        // Memory 0: present iff the instance has one, within its maximum.
        let memory_plan = match (&self.memory, &snap.memory) {
            (None, None) => None,
            (Some(memory), Some(state)) => {
                let len = state.size() as u64;
                let max = memory
                    .ty(store)
                    .maximum
                    .map_or(1 << 32, |p| p.bytes().0 as u64);
                if len > max {
                    return Err(mismatch(format!(
                        "memory of {len} bytes beyond the maximum of {max}"
                    )));
                }
                Some((memory, state.size()))
            }
            _ => return Err(mismatch("memory 0 present in only one of them".into())),
        };

        // Everything checked: grow, then write.
        if let Some((memory, len)) = &memory_plan {
            let current = memory.view(store).data_size();
            if *len as u64 > current {
                let pages = (*len as u64 - current) / WASM_PAGE_SIZE as u64;
                memory
                    .grow(store, Pages(pages as u32))
                    .map_err(|_| StateError::Grow("memory"))?;
            }
        }
        for (table, ty, refs) in &table_plans {
            let vm = vm_table(store, table);
            let size = vm.size() as usize;
            if refs.len() > size && vm.grow((refs.len() - size) as u32, null(*ty)).is_none() {
                return Err(StateError::Grow("table"));
            }
        }
        for ((index, value), r) in snap.globals.iter().zip(global_refs) {
            let global = &self
                .globals
                .iter()
                .find(|(i, _)| i == index)
                .expect("checked above")
                .1;
            let value = match *value {
                GlobalValue::I32(v) => Value::I32(v as i32),
                GlobalValue::I64(v) => Value::I64(v as i64),
                GlobalValue::F32(v) => Value::F32(f32::from_bits(v)),
                GlobalValue::F64(v) => Value::F64(f64::from_bits(v)),
                GlobalValue::V128(v) => Value::V128(v),
                GlobalValue::NullExternRef => Value::ExternRef(None),
                GlobalValue::NullExnRef => Value::ExceptionRef(None),
                GlobalValue::FuncRef(_) => {
                    // SAFETY: as in capture; the pointer belongs to this instance.
                    unsafe {
                        raw_global(store, global).as_mut().val.funcref = r.map_or(0, funcref_ptr)
                    };
                    continue;
                }
            };
            global
                .set(store, value)
                .map_err(|_| mismatch(format!("global {index} refused its value")))?;
        }
        for (table, ty, refs) in table_plans {
            let vm = vm_table(store, table);
            if !ty_readonly(vm) {
                for slot in 0..vm.size() {
                    let element = match refs.get(slot as usize) {
                        Some(Some(r)) => TableElement::FuncRef(Some(*r)),
                        // Tables cannot shrink: entries past the snapshot's size become null.
                        _ => null(ty),
                    };
                    vm.set(slot, element)
                        .map_err(|_| StateError::Grow("table"))?;
                }
            }
        }
        let mut tracking = self.tracking.borrow_mut();
        tracking.base = None;
        if let Some((memory, _)) = memory_plan {
            let view = memory.view(store);
            // SAFETY: as in capture.
            let bytes = unsafe { view.data_unchecked_mut() };
            tracking.pages.release(bytes);
            match write_memory(bytes, &chain, &known) {
                Mapping::Kept => {}
                Mapping::New(mapped) => self.mapped.set(Some(mapped)),
                Mapping::Lost => self.mapped.set(None),
            }
            tracking
                .pages
                .restored(bytes, snapshot::chain_digests(&chain, bytes.len()));
        }
        tracking.base = Some((snap.id, snap.sequence));
        Ok(())
    }

    /// This instance's mutable globals with placeholder values of their types.
    fn capture_globals_types(&self, store: &mut impl AsStoreMut) -> Vec<(u32, GlobalValue)> {
        self.globals
            .iter()
            .map(|(index, global)| {
                let value = match global.ty(store).ty {
                    Type::I32 => GlobalValue::I32(0),
                    Type::I64 => GlobalValue::I64(0),
                    Type::F32 => GlobalValue::F32(0),
                    Type::F64 => GlobalValue::F64(0),
                    Type::V128 => GlobalValue::V128(0),
                    Type::FuncRef => GlobalValue::FuncRef(None),
                    Type::ExternRef => GlobalValue::NullExternRef,
                    Type::ExceptionRef => GlobalValue::NullExnRef,
                };
                (*index, value)
            })
            .collect()
    }
}

/// The null entry of a table of type `ty` (funcref or externref: preparation refuses
/// exnref tables).
fn null(ty: Type) -> TableElement {
    if ty == Type::FuncRef {
        TableElement::FuncRef(None)
    } else {
        TableElement::ExternRef(None)
    }
}

/// What is known before a restore: the pages of zeros (see `ZeroPages`), and the chain's
/// full snapshot as a hibernation base.
#[derive(Default)]
pub(in crate::state) struct Known<'a> {
    /// Memory's, when it is a fresh instantiation's.
    pub memory: Option<&'a ZeroPages>,
    /// The base made of the chain's full snapshot: its zero pages were found when it
    /// became one, and its memory file can be mapped.
    pub base: Option<&'a Base>,
}

/// What a restore did to the memory file mapped over memory.
enum Mapping {
    /// Nothing: one mapped before (if any) is where it was.
    Kept,
    /// Mapped a base's file.
    New(MappedFile),
    /// Replaced it with zeros, failing to map a new one.
    Lost,
}

/// Writes the memory `chain` describes: the full snapshot's, zeros past it (memory
/// cannot shrink, so a smaller snapshot leaves memory larger than it), then each delta's
/// pages in order.
///
/// The full snapshot's pages are written only where memory differs: a page of zeros read
/// from memory never written maps the kernel's shared zero page, so restoring into a fresh
/// instance makes resident only the pages that hold data (a 12 MiB AOS memory holds about
/// 2 MiB), and an instance revived from hibernation costs what it did before. Pages known
/// to be zeros on both sides (`known`) are skipped unread.
///
/// When the full snapshot is a hibernation base whose memory file can be mapped, it is
/// mapped over memory instead (see `memory_file`): nothing is copied and its pages are
/// shared.
fn write_memory(bytes: &mut [u8], chain: &[Snapshot], known: &Known) -> Mapping {
    let mut mapping = Mapping::Kept;
    for (n, element) in chain.iter().enumerate() {
        match &element.memory {
            Some(MemoryState::Whole(data)) => {
                let first = known.base.filter(|base| n == 0 && base.id == element.id);
                mapping = match first.map_or(Err(Unmapped::AsItWas), |base| {
                    map_file(base, bytes, data.len())
                }) {
                    Ok(()) => Mapping::New(MappedFile {
                        start: bytes.as_ptr() as usize,
                        len: data.len(),
                        base: element.id,
                    }),
                    Err(Unmapped::AsItWas) => Mapping::Kept,
                    Err(Unmapped::Zeros) => Mapping::Lost,
                };
                let lost = matches!(mapping, Mapping::Lost);
                let memory_zero = |page| lost || known.memory.is_some_and(|z| z.get(page));
                let first_zero = first.map(|base| &base.zero);
                // A mapped file is the full snapshot's memory: only what lies past it is
                // left to write.
                let unmapped = match mapping {
                    Mapping::New(_) => 0,
                    _ => data.len(),
                };
                for (page, (to, from)) in bytes[..unmapped]
                    .chunks_mut(PAGE)
                    .zip(data.chunks(PAGE))
                    .enumerate()
                {
                    let from_zero = first_zero.map_or_else(|| is_zero(from), |z| z.get(page));
                    match (from_zero, memory_zero(page)) {
                        (true, true) => {}
                        (true, false) => zero_unless_zero(to),
                        (false, true) => to.copy_from_slice(from),
                        (false, false) if to != from => to.copy_from_slice(from),
                        (false, false) => {}
                    }
                }
                let past = data.len().div_ceil(PAGE);
                for (page, to) in bytes[data.len()..].chunks_mut(PAGE).enumerate() {
                    if !memory_zero(past + page) {
                        zero_unless_zero(to);
                    }
                }
            }
            Some(MemoryState::Changed { runs, pages, .. }) => {
                let mut at = 0;
                for run in runs {
                    let range = run.bytes();
                    bytes[range.clone()].copy_from_slice(&pages[at..at + range.len()]);
                    at += range.len();
                }
            }
            None => {}
        }
    }
    mapping
}

/// Maps `base`'s memory file (of `len` bytes) over `bytes`.
fn map_file(base: &Base, bytes: &mut [u8], len: usize) -> Result<(), Unmapped> {
    match base.memory_file() {
        // SAFETY: `bytes` is the instance's wasm memory, a private mapping wasmer made
        // readable and writable for its whole length, and only this executor touches it
        // while no wasm runs; nothing holds a reference into it across the restore.
        Some(file) if file.size() == len => unsafe { file.map_over(bytes) },
        _ => Err(Unmapped::AsItWas),
    }
}

/// Zeros `bytes` (at most a page) unless it holds only zeros already.
fn zero_unless_zero(bytes: &mut [u8]) {
    if !is_zero(bytes) {
        bytes.fill(0);
    }
}
