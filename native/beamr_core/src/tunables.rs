//! How the engines create memories and tables: as wasmer's `BaseTunables` do, except that an
//! instance whose tables cannot be allocated is refused instead of aborting the process.
//!
//! wasmer allocates a table's entries with an infallible `vec!` (and writes every entry):
//! when the OS refuses the memory (an address-space limit, say, with tables of 2^27 entries
//! each), Rust aborts the VM. Preparation keeps the tables within the instance's
//! `memory_limit`, but a large limit may still ask for more than the OS grants. So before
//! wasmer creates an instance's tables, the entries of all of them are reserved fallibly at
//! once (and given back); a refusal becomes wasmer's `LinkError::Resource`, which start
//! reports as `{resource_limit, memory}`, before any table was filled. Memories need nothing
//! of the kind: wasmer maps them with `mmap`, whose failure is already an error.

use std::ptr::NonNull;

use wasmer::sys::vm::{
    InternalStoreHandle, MemoryError, MemoryStyle, StoreObjects, TableStyle, VMMemory,
    VMMemoryDefinition, VMTable, VMTableDefinition,
};
use wasmer::sys::{BaseTunables, Tunables};
use wasmer::{MemoryType, ModuleInfo, TableType};
use wasmer_compiler::LinkError;
use wasmer_types::entity::PrimaryMap;
use wasmer_types::{LocalTableIndex, TableIndex};

/// The engines' tunables (see the module's documentation).
#[derive(Default)]
pub struct FallibleTables {
    base: BaseTunables,
}

/// Whether the host can allocate `entries` table entries (of one pointer each, as wasmer's
/// tables hold): reserves them fallibly and gives the memory back at once.
fn can_allocate(entries: u64) -> Result<(), String> {
    usize::try_from(entries)
        .ok()
        .and_then(|entries| Vec::<u64>::new().try_reserve_exact(entries).ok())
        .ok_or_else(|| format!("cannot allocate tables of {entries} entries"))
}

impl Tunables for FallibleTables {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        self.base.memory_style(memory)
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn create_host_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
    ) -> Result<VMMemory, MemoryError> {
        self.base.create_host_memory(ty, style)
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        unsafe {
            self.base
                .create_vm_memory(ty, style, vm_definition_location)
        }
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        can_allocate(ty.minimum.into())?;
        self.base.create_host_table(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        unsafe { self.base.create_vm_table(ty, style, vm_definition_location) }
    }

    unsafe fn create_tables(
        &self,
        context: &mut StoreObjects,
        module: &ModuleInfo,
        table_styles: &PrimaryMap<TableIndex, TableStyle>,
        table_definition_locations: &[NonNull<VMTableDefinition>],
    ) -> Result<PrimaryMap<LocalTableIndex, InternalStoreHandle<VMTable>>, LinkError> {
        let defined = module.tables.values().skip(module.num_imported_tables);
        let entries = defined.fold(0u64, |sum, table| sum.saturating_add(table.minimum.into()));
        can_allocate(entries).map_err(LinkError::Resource)?;
        // The trait's own create_tables, which calls create_vm_table for each table.
        unsafe {
            Tunables::create_tables(
                &self.base,
                context,
                module,
                table_styles,
                table_definition_locations,
            )
        }
    }
}
