//! The command queue between NIFs (any thread) and an instance's executor thread:
//! beamr_core's generic mailbox (see there for the protocol) carrying [`Command`]s.
//! Commands from one process never overtake each other: a process waits for the answer
//! to each command before it sends the next.

use crate::command::Command;

pub use beamr_core::handoff::Closed;

pub type Mailbox = beamr_core::handoff::Mailbox<Command>;
