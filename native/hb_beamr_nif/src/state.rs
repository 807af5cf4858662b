//! Snapshots of an instance's state, served by its executor: capture (full, or a delta
//! of what changed since the last snapshot or restore) into the format of
//! `beamr_core::snapshot`, and restore a full snapshot and its deltas after validating
//! all of them.
//!
//! State is memory 0, every mutable global (exported by preparation under reserved
//! names, so also `__stack_pointer` and friends; the fuel countdown is not among them: it
//! is per-call bookkeeping, set afresh by every outermost call) and table 0.
//!
//! Table entries and funcref globals are function references, which only mean something
//! inside one Store. They are written as function indices. wasmer's `Table::get` and
//! `Global::get` would allocate a new `Function` in the Store for every non-null
//! reference (never freed until the Store goes, so snapshots would leak), and a
//! `Function` has no index anyway; so this reads the raw references (pointers to the
//! instance's `VMCallerCheckedAnyfunc`s) through wasmer's `sys` internals, the way
//! `beamr_core::store_objects` reaches its objects. A pointer is mapped back to an
//! index through what the instance exposes: its exported functions and the functions
//! its active element segments put into table 0 at instantiation. A reference outside
//! that set (a function placed by `table.set`/`table.init` from a passive or declarative
//! segment, and neither exported nor initially in the table) cannot be represented, and
//! capturing refuses with `{unsnapshottable, {table, Slot}}` rather than lose it.
//!
//! Deltas: every snapshot taken or restored becomes the instance's base (its id and
//! sequence number, and memory as `beamr_core::dirty_pages` tracks it); a delta holds the
//! pages changed since, and the globals and table whole (they are small).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ptr::NonNull;

use beamr_core::dirty_pages::DirtyPages;
use beamr_core::prepare::{
    global_export_name, MEMORY_EXPORT, RESERVED_EXPORT_PREFIX, TABLE_EXPORT,
};
use beamr_core::snapshot::{
    self, GlobalValue, Lineage, MemoryParts, MemoryState, ModuleId, Parts, Snapshot, SnapshotError,
    SnapshotId,
};
use rustler::{Encoder, Env, OwnedBinary, Term};
use wasmer::sys::vm::{TableElement, VMExtern, VMFuncRef, VMTable};
use wasmer::{
    AsStoreMut, ExportIndex, Extern, Global, Instance, Memory, Module, Pages, Table, Type, Value,
    WASM_PAGE_SIZE,
};

use crate::atoms;
use crate::bytes::try_binary;
use crate::bytes::BinaryList;
use crate::instance::Shared;

pub enum StateOp {
    /// A snapshot: a delta of the changes since the base when `incremental` and there is
    /// a base, a full one otherwise.
    Capture { incremental: bool },
    /// Restore a chain: a full snapshot, then its deltas.
    Apply { chain: BinaryList },
}

pub enum StateError {
    Snapshot(SnapshotError),
    /// The state holds something the format cannot represent (see the module doc).
    Unsnapshottable(&'static str, u32),
    /// Snapshots are taken and restored between calls, never from inside one: wasm
    /// frames on the stack are not part of the state.
    CallInProgress,
    /// The memory or table could not be grown to the snapshot's size, or the snapshot's
    /// binary could not be allocated: `{resource_limit, What}`.
    Grow(&'static str),
    /// wasmer panicked (caught); the instance answers the next command.
    Panicked,
}

pub enum StateReply {
    Captured(OwnedBinary),
    Restored,
}

/// An anyfunc pointer, as a map key.
type FuncPtr = usize;

/// What the executor keeps to capture and restore its instance's state.
pub struct StateAccess {
    module: ModuleId,
    memory: Option<Memory>,
    table: Option<Table>,
    /// Mutable globals, ascending by index.
    globals: Vec<(u32, Global)>,
    index_of: HashMap<FuncPtr, u32>,
    ref_of: HashMap<u32, VMFuncRef>,
    tracking: RefCell<Tracking>,
}

/// What the next delta follows.
struct Tracking {
    /// The id and sequence number of the snapshot the state was last captured in or
    /// restored from. Unset while a capture or restore is under way, so that one that
    /// fails (or panics) half-way makes the next incremental snapshot a full one, never
    /// a delta of the wrong base.
    base: Option<(SnapshotId, u64)>,
    /// Memory 0's pages changed since the base.
    pages: DirtyPages,
}

fn funcref_ptr(f: VMFuncRef) -> FuncPtr {
    f.0.as_ptr() as FuncPtr
}

fn vm_table<'s>(store: &'s mut impl AsStoreMut, table: &Table) -> &'s mut VMTable {
    match Extern::Table(table.clone()).to_vm_extern().unwrap_sys() {
        VMExtern::Table(handle) => handle.get_mut(store.objects_mut().as_sys_mut()),
        _ => unreachable!("a table's extern is a table"),
    }
}

