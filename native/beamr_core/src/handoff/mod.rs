//! Hand-overs between threads, with no ties to the Erlang VM so they can be
//! tested here: the command [`mailbox`] to an instance's executor thread (with its
//! one-value [`lane`]), the reply [`slot`] through which a NIF takes an event that comes
//! within microseconds, and the bounded [`spin`] both use.

pub mod cpu;
pub mod lane;
pub mod mailbox;
pub mod slot;
pub mod spin;

pub use cpu::LastCpu;
pub use lane::{Lane, PutError};
pub use mailbox::{Closed, Mailbox};
pub use slot::Slot;
pub use spin::Spin;
