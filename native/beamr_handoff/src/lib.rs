//! Hand-overs between threads, with no ties to the Erlang VM so they can be
//! tested here: the command [`mailbox`] to an instance's executor thread (with its
//! one-value [`lane`]), the reply [`slot`] through which a NIF takes an event that comes
//! within microseconds, the bounded [`spin`] both use, and the [`cpu`] each side was last
//! seen on, so that neither spins on the core the other needs.
//!
//! A crate of its own, re-exported as `beamr_core::handoff`, so that the loom models in
//! tests/loom.rs (`RUSTFLAGS="--cfg loom"`) build without wasmer. The private `sync`
//! module picks std's or loom's atomics, cell, mutex and threads.

/// Marks a path the loom models must reach (see [`reached`]); nothing in ordinary builds.
#[cfg(loom)]
macro_rules! reached {
    ($path:ident) => {
        $crate::reached::hit($crate::reached::Path::$path)
    };
}
#[cfg(not(loom))]
macro_rules! reached {
    ($path:ident) => {};
}

pub mod cpu;
pub mod lane;
pub mod mailbox;
pub mod slot;
pub mod spin;
mod sync;

pub use cpu::LastCpu;
pub use lane::{Lane, PutError};
pub use mailbox::{Closed, Mailbox};
pub use slot::Slot;
pub use spin::Spin;

/// Under loom only: how many times the model on this OS thread (loom runs a model's
/// threads as coroutines on the test's thread) reached each rare path, so that a model
/// can check it explores the path at all.
#[cfg(loom)]
#[doc(hidden)]
pub mod reached {
    use std::cell::Cell;

    #[derive(Clone, Copy, Debug)]
    pub enum Path {
        /// A slot's waiter gave up during the write; the producer took its event back.
        SlotAbandoned,
        /// A lane was closed while a value was being written into it.
        LaneClosedWhileWriting,
        /// A lane was closed while its value was being taken.
        LaneClosedWhileTaking,
        /// A mailbox's consumer parked.
        MailboxParked,
    }

    std::thread_local! {
        static COUNTS: [Cell<usize>; 4] = const { [const { Cell::new(0) }; 4] };
    }

    pub fn hit(path: Path) {
        COUNTS.with(|c| c[path as usize].set(c[path as usize].get() + 1));
    }

    pub fn count(path: Path) -> usize {
        COUNTS.with(|c| c[path as usize].get())
    }
}