/// The raw value cell of a global (for funcref globals, whose values are anyfunc pointers).
fn raw_global(
    store: &mut impl AsStoreMut,
    global: &Global,
) -> NonNull<wasmer::sys::vm::VMGlobalDefinition> {
    match Extern::Global(global.clone()).to_vm_extern().unwrap_sys() {
        VMExtern::Global(handle) => handle.get(store.objects_mut().as_sys()).vmglobal(),
        _ => unreachable!("a global's extern is a global"),
    }
}

impl StateAccess {
    pub fn new(
        store: &mut impl AsStoreMut,
        module: &Module,
        instance: &Instance,
        shared: &Shared,
    ) -> StateAccess {
        let (info, tracking) = (module.info(), shared.dirty_tracking);
        let exports = &instance.exports;
        let mut globals: Vec<(u32, Global)> = exports
            .iter()
            .filter_map(|(name, ext)| {
                let index = name
                    .strip_prefix(RESERVED_EXPORT_PREFIX)?
                    .strip_prefix("global_")?
                    .parse()
                    .ok()?;
                match ext {
                    Extern::Global(g) if name == &global_export_name(index) => {
                        Some((index, g.clone()))
                    }
                    _ => None,
                }
            })
            .collect();
        globals.sort_by_key(|(index, _)| *index);
        let mut access = StateAccess {
            module: shared.module.state_identity,
            memory: exports.get_memory(MEMORY_EXPORT).ok().cloned(),
            table: exports.get_table(TABLE_EXPORT).ok().cloned(),
            globals,
            index_of: HashMap::new(),
            ref_of: HashMap::new(),
            tracking: RefCell::new(Tracking {
                base: None,
                pages: DirtyPages::new(tracking),
            }),
        };
        // Exported functions: their anyfunc is the instance's own, the one tables hold.
        for (name, index) in &info.exports {
            if let (ExportIndex::Function(f), Ok(function)) = (index, exports.get_function(name)) {
                if let VMExtern::Function(handle) = Extern::Function(function.clone())
                    .to_vm_extern()
                    .unwrap_sys()
                {
                    let ptr = handle.get(store.objects_mut().as_sys()).anyfunc.as_ptr();
                    access.learn(f.as_u32(), VMFuncRef(ptr));
                }
            }
        }
        // What the active segments put into table 0, read back from the table. A start
        // function could have changed the table already, so then only exports count.
        if let (Some(table), None) = (access.table.clone(), info.start_function) {
            let mut slots: HashMap<u32, u32> = HashMap::new();
            for init in info
                .table_initializers
                .iter()
                .filter(|i| i.table_index.as_u32() == 0)
            {
                let offset = match init.offset_expr.ops() {
                    [wasmer_types::InitExprOp::I32Const(n)] => *n as u32,
                    [wasmer_types::InitExprOp::I64Const(n)] => *n as u32,
                    _ => continue,
                };
                for (k, f) in init.elements.iter().enumerate() {
                    slots.insert(offset.wrapping_add(k as u32), f.as_u32());
                }
            }
            let vm = vm_table(store, &table);
            let found: Vec<(u32, VMFuncRef)> = slots
                .into_iter()
                .filter_map(|(slot, f)| match vm.get(slot) {
                    Some(TableElement::FuncRef(Some(r))) => Some((f, r)),
                    _ => None,
                })
                .collect();
            for (f, r) in found {
                access.learn(f, r);
            }
        }
        access
    }

    fn learn(&mut self, index: u32, r: VMFuncRef) {
        self.index_of.insert(funcref_ptr(r), index);
        self.ref_of.insert(index, r);
    }

    pub fn run(&self, store: &mut impl AsStoreMut, op: StateOp) -> Result<StateReply, StateError> {
        match op {
            StateOp::Capture { incremental } => {
                self.capture(store, incremental).map(StateReply::Captured)
            }
            StateOp::Apply { chain } => chain
                .with_slices(|chain| self.apply(store, chain))
                .map(|()| StateReply::Restored),
        }
    }

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

