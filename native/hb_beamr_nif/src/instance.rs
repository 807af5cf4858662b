//! The instance resource: what NIFs share with an instance's executor thread.
//!
//! The Store and wasmer Instance never leave the executor thread; this holds only what
//! other threads need: the mailbox, the stop flag, the export/import tables used to
//! check arguments before queueing, and what the last call used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use rustler::{Env, LocalPid, Monitor, Resource, ResourceArc};
use wasmer::FunctionType;

use crate::command::Command;
use crate::mailbox::{Closed, Mailbox};
use crate::registry;

pub struct ExportedFunction {
    pub name: String,
    pub ty: FunctionType,
}

pub struct ImportedFunction {
    pub module: String,
    pub name: String,
    pub signature: String,
    pub ty: FunctionType,
}

pub struct Shared {
    /// The process whose pid is the public handle; its death stops the instance.
    pub owner: LocalPid,
    pub mailbox: Mailbox,
    pub stopped: AtomicBool,
    /// The fuel the last outermost call used (`hb_beamr:gas_used/1`).
    pub gas_used: AtomicU64,
    pub exports: Vec<ExportedFunction>,
    pub export_index: HashMap<String, usize>,
    pub imports: Vec<ImportedFunction>,
}

pub struct InstanceResource {
    pub shared: Arc<Shared>,
}

#[rustler::resource_impl]
impl Resource for InstanceResource {
    const IMPLEMENTS_DOWN: bool = true;

    fn down<'a>(&'a self, _env: Env<'a>, pid: LocalPid, _monitor: Monitor) {
        if pid == self.shared.owner {
            self.shared.stop();
        } else {
            let _ = self.shared.mailbox.push(Command::CallerDown(pid));
        }
    }
}

impl Shared {
    pub fn new(
        owner: LocalPid,
        exports: Vec<ExportedFunction>,
        imports: Vec<ImportedFunction>,
    ) -> Shared {
        let export_index = exports.iter().enumerate().map(|(i, e)| (e.name.clone(), i)).collect();
        Shared {
            owner,
            mailbox: Mailbox::new(),
            stopped: AtomicBool::new(false),
            gas_used: AtomicU64::new(0),
            exports,
            export_index,
            imports,
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Queues a command unless the instance is stopping or gone.
    pub fn submit(&self, command: Command) -> Result<(), Closed> {
        if self.is_stopped() {
            return Err(Closed);
        }
        self.mailbox.push(command)
    }

    /// Ends the instance: idempotent, returns at once. Running wasm notices at its next
    /// interruption check (see `beamr_core::prepare::interrupt`) and an executor waiting
    /// for a command or an import reply is woken by the `Stop` command.
    pub fn stop(self: &Arc<Self>) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        registry::remove(&self.owner);
        let _ = self.mailbox.push(Command::Stop);
    }
}

impl InstanceResource {
    pub fn new(shared: Arc<Shared>) -> ResourceArc<InstanceResource> {
        ResourceArc::new(InstanceResource { shared })
    }
}
