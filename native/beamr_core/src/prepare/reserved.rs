//! The names preparation reserves: the hidden exports it adds for the host and the import
//! module of the host's own functions.

use super::interrupt;

/// Export names starting with this prefix are added by preparation and hidden from users.
pub const RESERVED_EXPORT_PREFIX: &str = "__hb_beamr_";

/// Memory 0, exported for the host whatever the module calls it (or if it does not export it).
pub const MEMORY_EXPORT: &str = "__hb_beamr_memory";

/// Table 0, exported for the host (Emscripten `invoke_*` calls go through it).
pub const TABLE_EXPORT: &str = "__hb_beamr_table";

/// The module's start function, exported instead of run at instantiation: the executor
/// calls it explicitly after instantiating, so that an instance revived from hibernation
/// (instantiated again, then given its state back) does not run it a second time.
pub const START_EXPORT: &str = "__hb_beamr_start";

/// The reserved export name of table `table_index` (index space including imports),
/// through which snapshots read and restore it: [`TABLE_EXPORT`] for table 0.
pub fn table_export_name(table_index: u32) -> String {
    match table_index {
        0 => TABLE_EXPORT.into(),
        n => format!("{TABLE_EXPORT}_{n}"),
    }
}

/// The reserved export name of mutable global `global_index` (index space including imports),
/// through which snapshots read and restore it.
pub fn global_export_name(global_index: u32) -> String {
    format!("{RESERVED_EXPORT_PREFIX}global_{global_index}")
}

/// The reserved export name of function `function_index` (index space including imports),
/// through which snapshots map a function reference to its index and back.
pub fn function_export_name(function_index: u32) -> String {
    format!("{RESERVED_EXPORT_PREFIX}func_{function_index}")
}

/// The import module of hb_beamr's own host functions (the interruption check). A module
/// that imported from it itself could call them with arguments of its choosing.
pub const RESERVED_IMPORT_MODULE: &str = interrupt::CHECK_MODULE;