    fn capture_globals(
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

    fn capture_table(
        &self,
        store: &mut impl AsStoreMut,
    ) -> Result<Option<Vec<Option<u32>>>, StateError> {
        let Some(table) = &self.table else {
            return Ok(None);
        };
        let vm = vm_table(store, table);
        (0..vm.size())
            .map(|slot| match vm.get(slot) {
                Some(TableElement::FuncRef(None)) | Some(TableElement::ExternRef(None)) => Ok(None),
                Some(TableElement::FuncRef(Some(r))) => self
                    .index_of
                    .get(&funcref_ptr(r))
                    .map(|f| Some(*f))
                    .ok_or(StateError::Unsnapshottable("table", slot)),
                _ => Err(StateError::Unsnapshottable("table", slot)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The result binary is sized up front and memory (or the changed pages) is copied
    /// into it once.
    fn capture(
        &self,
        store: &mut impl AsStoreMut,
        incremental: bool,
    ) -> Result<OwnedBinary, StateError> {
        let module = self.module;
        let globals = self.capture_globals(store)?;
        let table = self.capture_table(store)?;
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
            table: table.as_deref(),
            memory: memory_parts,
        };
        let mut binary = try_binary(parts.encoded_len()).map_err(|_| StateError::Grow("memory"))?;
        let encoded = parts.encode_into(binary.as_mut_slice(), memory);
        if let (Lineage::Full, MemoryParts::Whole { .. }) = (lineage, memory_parts) {
            tracking
                .pages
                .snapshotted(memory, encoded.page_digests, incremental);
        }
        tracking.base = Some((encoded.id, sequence));
        Ok(binary)
    }

    /// Validates the whole chain against this instance, then writes the state it ends in.
    /// Nothing is written unless everything checks out (growing memory or the table, which
    /// comes first, is the one change a failure can leave behind, and only on an OS
    /// refusal).
    fn apply(&self, store: &mut impl AsStoreMut, chain: &[&[u8]]) -> Result<(), StateError> {
        let module = self.module;
        let chain: Vec<Snapshot> = chain
            .iter()
            .map(|bytes| snapshot::decode(bytes))
            .collect::<Result<_, _>>()
            .map_err(StateError::Snapshot)?;
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

        // Table 0: present iff the instance has one; entries must be referable.
        let table_plan = match (&self.table, &snap.table) {
            (None, None) => None,
            (Some(table), Some(entries)) => {
                let ty = table.ty(store);
                let refs: Vec<Option<VMFuncRef>> = entries
                    .iter()
                    .map(|e| funcref(*e))
                    .collect::<Result<_, _>>()?;
                if ty.ty != Type::FuncRef && refs.iter().any(Option::is_some) {
                    return Err(mismatch(
                        "function references in a non-funcref table".into(),
                    ));
                }
                if ty
                    .maximum
                    .is_some_and(|max| refs.len() as u64 > u64::from(max))
                {
                    return Err(mismatch("table beyond its maximum".into()));
                }
                if ty.readonly {
                    let vm = vm_table(store, table);
                    let same = vm.size() as usize == refs.len()
                        && refs.iter().enumerate().all(|(i, r)| {
                            matches!((vm.get(i as u32), r), (Some(TableElement::FuncRef(a)), b) if a.map(funcref_ptr) == b.map(funcref_ptr))
                        });
                    if !same {
                        return Err(mismatch("the module's table is read-only".into()));
                    }
                }
                Some((table, ty.ty, refs))
            }
            _ => return Err(mismatch("table 0 present in only one of them".into())),
        };

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
        if let Some((table, _, refs)) = &table_plan {
            let vm = vm_table(store, table);
            let size = vm.size() as usize;
            if refs.len() > size
                && vm
                    .grow((refs.len() - size) as u32, TableElement::FuncRef(None))
                    .is_none()
            {
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
        if let Some((table, ty, refs)) = table_plan {
            let vm = vm_table(store, table);
            if !ty_readonly(vm) {
                let null = || {
                    if ty == Type::FuncRef {
                        TableElement::FuncRef(None)
                    } else {
                        TableElement::ExternRef(None)
                    }
                };
                for slot in 0..vm.size() {
                    let element = match refs.get(slot as usize) {
                        Some(Some(r)) => TableElement::FuncRef(Some(*r)),
                        // Tables cannot shrink: entries past the snapshot's size become null.
                        _ => null(),
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
            write_memory(bytes, &chain);
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

/// Writes the memory `chain` describes: the full snapshot's, zeros past it (memory
/// cannot shrink, so a smaller snapshot leaves memory larger than it), then each delta's
/// pages in order.
fn write_memory(bytes: &mut [u8], chain: &[Snapshot]) {
    for element in chain {
        match &element.memory {
            Some(MemoryState::Whole(data)) => {
                bytes[..data.len()].copy_from_slice(data);
                bytes[data.len()..].fill(0);
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
}

fn ty_readonly(vm: &VMTable) -> bool {
    vm.ty().readonly
}

impl Encoder for StateError {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self {
            StateError::Snapshot(SnapshotError::Invalid(why)) => {
                (atoms::invalid_snapshot(), why.as_str()).encode(env)
            }
            StateError::Snapshot(SnapshotError::Mismatch(why)) => {
                (atoms::snapshot_mismatch(), why.as_str()).encode(env)
            }
            StateError::Unsnapshottable(what, index) => (
                atoms::unsnapshottable(),
                (
                    rustler::types::atom::Atom::from_str(env, what).unwrap(),
                    *index,
                ),
            )
                .encode(env),
            StateError::CallInProgress => atoms::call_in_progress().encode(env),
            StateError::Panicked => {
                (atoms::other(), "panic during snapshot or restore").encode(env)
            }
            StateError::Grow(what) => (
                atoms::resource_limit(),
                rustler::types::atom::Atom::from_str(env, what).unwrap(),
            )
                .encode(env),
        }
    }
}
