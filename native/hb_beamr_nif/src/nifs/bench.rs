//! How long the waiting NIFs keep their core (`make bench-load`; see `nif_cpu_time`).

use rustler::Atom;

use crate::atoms;
use crate::nif_cpu_time::{self, Totals};

/// How long the waiting NIFs kept their core since the last switch, and why the long ones
/// were long; `On` starts or stops the counting.
#[rustler::nif(name = "nif_cpu_time")]
fn switch_nif_cpu_time(on: bool) -> Totals {
    nif_cpu_time::switch(on)
}

/// Spins `ns` nanoseconds (at most as long as a NIF waits for an executor, 20 µs), timed
/// like the waiting NIFs: the control that `make bench-load` runs under the same load
/// (see `nif_cpu_time::spin_for_control`).
#[rustler::nif]
fn nif_cpu_time_control(ns: u64) -> Atom {
    nif_cpu_time::spin_for_control(ns);
    atoms::ok()
}
