//! Snapshots of an instance's state, served by its executor: capture (full, or a delta
//! of what changed since the last snapshot or restore) into the format of
//! `crate::snapshot`, and restore a full snapshot and its deltas after validating
//! all of them.
//!
//! State is memory 0, every mutable global (exported by preparation under reserved
//! names, so also `__stack_pointer` and friends; the fuel countdown is not among them: it
//! is per-call bookkeeping, set afresh by every outermost call) and every table (exported
//! by preparation too, `prepare::table_export_name`).
//!
//! Table entries and funcref globals are function references, which only mean something
//! inside one Store. They are written as function indices. wasmer's `Table::get` and
//! `Global::get` would allocate a new `Function` in the Store for every non-null
//! reference (never freed until the Store goes, so snapshots would leak), and a
//! `Function` has no index anyway; so this reads the raw references (pointers to the
//! instance's `VMCallerCheckedAnyfunc`s) through wasmer's `sys` internals, the way
//! `crate::store_objects` reaches its objects. A pointer is mapped back to an
//! index through what the instance exposes: its exported functions (among them the
//! hidden exports preparation gives every function a table or global could come to hold
//! otherwise unseen, see `prepare::host_exports`) and the functions its active element
//! segments put into the tables at instantiation. A reference outside that set cannot be
//! represented, and capturing refuses with `{unsnapshottable, {table, Slot}}` rather than
//! lose it; so does a non-null entry of a table of another reference type (externref):
//! only null entries are representable there.
//!
//! Deltas: every snapshot taken or restored becomes the instance's base (its id and
//! sequence number, and memory as `crate::dirty_pages` tracks it); a delta holds the
//! pages changed since, and the globals and tables whole (they are small).
//!
//! The executor owns a [`StateAccess`]; capturing is in `capture.rs`, restoring in
//! `apply.rs`.

mod apply;
pub mod base;
mod capture;
pub mod hibernate;
pub mod memory_file;
#[cfg(target_os = "linux")]
mod resident;
mod scratch;
pub mod zero_pages;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ptr::NonNull;

use wasmer::sys::vm::{TableElement, VMExtern, VMFuncRef, VMTable};
use wasmer::{AsStoreMut, ExportIndex, Extern, Global, Instance, Memory, Module, Table};

use crate::dirty_pages::{DirtyPages, Policy};
use crate::prepare::{
    global_export_name, table_export_name, MEMORY_EXPORT, RESERVED_EXPORT_PREFIX, START_EXPORT,
};
use crate::snapshot::{ModuleId, SnapshotError, SnapshotId};

#[derive(Debug)]
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
    /// Hibernation: the instance has requests to serve first.
    Busy,
    /// Hibernation: the image could not be written to `hibernate_dir`.
    Disk(String),
}

/// A buffer of `len` zeros, or None when it cannot be allocated: the sizes asked for here
/// (snapshots) come from memory's size.
pub fn zeroed(len: usize) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len).ok()?;
    bytes.resize(len, 0);
    Some(bytes)
}

/// An anyfunc pointer, as a map key.
type FuncPtr = usize;

/// What the executor keeps to capture and restore its instance's state.
pub struct StateAccess {
    module: ModuleId,
    memory: Option<Memory>,
    /// Every table, ascending by index.
    tables: Vec<(u32, Table)>,
    /// Mutable globals, ascending by index.
    globals: Vec<(u32, Global)>,
    index_of: HashMap<FuncPtr, u32>,
    ref_of: HashMap<u32, VMFuncRef>,
    tracking: RefCell<Tracking>,
    /// The base memory file mapped over memory by the last restore that mapped one.
    mapped: Cell<Option<MappedFile>>,
}

/// A base's memory file mapped over the first `len` bytes of memory at `start` (see
/// `memory_file`): where memory was not written since, it holds base `base`'s pages.
#[derive(Clone, Copy)]
struct MappedFile {
    start: usize,
    len: usize,
    base: SnapshotId,
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
    /// `identity` is what its snapshots are bound to (`artifact::Header::state_identity`);
    /// `tracking` how deltas find the pages that changed.
    pub fn new(
        store: &mut impl AsStoreMut,
        module: &Module,
        instance: &Instance,
        identity: ModuleId,
        tracking: Policy,
    ) -> StateAccess {
        let info = module.info();
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
            module: identity,
            memory: exports.get_memory(MEMORY_EXPORT).ok().cloned(),
            // Preparation exports every table; a snapshot holds all of them.
            tables: (0..info.tables.len() as u32)
                .filter_map(|i| Some((i, exports.get_table(&table_export_name(i)).ok()?.clone())))
                .collect(),
            globals,
            index_of: HashMap::new(),
            ref_of: HashMap::new(),
            tracking: RefCell::new(Tracking {
                base: None,
                pages: DirtyPages::new(tracking),
            }),
            mapped: Cell::new(None),
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
        // What the active segments put into the tables, read back from them. A start
        // function could have changed a table already, so then only exports count. (A
        // prepared module's start function is an export the executor calls.)
        let has_start = info.start_function.is_some() || exports.get_function(START_EXPORT).is_ok();
        if !has_start {
            for (index, table) in access.tables.clone() {
                let mut slots: HashMap<u32, u32> = HashMap::new();
                for init in info
                    .table_initializers
                    .iter()
                    .filter(|i| i.table_index.as_u32() == index)
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
        }
        access
    }

    /// The memory file mapped over `memory`, unless memory moved since (a runtime that
    /// reallocates on growth).
    fn mapped_file(&self, memory: &[u8]) -> Option<MappedFile> {
        self.mapped
            .get()
            .filter(|m| m.start == memory.as_ptr() as usize && m.len <= memory.len())
    }

    fn learn(&mut self, index: u32, r: VMFuncRef) {
        self.index_of.insert(funcref_ptr(r), index);
        self.ref_of.insert(index, r);
    }
}

fn ty_readonly(vm: &VMTable) -> bool {
    vm.ty().readonly
}

#[cfg(test)]
mod tests;
